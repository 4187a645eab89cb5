/**
 * keyd's own backups (docs/backup.md, "keyd's own backups"). Open this file first.
 *
 * keyd's store is backed up apart from the data, to keyd's own destinations, with its own shorter
 * retention: a consistent copy (VACUUM INTO), encrypted as a whole in chunks under a fresh key
 * that only the root keyring unwraps, beside the sealed root keyring file, described by a manifest
 * that keyd signs (create-keyd-backup.ts, keyd-manifest.ts). keyd-backups.ts runs them on keyd's
 * schedule and on demand, applies retention and answers the horizon the deletion certificate
 * states; restore-keyd-backup.ts brings one back into an empty folder, offline, with the root
 * key's secret. The destinations, retention and chunk cipher are the objects floor's (src/objects).
 */
export { type CreateKeydBackupDeps, createKeydBackup, type KeydBackupSigner } from './create-keyd-backup.ts';
export { KeydBackups, type KeydBackupsDeps } from './keyd-backups.ts';
export {
  chunkObject,
  KEYD_MANIFEST_FORMAT,
  KEYRING_OBJECT,
  type KeydBackupManifest,
  keydManifestStatement,
  openKeydManifest,
} from './keyd-manifest.ts';
export { type RestoreKeydOptions, type RestoreKeydResult, restoreKeydBackup } from './restore-keyd-backup.ts';
