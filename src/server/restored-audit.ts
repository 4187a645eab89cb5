/**
 * Checking a restored backup's audit log against the signed checkpoint its manifest carries, and
 * keyd's published keys that restore and the trial restore check a backup against. The audit check
 * is what tells a backup whose control store was cut, altered or rolled back behind its checkpoint
 * from a good one: the chunks' digests alone only say the bytes are those that were written.
 */
import { availableParallelism } from 'node:os';
import { readArchivedEndOfFile, readArchivedEndOfPg } from '../audit/archived-end.ts';
import type { AuditArchive } from '../audit/archived-segments.ts';
import { parseCheckpoint } from '../audit/checkpoint.ts';
import { type AuditLogSnapshot, openSqliteLogSnapshot } from '../audit/log-reader.ts';
import { openPgLogSnapshot } from '../audit/log-reader-pg.ts';
import { ed25519VerifierKey, parseNote } from '../audit/note.ts';
import type { VerifyProblem } from '../audit/verify.ts';
import { verifyAuditLogWithArchive } from '../audit/verify-archived.ts';
import { BackupError, type BackupManifest, type ManifestKey } from '../backup/index.ts';
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

/**
 * Where a restored log's archived part (entries [0, E), archived-end.ts) is read back from: the
 * destination restored from, keyd and its backup-manifest key; the origin is the backup checkpoint's.
 */
export type RestoredLogArchive = Omit<AuditArchive, 'origin'>;

/** A restored log: its snapshot, and its archived end E as the restored store holds it. */
export interface RestoredLogSource {
  open: () => AuditLogSnapshot | Promise<AuditLogSnapshot>;
  archivedEnd: () => number | Promise<number>;
}

export interface RestoredLogCheckOptions {
  /** `background`: in a serving process (the trial restore): low-priority workers, the event loop free. */
  background?: boolean;
  /** The segments of a pruned log (E > 0); without it such a log fails the check. */
  archive?: RestoredLogArchive;
}

/** The restored control store of `dataDir` (SQLite), opened read-only. */
export function sqliteRestoredLog(dataDir: string): RestoredLogSource {
  const path = controlStorePath(dataDir);
  return { open: () => openSqliteLogSnapshot(path), archivedEnd: () => readArchivedEndOfFile(path) };
}

/** The restored control schema of a PostgreSQL database; `shown`: the URL as messages show it. */
export function pgRestoredLog(db: { url: string; shown: string; schema: string }): RestoredLogSource {
  return { open: () => openPgLogSnapshot(db), archivedEnd: () => readArchivedEndOfPg(db) };
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
 *
 * A pruned log (the restored store's archived end E > 0) is verified with its segments
 * (verifyAuditLogWithArchive: entries [0, E) from `options.archive`, every check a live entry gets);
 * with no archive given it fails, saying so: it is never passed on its live rows alone.
 */
export async function checkRestoredAuditLog(
  dataDir: string,
  manifest: BackupManifest,
  auditPublicKey: Uint8Array,
  options: RestoredLogCheckOptions = {},
): Promise<AuditLogCheck> {
  return checkRestoredLog(sqliteRestoredLog(dataDir), manifest, auditPublicKey, options);
}

/**
 * The same check of a restored log read through `source` (a SQLite file's, or a PostgreSQL
 * database's control schema: log-reader-pg.ts, archived-end.ts readArchivedEndOfPg).
 */
export async function checkRestoredLog(
  source: RestoredLogSource,
  manifest: BackupManifest,
  auditPublicKey: Uint8Array,
  options: RestoredLogCheckOptions = {},
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
  const reader = await source.open();
  try {
    // Read after the snapshot is opened, as verify-archived.ts asks (a restored store stays still).
    const end = await source.archivedEnd();
    const { archive } = options;
    if (end > 0 && archive === undefined) {
      return {
        ok: false,
        size: 0,
        checkpointSize: checkpointSize(manifest.auditCheckpoint),
        problems: [
          {
            kind: 'segment',
            index: 0,
            message: `entries [0, ${end}) of the restored log are archived in sealed segments, and no destination to read them from was given: the log cannot be verified`,
          },
        ],
      };
    }
    const report = await verifyAuditLogWithArchive(
      reader,
      { end, archive: async (logOrigin) => ({ ...(archive as RestoredLogArchive), origin: logOrigin }) },
      { witness: [manifest.auditCheckpoint], verifierKey, origin },
      options.background
        ? { workers: Math.max(1, availableParallelism() - 1), nice: BACKUP_THREAD_NICE }
        : {},
    );
    const problems = [...report.problems];
    if (report.witnessCheckpoints !== 1) {
      const signature = {
        kind: 'checkpoint-signature' as const,
        message: "the backup's audit checkpoint is not validly signed for the log's origin",
      };
      // A verification stopped in the segments never reached the checkpoint: its own problem first.
      if (problems.some((p) => p.kind === 'segment')) problems.push(signature);
      else problems.unshift(signature);
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

/** The trial restore's audit check as it reports it: the detail of a check that held, else its error. */
export function trialAuditDetail(audit: AuditLogCheck): string {
  if (!audit.ok) {
    const first = audit.problems[0];
    throw new BackupError(
      'TRESOR_ERR_BACKUP_INVALID',
      `the restored log (${audit.size} entries) does not hold against the backup's checkpoint of size ${audit.checkpointSize}: ${first?.kind ?? 'problem'}: ${first?.message ?? ''}`,
    );
  }
  return `${audit.size} entries; the checkpoint of size ${audit.checkpointSize} verifies against the restored tree`;
}

/** The tree size line of a C2SP checkpoint (origin, size, root hash, …); 0 if unreadable. */
function checkpointSize(note: string): number {
  const size = Number(note.split('\n')[1]);
  return Number.isSafeInteger(size) ? size : 0;
}
