/**
 * Checking a restored backup's audit log against the signed checkpoint its manifest carries, and
 * keyd's published keys that restore and the trial restore check a backup against. The audit check
 * is what tells a backup whose control store was cut, altered or rolled back behind its checkpoint
 * from a good one: the chunks' digests alone only say the bytes are those that were written.
 */
import { availableParallelism } from 'node:os';
import { parseCheckpoint } from '../audit/checkpoint.ts';
import { type AuditLogSnapshot, openSqliteLogSnapshot, verifyAuditLogSnapshot } from '../audit/log-reader.ts';
import { ed25519VerifierKey, parseNote } from '../audit/note.ts';
import type { VerifyProblem } from '../audit/verify.ts';
import type { BackupManifest, ManifestKey } from '../backup/index.ts';
import type { KeyService } from '../keyd/operations.ts';
import { BACKUP_THREAD_NICE } from '../thread-priority.ts';
import { controlStorePath } from './control-store.ts';

/** keyd's two published keys a restore checks a backup against. */
export interface BackupVerifierKeys {
  manifestKey: ManifestKey;
  /** keyd's audit-checkpoint public key (raw Ed25519); the log names it by its origin. */
  auditPublicKey: Uint8Array;
}

export async function backupVerifierKeys(keys: KeyService): Promise<BackupVerifierKeys> {
  const manifest = await keys.call('publicKey', { purpose: 'backup-manifest' });
  const audit = await keys.call('publicKey', { purpose: 'audit-checkpoint' });
  return {
    manifestKey: { name: manifest.name, publicKey: manifest.publicKey },
    auditPublicKey: audit.publicKey,
  };
}

export interface AuditLogCheck {
  ok: boolean;
  size: number;
  checkpointSize: number;
  problems: VerifyProblem[];
}

/**
 * The restored audit log (control store of `dataDir`, opened read-only) verified by the audit
 * verifier (src/audit/verify.ts) with the manifest's checkpoint as the witness: the checkpoint must
 * be signed by keyd's audit-checkpoint key (named, as the log names it, by the log's origin), the log must reach its size (no rollback, no
 * truncation), and the tree recomputed from the restored entries must have its root. The log's own
 * checkpoints and entries are checked on the way, as `tresor audit verify` does.
 */
export async function checkRestoredAuditLog(
  dataDir: string,
  manifest: BackupManifest,
  auditPublicKey: Uint8Array,
  /** `background`: in a serving process (the trial restore): low-priority workers, the event loop free. */
  options: { background?: boolean } = {},
): Promise<AuditLogCheck> {
  return checkRestoredLog(
    () => openSqliteLogSnapshot(controlStorePath(dataDir)),
    manifest,
    auditPublicKey,
    options,
  );
}

/**
 * The same check of a restored log read through `open` (a SQLite file's, or a PostgreSQL database's
 * control schema: log-reader-pg.ts).
 */
export async function checkRestoredLog(
  open: () => AuditLogSnapshot | Promise<AuditLogSnapshot>,
  manifest: BackupManifest,
  auditPublicKey: Uint8Array,
  options: { background?: boolean } = {},
): Promise<AuditLogCheck> {
  // The checkpoint key is named by the log's origin (src/audit/checkpointer.ts): the origin is read
  // from the backup's checkpoint, unverified; the verification below checks the signature with
  // keyd's key under that name and that the store's own checkpoints are of the same origin.
  let origin: string;
  try {
    origin = parseCheckpoint(parseNote(manifest.auditCheckpoint).text).origin;
  } catch {
    return {
      ok: false,
      size: 0,
      checkpointSize: 0,
      problems: [{ kind: 'checkpoint-signature', message: "the backup's audit checkpoint is malformed" }],
    };
  }
  const verifierKey = ed25519VerifierKey(origin, auditPublicKey);
  const reader = await open();
  try {
    const report = await verifyAuditLogSnapshot(
      reader,
      { witness: [manifest.auditCheckpoint], verifierKey, origin },
      options.background
        ? { workers: Math.max(1, availableParallelism() - 1), nice: BACKUP_THREAD_NICE }
        : {},
    );
    const problems = [...report.problems];
    if (report.witnessCheckpoints !== 1) {
      problems.unshift({
        kind: 'checkpoint-signature',
        message: "the backup's audit checkpoint is not validly signed for the log's origin",
      });
    }
    return {
      ok: report.ok && problems.length === report.problems.length,
      size: report.size,
      checkpointSize: checkpointSize(manifest.auditCheckpoint),
      problems,
    };
  } finally {
    await reader.close();
  }
}

/** The tree size line of a C2SP checkpoint (origin, size, root hash, …); 0 if unreadable. */
function checkpointSize(note: string): number {
  const size = Number(note.split('\n')[1]);
  return Number.isSafeInteger(size) ? size : 0;
}
