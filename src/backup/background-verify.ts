/**
 * verifyBackup with its reading off the event loop: the checks that need keyd or the destination's
 * listing run here (openBackup: the manifest's signature, no stray object, the chunk count, the
 * data key unwrapped by keyd), then the pass over every chunk — SHA-256 and AES-GCM over every
 * byte, every file's digest: seconds of CPU for a large store — runs in a worker thread at the
 * lowest CPU priority (background-verify-worker.ts), which reads a folder destination's chunks
 * itself (chunk-feed.ts). The server checks the copies of each backup this way after the trial
 * restore (backup-runs.ts), so on a busy machine verification takes longer instead of taking CPU
 * and event-loop time from the requests. Same checks, same refusals as verifyBackup.
 */

import { wipe } from '../crypto/index.ts';
import { BACKUP_THREAD_NICE } from '../thread-priority.ts';
import { startTsWorker } from '../ts-worker.ts';
import type { VerifyReply, VerifyRequest, VerifyStart } from './background-verify-worker.ts';
import { answerWant } from './chunk-feed.ts';
import { BackupError, type BackupErrorCode } from './errors.ts';
import {
  type BackupVerification,
  backupVerification,
  openBackup,
  type ReadBackupOptions,
} from './read-backup.ts';

export async function verifyBackupInBackground(
  options: ReadBackupOptions & {
    /** Stops the pass at once (its worker terminated): TRESOR_ERR_BACKUP_INTERRUPTED. */
    signal?: AbortSignal;
  },
): Promise<BackupVerification> {
  const { destination, backupId, signal } = options;
  const { manifest, key } = await openBackup(options);
  const start: VerifyStart = { kind: 'start', manifest, key };
  if (destination.folder !== undefined) start.folder = destination.folder;
  const worker = startTsWorker(new URL('./background-verify-worker.ts', import.meta.url), {
    nice: BACKUP_THREAD_NICE,
  });
  const post = (request: VerifyRequest) => worker.postMessage(request);
  let stop: () => void = () => undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      stop = () =>
        reject(
          new BackupError(
            'TRESOR_ERR_BACKUP_INTERRUPTED',
            `the verification of ${backupId} was stopped: the server is stopping`,
          ),
        );
      if (signal?.aborted) return stop();
      signal?.addEventListener('abort', stop, { once: true });
      worker.on('message', (reply: VerifyReply) => {
        if (reply.kind === 'want') answerWant(destination, backupId, reply.index, post);
        else if (reply.kind === 'passed') resolve();
        else reject(passError(reply));
      });
      worker.on('error', (err: Error) =>
        reject(
          new BackupError('TRESOR_ERR_BACKUP_FAILED', `the verification's worker failed: ${err.message}`),
        ),
      );
      worker.on('exit', (code) =>
        reject(
          new BackupError(
            'TRESOR_ERR_BACKUP_FAILED',
            `the verification's worker stopped (exit code ${code})`,
          ),
        ),
      );
      // The key is copied into the message (the worker wipes its copy); this one is wiped below.
      post(start);
    });
  } finally {
    wipe(key);
    signal?.removeEventListener('abort', stop);
    worker.removeAllListeners();
    await worker.terminate();
  }
  return backupVerification(manifest, destination.name);
}

/** The worker's refusal as the error verifyBackup would have thrown (a catalogue code kept). */
function passError(reply: { code: string | null; message: string }): Error {
  if (reply.code !== null && /^TRESOR_ERR_BACKUP_[A-Z_]+$/.test(reply.code)) {
    return new BackupError(reply.code as BackupErrorCode, reply.message);
  }
  return new BackupError('TRESOR_ERR_BACKUP_FAILED', `verification failed (${reply.code ?? 'error'})`);
}
