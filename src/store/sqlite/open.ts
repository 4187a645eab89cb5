/**
 * Opens a SQLite file the way every Tresor store needs it: WAL, synchronous=FULL (an acknowledged
 * commit survives power loss, not just a process crash), secure_delete (freed pages are zeroed, so
 * erased key material does not linger in the file), foreign keys on.
 */
import Database from 'better-sqlite3';

export interface OpenSqliteOptions {
  /** Fail instead of creating an empty database (tenant stores exist only once created). */
  fileMustExist?: boolean;
}

export function openSqlite(path: string, options: OpenSqliteOptions = {}): Database.Database {
  const db = new Database(path, { fileMustExist: options.fileMustExist ?? false });
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('secure_delete = ON');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}
