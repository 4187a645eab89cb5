/**
 * Starts a worker thread on a TypeScript module. The process loads TypeScript through tsx's loader,
 * registered in its own thread (bin/tresor.js, `npm start`, the tests), which a worker does not
 * inherit; so each worker registers it before it imports its module.
 */
import { Worker } from 'node:worker_threads';

const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
import(workerData.tsx).then((tsx) => { tsx.register(); return import(workerData.worker); });
`;

export function startTsWorker(module: URL): Worker {
  return new Worker(BOOTSTRAP, {
    eval: true,
    workerData: { tsx: import.meta.resolve('tsx/esm/api'), worker: module.href },
  });
}
