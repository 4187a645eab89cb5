/**
 * The main thread's side of the sequencer's worker (sequencer-worker.ts). Canonicalising and hashing
 * the entries, and then writing them, were most of a pass, and a pass ran on the thread that serves
 * requests: under write load a fifth of that thread went to it. With the worker, the main thread keeps
 * only the reads of the outboxes and two messages per pass.
 *
 * The worker is started on first use, and again after it stops; a request it was running then fails,
 * and the sequencer's retry sends the batch again (nothing of a failed write was committed).
 */
import type { Worker } from 'node:worker_threads';
import { startTsWorker } from '../ts-worker.ts';
import { CanonicalJsonError } from './canonical.ts';
import type { SequencerReply, SequencerRequest } from './sequencer-worker.ts';

type Request = SequencerRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export interface SequencerThread {
  request(request: Request, transfer?: ArrayBuffer[]): Promise<SequencerReply>;
  running(): boolean;
  close(): Promise<void>;
}

export function createSequencerThread(): SequencerThread {
  let worker: Worker | undefined;
  const waiting = new Map<number, { resolve(reply: SequencerReply): void; reject(err: Error): void }>();
  let nextId = 1;

  function start(): Worker {
    const w = startTsWorker(new URL('./sequencer-worker.ts', import.meta.url));
    const stopped = (err: Error) => {
      if (worker === w) worker = undefined;
      for (const item of waiting.values()) item.reject(err);
      waiting.clear();
    };
    w.on('message', (reply: SequencerReply) => {
      const item = waiting.get(reply.id);
      waiting.delete(reply.id);
      if (waiting.size === 0) w.unref(); // idle: it holds no process open
      if (item === undefined) return;
      if (reply.error) item.reject(rebuild(reply.error));
      else item.resolve(reply);
    });
    w.on('error', stopped);
    w.on('exit', (code) => stopped(new Error(`the sequencer worker stopped (exit code ${code})`)));
    w.unref();
    return w;
  }

  return {
    request(request, transfer = []) {
      worker ??= start();
      const w = worker;
      const id = nextId++;
      return new Promise<SequencerReply>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        w.ref();
        w.postMessage({ ...request, id }, transfer);
      });
    },
    running: () => worker !== undefined,
    async close() {
      const w = worker;
      if (w === undefined) return;
      await this.request({ op: 'close' }).catch(() => undefined);
      worker = undefined;
      await w.terminate();
    },
  };
}

function rebuild(error: NonNullable<SequencerReply['error']>): Error {
  if (error.code === 'TRESOR_ERR_CANONICAL_JSON') return new CanonicalJsonError(error.message);
  const err = new Error(error.message) as Error & { code?: string };
  err.name = error.name;
  if (error.code !== undefined) err.code = error.code;
  return err;
}
