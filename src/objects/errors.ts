/**
 * Errors of backups and their destinations, the server's and keyd's alike (src/backup re-exports
 * them). Callers switch on `code`; messages name the backup, the object and
 * the check that failed, never a key or a byte of the data. The codes are in the catalogue
 * (src/errors.ts).
 */
import { type ErrorCode, TresorError } from '../errors.ts';

export type BackupErrorCode = Extract<
  ErrorCode,
  | 'TRESOR_ERR_BACKUP_NOT_FOUND'
  | 'TRESOR_ERR_BACKUP_FAILED'
  | 'TRESOR_ERR_BACKUP_INVALID'
  | 'TRESOR_ERR_BACKUP_DESTINATION'
  | 'TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY'
  | 'TRESOR_ERR_BACKUP_RUNNING'
  | 'TRESOR_ERR_BACKUP_VERIFYING'
  | 'TRESOR_ERR_BACKUP_INTERRUPTED'
  | 'TRESOR_ERR_CONFIG_INVALID'
  | 'TRESOR_ERR_RESTORE_REFUSED'
  | 'TRESOR_ERR_TENANT_SHREDDED'
  | 'TRESOR_ERR_RESTORE_RUNNING'
  | 'TRESOR_ERR_NOT_FOUND'
  | 'TRESOR_ERR_TENANT_STATE'
  | 'TRESOR_ERR_UNAVAILABLE'
>;

export class BackupError extends TresorError<BackupErrorCode> {}

/** A stored backup that fails a check: refused, whatever else in it looks fine. */
export function invalidBackup(backupId: string, why: string): BackupError {
  return new BackupError('TRESOR_ERR_BACKUP_INVALID', `backup ${backupId} refused: ${why}`);
}
