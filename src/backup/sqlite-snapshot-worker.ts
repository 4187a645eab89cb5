/**
 * The worker thread of sqlite-snapshot.ts: copies one SQLite file with `VACUUM INTO` on a
 * connection of its own, then reads the copy's SHA-256, so the copy and its digest — seconds of CPU
 * for a large store — never block the server's event loop, and the writers (WAL) go on meanwhile.
 * The thread runs at a lower CPU priority (thread-priority.ts): on a busy machine a backup
 * takes longer instead of taking CPU from the requests.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { lowerThreadPriority } from '../thread-priority.ts';

export interface SnapshotRequest {
  source: string;
  target: string;
}

export type SnapshotReply =
  | { ok: true; schemaVersion: string; sha256: string }
  | { ok: false; code: string; message: string };

/** Bytes read at a time for the digest. */
const DIGEST_READ_BYTES = 1024 * 1024;

const port = parentPort;
if (port === null) throw new Error('sqlite-snapshot-worker.ts runs as a worker thread');
lowerThreadPriority();
port.on('message', ({ source, target }: SnapshotRequest) => {
  port.postMessage(copy(source, target));
});

function copy(source: string, target: string): SnapshotReply {
  try {
    const db = new Database(source, { readonly: true, fileMustExist: true, timeout: 5000 });
    try {
      // VACUUM INTO syncs its output as this connection's `synchronous` says: the copy is scratch,
      // read and removed, so it is not forced to disk (which would go ahead of the live stores'
      // commits on the same disk); removed soon enough, it is never written at all.
      db.pragma('synchronous = OFF');
      // sqlite.org/lang_vacuum.html#vacuuminto: "a transactionally consistent snapshot".
      db.prepare('VACUUM INTO ?').run(target);
    } finally {
      db.close();
    }
    let schemaVersion: string;
    const copyDb = new Database(target, { fileMustExist: true });
    try {
      // A scratch copy, read and removed: switching its journal mode must not fsync it, which would
      // force the whole copy (still in the page cache) to disk at once, ahead of the live stores'
      // commits on the same disk.
      copyDb.pragma('synchronous = OFF');
      // A self-contained file: no -wal beside it (restore's openSqlite turns WAL on again).
      copyDb.pragma('journal_mode = DELETE');
      const row = copyDb
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'kysely_migration'")
        .get();
      const version =
        row === undefined
          ? undefined
          : (copyDb.prepare('SELECT max(name) AS v FROM kysely_migration').get() as { v: string | null }).v;
      schemaVersion = version ?? 'none';
    } finally {
      copyDb.close();
    }
    return { ok: true, schemaVersion, sha256: fileSha256(target) };
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return {
      ok: false,
      code: typeof e.code === 'string' ? e.code : 'ERROR',
      message: typeof e.message === 'string' ? e.message : 'copy failed',
    };
  }
}

/** The file's SHA-256 (hex), read here on the worker's thread. */
function fileSha256(path: string): string {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(DIGEST_READ_BYTES);
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}
