/**
 * Opens a SQLite file the way every Tresor store needs it: WAL, synchronous=FULL (an acknowledged
 * commit survives power loss, not just a process crash; or NORMAL where the store fsyncs itself,
 * `ownSync`), secure_delete (freed pages are zeroed, so
 * erased key material does not linger in the file), foreign keys on.
 */
import { closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';

export interface OpenSqliteOptions {
  /** Fail instead of creating an empty database (tenant stores exist only once created). */
  fileMustExist?: boolean;
  /**
   * false for a scratch copy that is read and then removed (a backup's snapshot, the trial
   * restore's stores): synchronous=OFF, so SQLite never fsyncs it. An fsync of such a file would
   * force the whole copy, still in the page cache, to disk at once, ahead of the live stores'
   * commits on the same disk; unsynced, a copy removed soon is never written at all. Default true.
   */
  durable?: boolean;
  /**
   * true for a store that makes each commit durable itself (store.ts, `ownSync`): synchronous=NORMAL
   * (in WAL mode commits stay consistent but are not fsynced; checkpoints still sync the WAL before
   * and the database after), and the store fdatasyncs the WAL off the event loop before it
   * acknowledges a commit. Ignored when `durable` is false.
   */
  ownSync?: boolean;
}

export function openSqlite(path: string, options: OpenSqliteOptions = {}): Database.Database {
  // Create the file owner-only before SQLite does: its -wal and -shm files copy the main file's mode.
  if (!options.fileMustExist && path !== ':memory:') {
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const db = new Database(path, { fileMustExist: options.fileMustExist ?? false });
  try {
    // Before the journal mode: switching it writes the header, which synchronous=FULL would fsync.
    db.pragma(
      options.durable === false
        ? 'synchronous = OFF'
        : options.ownSync
          ? 'synchronous = NORMAL'
          : 'synchronous = FULL',
    );
    db.pragma('journal_mode = WAL');
    db.pragma('secure_delete = ON');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}
