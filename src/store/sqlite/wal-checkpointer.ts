/**
 * Checkpoints of the tenant stores' WALs, off the event loop (one worker thread for a registry).
 *
 * Why: a tenant store that is written now and then commits each write alone, and its WAL grows by
 * every page of every commit until SQLite's automatic checkpoint at 1,000 pages (4 MB) — which
 * over many tenants is rarely reached, so their WALs keep growing, and every commit appends to the
 * end of a file: new blocks for the filesystem, new page-cache pages, the inode's size to sync.
 * Measured over 1,000 tenants (docs/performance.md j), the pwrite of those frames cost the event
 * loop 127 µs a write against 29 µs on one tenant, whose WAL restarts after each checkpoint and
 * overwrites pages already in the cache. And the checkpoint itself, where SQLite runs it (in the
 * COMMIT that crossed 1,000 pages), copies pages and fsyncs the WAL and the database on the event
 * loop.
 *
 * So a store asks for a checkpoint every few batches (store.ts, `checkpointer`); this worker runs
 * it (wal-checkpoint-worker.ts) while the event loop goes on, and the store's next commit after a
 * complete checkpoint restarts the WAL at its start. A store written without pause commits while
 * its checkpoint runs, so its WAL never comes to be wholly copied at a commit and does not restart;
 * once a checkpoint finds the WAL that large (store.ts, HOLD_WRITES_AT_FRAMES), the store's next one
 * runs between two batches, its writes waiting (a few milliseconds, while the worker copies and
 * fsyncs), and the commit after it restarts the WAL. SQLite's own automatic checkpoint at 1,000
 * pages stays as the backstop.
 *
 * Requests are answered in order; one per store at a time (the store keeps its pending one).
 */
import type { Worker } from 'node:worker_threads';
import { startTsWorker } from '../../ts-worker.ts';
import type { CheckpointReply, CheckpointRequest } from './wal-checkpoint-worker.ts';

export interface WalCheckpointerStats {
  /** Checkpoints that ran (complete or not). */
  checkpoints: number;
  /** Of those, checkpoints that copied every frame of the WAL (the next commit restarts it). */
  complete: number;
  /** Requests that failed (the worker's SQLite error, or the worker stopped). */
  failed: number;
}

export interface CheckpointOutcome {
  /** Frames in the WAL when the checkpoint began. */
  frames: number;
  /** It copied them all (frames committed meanwhile are the next checkpoint's). */
  complete: boolean;
}

export class WalCheckpointer {
  #worker: Worker | undefined;
  readonly #pending: Array<{ resolve(reply: CheckpointReply): void; reject(error: Error): void }> = [];
  readonly #stats: WalCheckpointerStats = { checkpoints: 0, complete: 0, failed: 0 };
  #closed = false;

  /**
   * Checkpoints the WAL of the store at `path`: resolves with the frames the WAL held when it began
   * and whether it copied them all, or undefined if it failed (or the checkpointer is closed).
   */
  async checkpoint(path: string): Promise<CheckpointOutcome | undefined> {
    if (this.#closed) return undefined;
    let reply: CheckpointReply;
    try {
      reply = await this.#ask({ path });
    } catch {
      this.#stats.failed++;
      return undefined;
    }
    if (!reply.ok) {
      this.#stats.failed++;
      return undefined;
    }
    this.#stats.checkpoints++;
    const complete = reply.busy === 0 && reply.log === reply.checkpointed;
    if (complete) this.#stats.complete++;
    return { frames: reply.log, complete };
  }

  stats(): WalCheckpointerStats {
    return { ...this.#stats };
  }

  /** Stops the worker; requests still waiting resolve false. Stores must be closed first. */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker !== undefined) await worker.terminate();
  }

  #ask(request: CheckpointRequest): Promise<CheckpointReply> {
    const worker = this.#worker ?? this.#start();
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      worker.postMessage(request);
    });
  }

  #start(): Worker {
    const worker = startTsWorker(new URL('./wal-checkpoint-worker.ts', import.meta.url));
    // The registry closes it; a process that never does is not kept alive by it.
    worker.unref();
    worker.on('message', (reply: CheckpointReply) => this.#pending.shift()?.resolve(reply));
    const stopped = (error: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const waiting of this.#pending.splice(0)) waiting.reject(error);
    };
    worker.on('error', stopped);
    worker.on('exit', (code) => stopped(new Error(`the WAL checkpoint worker stopped (exit ${code})`)));
    this.#worker = worker;
    return worker;
  }
}
