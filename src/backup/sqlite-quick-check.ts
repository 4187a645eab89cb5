/**
 * SQLite's `PRAGMA quick_check` of restored store files (the trial restore after each backup), one
 * file after another in a worker thread at a lower CPU priority (sqlite-quick-check-worker.ts): the
 * check reads every page, and on the event loop it would stall every request for its duration.
 * Answers, per file, `ok` or SQLite's own report of what is damaged (truncated).
 */
import { askWorker, startTsWorker } from '../audit/ts-worker.ts';
import { BackupError } from './errors.ts';
import type { QuickCheckReply, QuickCheckRequest } from './sqlite-quick-check-worker.ts';

export async function quickCheckFiles(paths: readonly string[]): Promise<Map<string, string>> {
  const results = new Map<string, string>();
  if (paths.length === 0) return results;
  const worker = startTsWorker(new URL('./sqlite-quick-check-worker.ts', import.meta.url));
  try {
    for (const path of paths) {
      const reply = await ask(worker, { path });
      if (!reply.ok)
        throw new BackupError(
          'TRESOR_ERR_BACKUP_INVALID',
          `quick_check could not read a store (${reply.code})`,
        );
      results.set(path, reply.result);
    }
    return results;
  } finally {
    await worker.terminate();
  }
}

function ask(worker: ReturnType<typeof startTsWorker>, request: QuickCheckRequest): Promise<QuickCheckReply> {
  return askWorker(
    worker,
    request,
    (code) => new BackupError('TRESOR_ERR_BACKUP_FAILED', `quick_check worker stopped (exit code ${code})`),
  );
}
