/**
 * The worker thread of sqlite-snapshot.ts: copies one SQLite file with `VACUUM INTO` on a
 * connection of its own, so the copy — one read transaction, seconds for a large store — never
 * blocks the server's event loop, and the writers (WAL) go on meanwhile.
 */
import { parentPort } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface SnapshotRequest {
  source: string;
  target: string;
}

export type SnapshotReply =
  | { ok: true; schemaVersion: string }
  | { ok: false; code: string; message: string };

const port = parentPort;
if (port === null) throw new Error('sqlite-snapshot-worker.ts runs as a worker thread');
port.on('message', ({ source, target }: SnapshotRequest) => {
  port.postMessage(copy(source, target));
});

function copy(source: string, target: string): SnapshotReply {
  try {
    const db = new Database(source, { readonly: true, fileMustExist: true, timeout: 5000 });
    try {
      // sqlite.org/lang_vacuum.html#vacuuminto: "a transactionally consistent snapshot".
      db.prepare('VACUUM INTO ?').run(target);
    } finally {
      db.close();
    }
    const copyDb = new Database(target, { fileMustExist: true });
    try {
      // A self-contained file: no -wal beside it (restore's openSqlite turns WAL on again).
      copyDb.pragma('journal_mode = DELETE');
      const row = copyDb
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'kysely_migration'")
        .get();
      const version =
        row === undefined
          ? undefined
          : (copyDb.prepare('SELECT max(name) AS v FROM kysely_migration').get() as { v: string | null }).v;
      return { ok: true, schemaVersion: version ?? 'none' };
    } finally {
      copyDb.close();
    }
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return {
      ok: false,
      code: typeof e.code === 'string' ? e.code : 'ERROR',
      message: typeof e.message === 'string' ? e.message : 'copy failed',
    };
  }
}
