/**
 * Backups (docs/backup.md). Open this file first.
 *
 * A backup is a consistent snapshot of the control store and every tenant store (snapshot.ts; the
 * SQLite backend in sqlite-snapshot.ts, PostgreSQL's in pg-snapshot.ts writing pg-schema-file.ts's
 * format, loaded back by pg-schema-load.ts), encrypted as one stream in AES-256-GCM chunks under a
 * fresh data key that keyd wraps with its backup key (chunk-cipher.ts), written to destinations
 * with read-back of every digest (destination.ts, folder-destination.ts), and described by a
 * manifest signed by keyd and written last (manifest.ts). createBackup takes one; verifyBackup and
 * restoreBackup read one back and refuse it at the first check that fails; planRetention and
 * agedOutAt say what a destination keeps and when a backup has aged out everywhere. A manifest also
 * names the audit log's sealed segments at the destinations (audit-segments.ts): copies carry them
 * along, restores check them, retention never deletes them.
 *
 * In the running server: backup-runs.ts takes backups one at a time (retries, verification,
 * audit) and records them in the control store (backup-records.ts, backup-store-schema.ts);
 * run-lock.ts says whether a `running` run's maker is gone (PostgreSQL: its advisory lock), so
 * recovery never touches a run another live node is making;
 * apply-retention.ts is the retention job; configured-destinations.ts makes the configured
 * destinations. Destinations on S3-compatible object storage are in s3-destination.ts (the AWS
 * SDK, loaded on first use). Restoring a whole deployment and the deep trial restore are in
 * src/server/ (restore-deployment.ts, backup-trial.ts): they open stores and the audit log, which
 * sit above.
 *
 * Restoring one tenant into the running system: tenant-restore.ts (plan, checks, swap), its file
 * work in tenant-restore-file.ts (the restored store checked, the outbox and key reservations
 * carried forward) and the server's runs of it in tenant-restore-runs.ts; live-files.ts keeps a
 * backup's snapshot and a restore's swap from touching the live files at once.
 *
 * The generic half (destinations, backup ids, retention, the chunk cipher) is in src/objects/,
 * beneath keyd, whose own backups (src/keyd/backup/) use it too.
 */

export { backupIdTime, isBackupId, newBackupId } from '../objects/backup-id.ts';
export { DEFAULT_CHUNK_BYTES } from '../objects/chunk-cipher.ts';
export { type ConfiguredDestination, configuredDestinations } from '../objects/configured-destinations.ts';
export {
  type Destination,
  deleteBackup,
  type ListedBackup,
  listBackups,
  MANIFEST_OBJECT,
  putVerified,
  SIGNATURE_OBJECT,
} from '../objects/destination.ts';
export { createFolderDestination, type FolderDestinationOptions } from '../objects/folder-destination.ts';
export { refuseNonEmpty, syncFolder, targetNotEmpty } from '../objects/restore-target.ts';
export {
  agedOutAt,
  checkRetentionPolicy,
  planRetention,
  type RetainedBackup,
  type RetentionPlan,
  type RetentionPolicy,
} from '../objects/retention.ts';
export { createS3Destination, type S3DestinationOptions } from '../objects/s3-destination.ts';
export { applyRetention, backupHorizon, type RetentionReport } from './apply-retention.ts';
export {
  type CheckSegmentsOptions,
  checkSegments,
  commonSegments,
  copySegments,
  segmentsAt,
} from './audit-segments.ts';
export { verifyBackupInBackground } from './background-verify.ts';
export { type BackupRecords, type BackupView, type CopyView, createBackupRecords } from './backup-records.ts';
export { type BackupRunDeps, type BackupRuns, createBackupRuns, type StartedBackup } from './backup-runs.ts';
export { answerWant, type ChunkAnswer, type ChunkWant, chunkFeed } from './chunk-feed.ts';
export {
  type BackupResult,
  type BackupSource,
  type CreateBackupOptions,
  createBackup,
  type DestinationOutcome,
} from './create-backup.ts';
export { BackupError, type BackupErrorCode } from './errors.ts';
export { createLiveFilesLock, type LiveFilesLock, lockedSnapshotter } from './live-files.ts';
export {
  type BackupManifest,
  MANIFEST_KEY_NAME,
  type ManifestFile,
  type ManifestKey,
  type ManifestSegment,
  type ManifestTenant,
  openManifest,
} from './manifest.ts';
export { type LoadedSchema, loadPgSchemaFile } from './pg-schema-load.ts';
export { CONTROL_PG_FILE, createPgSnapshotter, type PgSnapshotterOptions } from './pg-snapshot.ts';
export {
  type BackupVerification,
  backupVerification,
  type FileSink,
  fetchChunk,
  openBackup,
  type ReadBackupOptions,
  readBackup,
  readChunks,
  readManifest,
  verifyBackup,
} from './read-backup.ts';
export { type RestoreOptions, type RestoreResult, restoreBackup, restoreFiles } from './restore.ts';
export { createLocalRunLock, createPgRunLock, RUN_LOCK_CLASS, type RunLock } from './run-lock.ts';
export type { SnapshotFile, SnapshotFileKind, StoreSnapshotter } from './snapshot.ts';
export { quickCheckFile } from './sqlite-quick-check.ts';
export { CONTROL_FILE, createSqliteSnapshotter } from './sqlite-snapshot.ts';
export {
  planTenantRestore,
  runTenantRestore,
  type TenantRestoreDeps,
  type TenantRestorePlan,
  type TenantRestoreRequest,
  type TenantRestoreResult,
} from './tenant-restore.ts';
export {
  createTenantRestoreRuns,
  type TenantRestoreRuns,
  type TenantRestoreView,
} from './tenant-restore-runs.ts';
