/**
 * The backup's stream of sealed chunks, made on a worker thread (chunk-sealer-worker.ts): the
 * snapshot files read in manifest order, cut into chunks, each sealed under the backup's data key
 * (chunk-cipher.ts) with the SHA-256 of its stored bytes. The event loop only receives finished
 * chunks (moved, not copied) and writes them; the next chunk is sealed while one is being written.
 * The worker runs at a lower CPU priority, so a backup gives way to the requests on a busy machine.
 */
import { startTsWorker } from '../audit/ts-worker.ts';
import { BACKUP_THREAD_NICE } from '../thread-priority.ts';
import type { SealerReply, SealerRequest } from './chunk-sealer-worker.ts';
import { BackupError } from './errors.ts';
import type { SnapshotFile } from './snapshot.ts';

export interface SealedChunk {
  index: number;
  final: boolean;
  stored: Buffer;
  sha256: string;
}

export async function* sealedChunks(options: {
  files: readonly SnapshotFile[];
  key: Buffer;
  backupId: string;
  chunkSize: number;
}): AsyncGenerator<SealedChunk> {
  const worker = startTsWorker(new URL('./chunk-sealer-worker.ts', import.meta.url), {
    nice: BACKUP_THREAD_NICE,
  });
  const replies: SealerReply[] = [];
  let waiting: ((reply: SealerReply) => void) | undefined;
  let failure: Error | undefined;
  const deliver = (reply: SealerReply) => {
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w(reply);
    } else replies.push(reply);
  };
  worker.on('message', deliver);
  worker.on('error', (err: Error) => {
    failure = err;
    deliver({ kind: 'error', message: err.message });
  });
  worker.on('exit', (code) => {
    if (!failure) deliver({ kind: 'error', message: `chunk sealer stopped (exit code ${code})` });
  });
  const ask = (request: SealerRequest) => worker.postMessage(request);
  const reply = () =>
    new Promise<SealerReply>((resolve) => {
      const queued = replies.shift();
      if (queued) resolve(queued);
      else waiting = resolve;
    });
  try {
    // The key is copied into the worker's message; the worker wipes its copy at the end.
    ask({
      kind: 'start',
      files: options.files.map(({ name, path, size }) => ({ name, path, size })),
      key: options.key,
      backupId: options.backupId,
      chunkSize: options.chunkSize,
    });
    ask({ kind: 'next' });
    for (;;) {
      const got = await reply();
      if (got.kind === 'error') throw new BackupError('TRESOR_ERR_BACKUP_FAILED', `sealing: ${got.message}`);
      // Seal the next chunk while this one is written.
      if (!got.final) ask({ kind: 'next' });
      const stored = Buffer.from(got.stored.buffer, got.stored.byteOffset, got.stored.byteLength);
      yield { index: got.index, final: got.final, stored, sha256: got.sha256 };
      if (got.final) return;
    }
  } finally {
    worker.removeAllListeners('exit');
    await worker.terminate();
  }
}
