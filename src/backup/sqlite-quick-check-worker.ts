/**
 * The worker thread of sqlite-quick-check.ts: `PRAGMA quick_check` of one SQLite file on a
 * read-only connection of its own, at a lower CPU priority (thread-priority.ts), so checking a
 * restored store — seconds of CPU for a large one, synchronous in the driver — never blocks the
 * server's event loop and, on a busy machine, takes longer instead of taking CPU from requests.
 */
import { parentPort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { lowerThreadPriority } from '../thread-priority.ts';

export interface QuickCheckRequest {
  path: string;
}

export type QuickCheckReply = { ok: true; result: string } | { ok: false; code: string; message: string };

const port = parentPort;
if (port === null) throw new Error('sqlite-quick-check-worker.ts runs as a worker thread');
lowerThreadPriority();
port.on('message', ({ path }: QuickCheckRequest) => {
  port.postMessage(check(path));
});

function check(path: string): QuickCheckReply {
  try {
    const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
    try {
      const rows = db.prepare('PRAGMA quick_check').all() as Record<string, unknown>[];
      return { ok: true, result: rows.map((r) => String(Object.values(r)[0])).join('; ') };
    } finally {
      db.close();
    }
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return {
      ok: false,
      code: typeof e.code === 'string' ? e.code : 'ERROR',
      message: typeof e.message === 'string' ? e.message : 'quick_check failed',
    };
  }
}
