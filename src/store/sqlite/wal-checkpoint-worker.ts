/**
 * The worker thread of wal-checkpointer.ts: checkpoints one store's WAL per request, in the order
 * asked, through a connection of its own that it opens for the request and closes after.
 *
 * The connection runs synchronous=NORMAL, so SQLite's checkpoint fsyncs the WAL before it copies
 * frames into the database and the database before it records them as copied: only then may a
 * writer restart the WAL over them. A PASSIVE checkpoint never waits for the store's writer or
 * readers; it copies what no reader still needs. Closing this connection neither checkpoints nor
 * deletes the WAL, because the store's own connections hold the file open (sqlite3WalClose needs
 * the EXCLUSIVE lock, which SQLite's per-process lock table refuses while they do); the store waits
 * for its request before it closes them.
 */
import { parentPort } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface CheckpointRequest {
  path: string;
}

export type CheckpointReply =
  | { ok: true; busy: number; log: number; checkpointed: number }
  | { ok: false; code: string };

parentPort?.on('message', (request: CheckpointRequest) => {
  parentPort?.postMessage(checkpoint(request.path));
});

function checkpoint(path: string): CheckpointReply {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { fileMustExist: true });
    db.pragma('busy_timeout = 0');
    db.pragma('synchronous = NORMAL');
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{
      busy: number;
      log: number;
      checkpointed: number;
    }>;
    if (result === undefined) return { ok: false, code: 'NO_RESULT' };
    return { ok: true, busy: result.busy, log: result.log, checkpointed: result.checkpointed };
  } catch (error) {
    // Only the code: a message may name the file, and the reply goes to metrics and logs.
    const code =
      typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : 'UNKNOWN';
    return { ok: false, code };
  } finally {
    db?.close();
  }
}
