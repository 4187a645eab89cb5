/**
 * Backup objects (docs/backup.md): the generic half of a backup, shared by the server's backups
 * (src/backup) and keyd's own (src/keyd/backup/). Open this file first.
 *
 * A destination stores named objects `<backup id>/<object>` with read-back of every digest
 * (destination.ts), in a folder (folder-destination.ts) or on S3 (s3-destination.ts), made from
 * the config (configured-destinations.ts). Backup ids sort by time (backup-id.ts); retention is a
 * pure function of the backups, the policy and the time (retention.ts); chunks are sealed with
 * AES-256-GCM bound to their backup and place (chunk-cipher.ts); a restore fills only an empty
 * folder (restore-target.ts). Nothing here knows what a backup holds or who wraps its key.
 *
 * This floor sits beneath keyd, config and store and imports only crypto and the error catalogue.
 */
export { BACKUP_ID, backupIdTime, isBackupId, newBackupId } from './backup-id.ts';
export {
  CHUNK_OVERHEAD,
  type ChunkPlace,
  DEFAULT_CHUNK_BYTES,
  openChunk,
  sealChunk,
} from './chunk-cipher.ts';
export {
  type BackupDestinationConfig,
  type BackupRetentionConfig,
  type ConfiguredDestination,
  configuredDestinations,
} from './configured-destinations.ts';
export {
  checkObjectKey,
  type Destination,
  deleteBackup,
  type ListedBackup,
  listBackups,
  MANIFEST_OBJECT,
  putVerified,
  SIGNATURE_OBJECT,
  sha256Hex,
} from './destination.ts';
export { BackupError, type BackupErrorCode, invalidBackup } from './errors.ts';
export { createFolderDestination, type FolderDestinationOptions } from './folder-destination.ts';
export { refuseNonEmpty, syncFolder, targetNotEmpty } from './restore-target.ts';
export {
  agedOutAt,
  checkRetentionPolicy,
  planRetention,
  type RetainedBackup,
  type RetentionPlan,
  type RetentionPolicy,
} from './retention.ts';
export { createS3Destination, type S3DestinationOptions } from './s3-destination.ts';
