/**
 * Deletion certificates, built and signed by keyd from its own record of the destroyed tenant key:
 * which tenant, every key version it crypto-shredded and when (its store), and by when no keyd
 * backup holds the wrapped key any more (its backup schedule). The closing server adds only what
 * keyd cannot know — the tenant's name, when the close completed, the server's backup horizon and
 * the reason. A tenant whose keys keyd has not destroyed gets no certificate
 * (TRESOR_ERR_SIGN_REFUSED), whoever asks: a certificate states a destruction that happened.
 *
 * The signed bytes are the RFC 8785 (JCS) canonical JSON of the certificate, signed with the
 * purpose-bound key `tresor-keyd/deletion-certificate` (RFC 8032, pure Ed25519), so anyone can
 * re-derive them from the JSON object and check them with keyd's public key (docs/verifying.md).
 */
import canonicalize from 'canonicalize';
import { KeydError } from './errors.ts';
import type { OpHandlers } from './op-record.ts';
import type { SigningKeys } from './signing-keys.ts';
import type { KeyStore } from './store.ts';

export const DELETION_CERTIFICATE_TYPE = 'tresor-deletion-certificate/v1';

export interface DeletionCertificate {
  type: typeof DELETION_CERTIFICATE_TYPE;
  tenant: string;
  tenantName?: string;
  /** Every tenant key version keyd crypto-shredded. */
  keyIdsDestroyed: string[];
  /** When keyd destroyed the tenant key (ISO 8601). */
  keydDestroyedAt: string;
  /** When the close completed after the grace: store wiped, keys revoked (ISO 8601). */
  closedAt: string;
  /** YYYY-MM-DD: by the end of this day (UTC) no backup holding the tenant's ciphertext remains. */
  backupsAgedOutBy: string;
  /**
   * YYYY-MM-DD: by the end of this day (UTC) no keyd backup holds the tenant's key any more — keyd's
   * own date, from keyd's backup retention and schedule at the key's destruction. Absent in
   * certificates issued before keyd backed itself up, and when keyd takes its backups only on demand.
   */
  keydBackupsAgedOutBy?: string;
  reason: string;
}

/** RFC 8785 canonical JSON of the certificate. */
export function canonicalDeletionCertificate(certificate: DeletionCertificate): string {
  const body = canonicalize(certificate);
  if (body === undefined) throw new TypeError('certificate does not serialise');
  return body;
}

export interface DeletionCertificateDeps {
  store: Pick<KeyStore, 'getTenant'>;
  signingKeys: SigningKeys;
  /** When a key destroyed at `at` has left every keyd backup; null when keyd backs up only on demand. */
  backupHorizon: (at: Date) => Date | null;
}

export function deletionCertificateOperations(
  deps: DeletionCertificateDeps,
): Pick<OpHandlers, 'signDeletionCertificate'> {
  return {
    signDeletionCertificate: async (request, rec) => {
      const view = await deps.store.getTenant(request.tenant);
      const destroyedAt = view?.tenant.destroyedAt;
      if (view === undefined || view.tenant.state !== 'destroyed' || !destroyedAt) {
        throw new KeydError(
          'TRESOR_ERR_SIGN_REFUSED',
          'keyd has no record of destroying this tenant’s keys: no deletion certificate',
        );
      }
      const horizon = deps.backupHorizon(new Date(destroyedAt));
      const certificate: DeletionCertificate = {
        type: DELETION_CERTIFICATE_TYPE,
        tenant: request.tenant,
        ...(request.tenantName === undefined ? {} : { tenantName: request.tenantName }),
        keyIdsDestroyed: view.keys.map((k) => k.keyId),
        keydDestroyedAt: destroyedAt,
        closedAt: request.closedAt,
        backupsAgedOutBy: request.backupsAgedOutBy,
        ...(horizon === null ? {} : { keydBackupsAgedOutBy: horizon.toISOString().slice(0, 10) }),
        reason: request.reason,
      };
      const body = canonicalDeletionCertificate(certificate);
      rec.detail = `${certificate.keyIdsDestroyed.length} key versions destroyed at ${destroyedAt}`;
      const { signature, keyName } = await deps.signingKeys.withSigner(
        'deletion-certificate',
        rec,
        async (s) => s.sign(Buffer.from(body, 'utf8')),
      );
      return { body, signature, keyName };
    },
  };
}
