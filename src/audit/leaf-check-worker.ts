/**
 * The worker thread of leaf-check-pool.ts: checks each batch it is sent (checkLeafBatch) and posts the
 * result back, in the order the batches came. A `{ lowerPriority }` message lowers the thread's CPU
 * priority first (no answer).
 */
import { parentPort } from 'node:worker_threads';
import { lowerThreadPriority } from '../thread-priority.ts';
import { checkLeafBatch, type LeafBatchRows } from './leaf-batch-check.ts';

const port = parentPort;
if (port === null) throw new Error('leaf-check-worker.ts runs as a worker thread');
port.on('message', (batch: LeafBatchRows | { lowerPriority: number }) => {
  // A pool working in the background (the trial restore after a backup) first lowers this thread.
  if ('lowerPriority' in batch) {
    lowerThreadPriority(batch.lowerPriority);
    return;
  }
  const check = checkLeafBatch(batch);
  port.postMessage(check, [check.hashes.buffer as ArrayBuffer, check.status.buffer as ArrayBuffer]);
});
