/**
 * The worker thread of the trial restore (backup-trial.ts, backup-trial-scratch.ts). It lowers its
 * own CPU priority first (thread-priority.ts) and only then loads the modules the work needs, so
 * that loading too gives way to the server's requests; threads it starts (the audit check's leaf
 * workers) are started at that priority.
 */
import { parentPort } from 'node:worker_threads';
import { lowerThreadPriority } from '../thread-priority.ts';

const port = parentPort;
if (port === null) throw new Error('backup-trial-worker.ts runs as a worker thread');
lowerThreadPriority();
const { serveTrialScratch } = await import('./backup-trial-scratch.ts');
serveTrialScratch(port);
