/**
 * Errors of the backup part: the one BackupError class, defined on the objects floor beneath
 * (src/objects/errors.ts) so destinations, retention and keyd's own backups throw the same codes.
 */
export { BackupError, type BackupErrorCode, invalidBackup } from '../objects/errors.ts';
