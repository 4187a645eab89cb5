/**
 * Worker threads that run checkLeafBatch for the verifier (verifyAuditLogInParallel), so the leaf
 * hashes and canonical scans — two thirds of its time — run beside the thread that reads SQLite and
 * builds the tree. Batches go round-robin; each worker answers in the order it was sent, so a result
 * is matched with its batch by order alone.
 *
 * The workers load TypeScript as the process does (ts-worker.ts).
 */

import { startTsWorker } from '../ts-worker.ts';
import type { LeafBatchCheck, LeafBatchRows } from './leaf-batch-check.ts';

export interface LeafCheckPool {
  check(batch: LeafBatchRows): Promise<LeafBatchCheck>;
  /** Stops the workers; checks still pending are refused. */
  close(): Promise<void>;
}

interface Waiting {
  resolve(check: LeafBatchCheck): void;
  reject(err: Error): void;
}

/** `nice`: the workers lower their CPU priority to it (a background verification). */
export function createLeafCheckPool(size: number, options: { nice?: number } = {}): LeafCheckPool {
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError('a pool has at least one worker');
  const module = new URL('./leaf-check-worker.ts', import.meta.url);
  const workers = Array.from({ length: size }, () => {
    const worker = startTsWorker(module);
    if (options.nice !== undefined) worker.postMessage({ lowerPriority: options.nice });
    const waiting: Waiting[] = [];
    let failure: Error | null = null;
    const fail = (err: Error) => {
      failure ??= err;
      for (const w of waiting.splice(0)) w.reject(failure);
    };
    worker.on('message', (check: LeafBatchCheck) => waiting.shift()?.resolve(check));
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`a leaf check worker stopped (exit code ${code})`)));
    return {
      worker,
      check(batch: LeafBatchRows): Promise<LeafBatchCheck> {
        if (failure !== null) return Promise.reject(failure);
        return new Promise((resolve, reject) => {
          waiting.push({ resolve, reject });
          const { first, count, bytes, starts } = batch;
          worker.postMessage({ first, count, bytes, starts });
        });
      },
    };
  });
  let next = 0;
  return {
    check(batch) {
      const w = workers[next] as (typeof workers)[number];
      next = (next + 1) % workers.length;
      return w.check(batch);
    },
    async close() {
      await Promise.all(workers.map((w) => w.worker.terminate()));
    },
  };
}
