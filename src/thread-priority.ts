/**
 * Lowers the calling thread's CPU priority, for the backup's worker threads (the snapshot copy,
 * the chunk sealing): on a busy machine a backup then takes longer instead of taking CPU from the
 * requests. On Linux a thread is its own scheduling entity, and setpriority(2) on its thread id
 * changes that thread alone; the id is read from /proc/thread-self, which a synchronous call
 * resolves on the calling thread. Elsewhere, or if refused, the thread keeps its priority (lowering
 * one's own priority is never refused on Linux).
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/** The nice value of a backup thread (0 normal … 19 lowest). */
export const BACKUP_THREAD_NICE = 19;

/** Whether the priority was lowered. Call it on the worker's own thread, at its start. */
export function lowerThreadPriority(nice = BACKUP_THREAD_NICE): boolean {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
    if (!Number.isSafeInteger(tid) || tid <= 0) return false;
    setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}
