/**
 * Opens a SQLite file the way every Tresor store needs it: WAL, synchronous=FULL (an acknowledged
 * commit survives power loss, not just a process crash), secure_delete (freed pages are zeroed, so
 * erased key material does not linger in the file), foreign keys on.
 */
import Database from 'better-sqlite3';

export function openSqlite(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('secure_delete = ON');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  return db;
}
