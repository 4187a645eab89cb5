/**
 * Starts a worker thread on one of our modules, named by its source URL (`./x.ts`, which the import
 * check follows). Compiled (dist/, this file is `.js`), the worker runs the compiled `./x.js` with no
 * loader. From source, the process loads TypeScript through tsx's loader registered in its own thread
 * (bin/tresor.js, the tests), which a worker does not inherit; so the worker registers it first.
 *
 * A background worker (`nice`) lowers its thread's priority before anything else runs on it: from
 * source, before `tsx.register()`, whose loader runs on a hooks thread of its own that inherits the
 * priority of the thread creating it (Linux threads inherit their creator's nice value) — lowered
 * later, in the worker's own module, that hooks thread would stay at normal priority and load the
 * worker's whole import graph at it. Compiled, the worker's module lowers it (lowerThreadPriority).
 */
import { Worker } from 'node:worker_threads';

const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
if (typeof workerData.nice === 'number') {
  try {
    const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').at(-1));
    if (Number.isSafeInteger(tid) && tid > 0) require('node:os').setPriority(tid, workerData.nice);
  } catch {}
}
import(workerData.tsx).then((tsx) => { tsx.register(); return import(workerData.worker); });
`;

const COMPILED = import.meta.url.endsWith('.js');

export interface TsWorkerOptions {
  /** The nice value of a background worker's threads (see above); normal priority when absent. */
  nice?: number;
}

export function startTsWorker(module: URL, options: TsWorkerOptions = {}): Worker {
  if (COMPILED) return new Worker(new URL(module.href.replace(/\.ts$/, '.js')));
  return new Worker(BOOTSTRAP, {
    eval: true,
    workerData: { tsx: import.meta.resolve('tsx/esm/api'), worker: module.href, nice: options.nice },
  });
}

/**
 * One request to a worker that answers each message with one reply, in order: resolves with the
 * reply; rejects with the worker's error, or with `stopped(code)` when it exits first.
 */
export function askWorker<Request, Reply>(
  worker: Worker,
  request: Request,
  stopped: (exitCode: number) => Error,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const onMessage = (reply: Reply) => {
      cleanup();
      resolve(reply);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onExit = (code: number) => {
      cleanup();
      reject(stopped(code));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
    worker.postMessage(request);
  });
}
