/**
 * The event loop's side of the trial restore's worker thread (backup-trial-worker.ts,
 * backup-trial-scratch.ts), shared by both trials: the SQLite one (backup-trial.ts) has it run the
 * restore, audit and stores checks on its scratch folder; the PostgreSQL one (backup-trial-pg.ts)
 * has it run the restore's file pass alone (every chunk's digest, AES-GCM, every file's digest),
 * whose files it then loads into a scratch database. Either way no chunk is hashed or decrypted on
 * the event loop.
 *
 * The worker asks for each chunk a remote destination holds (`want`); a folder destination's it
 * reads itself. A pruned restored log's audit check (`audit-archived`) is run here, by
 * `archivedAudit`, since its segments need keyd and the destination; the worker waits for it. Its reports are added to `checks` as they come, the restore check's with the time
 * of the part done here before it started (`openedMs`). A worker that stops first fails the check
 * it was running; the signal stops it at once.
 */

import { answerWant, BackupError } from '../backup/index.ts';
import { wipe } from '../crypto/index.ts';
import { BACKUP_THREAD_NICE } from '../thread-priority.ts';
import { startTsWorker } from '../ts-worker.ts';
import type { BackupTrialOptions, TrialCheckName, TrialChecks } from './backup-trial-checks.ts';
import type { TrialScratchReply, TrialScratchRequest, TrialScratchStart } from './backup-trial-scratch.ts';

/** The checks the worker runs, in order: all three, or the restore's file pass `only`. */
export function scratchCheckNames(only?: TrialScratchStart['only']): readonly TrialCheckName[] {
  return only === 'restore' ? ['restore'] : ['restore', 'audit', 'stores'];
}

export async function runTrialWorker(
  checks: TrialChecks,
  start: TrialScratchStart,
  options: Pick<BackupTrialOptions, 'destination' | 'backupId' | 'signal'>,
  openedMs: number,
  /**
   * The audit check of a pruned restored log (archived end `end` > 0), which needs keyd and the
   * destination: run here when the worker asks (`audit-archived`); its detail, or it throws.
   */
  archivedAudit?: (end: number) => Promise<string>,
): Promise<void> {
  const { destination, backupId } = options;
  const names = scratchCheckNames(start.only);
  const worker = startTsWorker(new URL('./backup-trial-worker.ts', import.meta.url), {
    nice: BACKUP_THREAD_NICE,
  });
  const stop = () => void worker.terminate();
  options.signal?.addEventListener('abort', stop, { once: true });
  const post = (request: TrialScratchRequest) => worker.postMessage(request);
  try {
    await new Promise<void>((resolve) => {
      let settled = false;
      const stopped = (err: Error) => {
        if (settled) return;
        settled = true;
        const name = names.find((n) => !checks.list.some((c) => c.name === n));
        if (name) checks.fail(name, err, 0);
        resolve();
      };
      worker.on('message', (reply: TrialScratchReply) => {
        if (reply.kind === 'want') {
          answerWant(destination, backupId, reply.index, post);
        } else if (reply.kind === 'audit-archived') {
          const check =
            archivedAudit?.(reply.end) ??
            Promise.reject(
              new BackupError('TRESOR_ERR_BACKUP_FAILED', 'this trial has no archived audit check to run'),
            );
          void check.then(
            (detail) => post({ kind: 'audit-answer', detail }),
            (err: { code?: unknown; message?: unknown }) =>
              post({
                kind: 'audit-answer',
                error: {
                  ...(typeof err.code === 'string' ? { code: err.code } : {}),
                  message: typeof err.message === 'string' ? err.message : String(err),
                },
              }),
          );
        } else if (reply.kind === 'check') {
          const check = reply.check;
          checks.add(
            check.name === 'restore' ? { ...check, durationMs: check.durationMs + openedMs } : check,
          );
        } else {
          settled = true;
          resolve();
        }
      });
      worker.on('error', (err: Error) =>
        stopped(
          new BackupError('TRESOR_ERR_BACKUP_FAILED', `the trial restore's worker failed: ${err.message}`),
        ),
      );
      worker.on('exit', (code) =>
        stopped(
          new BackupError(
            'TRESOR_ERR_BACKUP_FAILED',
            `the trial restore's worker stopped (exit code ${code})`,
          ),
        ),
      );
      // The key is copied into the message (the worker wipes its copy); this one is wiped now.
      post(start);
    });
  } finally {
    wipe(start.key);
    options.signal?.removeEventListener('abort', stop);
    worker.removeAllListeners();
    await worker.terminate();
  }
}
