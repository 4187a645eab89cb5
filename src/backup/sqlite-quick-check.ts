/**
 * SQLite's `PRAGMA quick_check` of a restored store file, on a read-only connection of its own:
 * `ok`, or SQLite's own report of what is damaged. It reads every page, synchronously (seconds of
 * CPU for a large store), so it is called only off the event loop: in the trial restore's worker
 * thread, at a low priority (src/server/backup-trial-scratch.ts).
 */
import Database from 'better-sqlite3';
import { BackupError } from './errors.ts';

export function quickCheckFile(path: string): string {
  let db: Database.Database;
  let rows: Record<string, unknown>[];
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
  } catch (err) {
    throw unreadable(err);
  }
  try {
    rows = db.prepare('PRAGMA quick_check').all() as Record<string, unknown>[];
  } catch (err) {
    throw unreadable(err);
  } finally {
    db.close();
  }
  return rows.map((r) => String(Object.values(r)[0])).join('; ');
}

function unreadable(err: unknown): BackupError {
  const code = (err as { code?: unknown }).code;
  return new BackupError(
    'TRESOR_ERR_BACKUP_INVALID',
    `quick_check could not read a store (${typeof code === 'string' ? code : 'ERROR'})`,
  );
}
