/**
 * keyd's `sign` operation, for the two purposes whose documents are statements about a digest:
 * a backup manifest (`tresor-backup-manifest/v1` for the server's backups,
 * `tresor-keyd-backup-manifest/v1` for keyd's own, `tresor-audit-segment/v1` for a sealed segment of
 * the audit log; then the backup or segment id and the manifest's SHA-256) and the
 * trust statement (`tresor-trust/v1`, the statement's SHA-256). keyd parses each message and signs
 * only a well-formed statement of the purpose asked for, so a signature made for one purpose can
 * never be passed off as another's document, and no caller gets arbitrary bytes signed.
 *
 * Audit checkpoints and deletion certificates are not signed from bytes at all: keyd builds them
 * itself (signing-checkpoints.ts, signing-deletion-certificates.ts). An old-style opaque request
 * for them is refused with TRESOR_ERR_SIGN_REFUSED, naming the operation to use.
 */
import { KEYD_MANIFEST_STATEMENT } from './backup/keyd-manifest.ts';
import { KeydError } from './errors.ts';
import type { OpHandlers } from './op-record.ts';
import type { SigningPurpose } from './signing.ts';
import type { SigningKeys } from './signing-keys.ts';
import { BACKUP_ID_PATTERN } from './validate.ts';

export const BACKUP_MANIFEST_STATEMENT = 'tresor-backup-manifest/v1';
export const TRUST_STATEMENT = 'tresor-trust/v1';
/** A sealed segment of the audit log on the backup destinations (src/audit/segment.ts): its id and manifest's SHA-256. */
export const AUDIT_SEGMENT_STATEMENT = 'tresor-audit-segment/v1';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** What a purpose's message says, for the ops log; throws TRESOR_ERR_SIGN_REFUSED when it is not a statement of that purpose. */
export function checkStatement(purpose: SigningPurpose, message: Buffer): string {
  if (purpose === 'audit-checkpoint' || purpose === 'deletion-certificate') {
    const operation = purpose === 'audit-checkpoint' ? 'signCheckpoint' : 'signDeletionCertificate';
    throw refused(
      `keyd does not sign opaque bytes for ${purpose}: it builds that document itself (use ${operation})`,
    );
  }
  // Statements are ASCII lines; a byte that is not, or a missing final newline, is not a statement.
  const text = message.toString('latin1');
  if (!/^[\x20-\x7e\n]*$/.test(text) || !text.endsWith('\n')) {
    throw refused(`not a ${purpose} statement: expected lines of ASCII text`);
  }
  const lines = text.slice(0, -1).split('\n');
  if (purpose === 'backup-manifest') {
    const [prefix, backupId, digest] = lines;
    if (
      lines.length !== 3 ||
      (prefix !== BACKUP_MANIFEST_STATEMENT &&
        prefix !== KEYD_MANIFEST_STATEMENT &&
        prefix !== AUDIT_SEGMENT_STATEMENT) ||
      backupId === undefined ||
      !BACKUP_ID_PATTERN.test(backupId) ||
      digest === undefined ||
      !SHA256_HEX.test(digest)
    ) {
      throw refused(
        `not a backup-manifest statement: expected ${BACKUP_MANIFEST_STATEMENT}, a backup id, a SHA-256`,
      );
    }
    return prefix === AUDIT_SEGMENT_STATEMENT ? `audit segment ${backupId}` : `backup manifest ${backupId}`;
  }
  const [prefix, digest] = lines;
  if (lines.length !== 2 || prefix !== TRUST_STATEMENT || digest === undefined || !SHA256_HEX.test(digest)) {
    throw refused(`not a trust statement: expected ${TRUST_STATEMENT} and a SHA-256`);
  }
  return 'trust statement';
}

export function statementOperations(signingKeys: SigningKeys): Pick<OpHandlers, 'sign'> {
  return {
    sign: async ({ purpose, message }, rec) => {
      rec.detail = checkStatement(purpose, message);
      return signingKeys.withSigner(purpose, rec, async (signer) => signer.sign(message));
    },
  };
}

function refused(message: string): KeydError {
  return new KeydError('TRESOR_ERR_SIGN_REFUSED', message);
}
