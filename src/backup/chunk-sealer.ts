/**
 * The backup's stream of sealed chunks, made on a worker thread (chunk-sealer-worker.ts): the
 * snapshot files read in manifest order, cut into chunks, each sealed under the backup's data key
 * (chunk-cipher.ts) with the SHA-256 of its stored bytes. The event loop only receives finished
 * chunks (moved, not copied) and writes them; the next chunk is sealed while one is being written.
 * The worker runs at a lower CPU priority, so a backup gives way to the requests on a busy machine.
 *
 * The same worker takes the read-back of each written chunk (storedDigest, for putVerified): a
 * folder destination's object is read and hashed there, another destination's is fetched on the
 * event loop and hashed there. So the event loop neither hashes a chunk nor, for a folder, reads it.
 */
import type { Worker } from 'node:worker_threads';
import type { Destination } from '../objects/destination.ts';
import { BACKUP_THREAD_NICE } from '../thread-priority.ts';
import { startTsWorker } from '../ts-worker.ts';
import type { SealerDigest, SealerReply, SealerRequest } from './chunk-sealer-worker.ts';
import { BackupError } from './errors.ts';
import type { SnapshotFile } from './snapshot.ts';

export interface SealedChunk {
  index: number;
  final: boolean;
  stored: Buffer;
  sha256: string;
}

export interface ChunkSealer {
  /** The sealed chunks in order; the worker lives while this is iterated and stops when it ends. */
  chunks: AsyncGenerator<SealedChunk>;
  /**
   * The SHA-256 (hex) of what `destination` holds under `key`, taken on the worker's thread
   * (putVerified's storedDigest). Only while `chunks` is being iterated.
   */
  storedDigest(destination: Destination, key: string): Promise<string>;
}

type ChunkReply = Extract<SealerReply, { kind: 'chunk' | 'error' }>;

export function startChunkSealer(options: {
  files: readonly SnapshotFile[];
  key: Buffer;
  backupId: string;
  chunkSize: number;
}): ChunkSealer {
  let worker: Worker | undefined;
  let nextDigest = 0;
  const digests = new Map<number, { resolve(sha256: string): void; reject(e: Error): void }>();
  const failDigests = (message: string) => {
    for (const d of digests.values()) d.reject(new BackupError('TRESOR_ERR_BACKUP_FAILED', message));
    digests.clear();
  };

  async function* chunks(): AsyncGenerator<SealedChunk> {
    const w = startTsWorker(new URL('./chunk-sealer-worker.ts', import.meta.url), {
      nice: BACKUP_THREAD_NICE,
    });
    worker = w;
    const replies: ChunkReply[] = [];
    let waiting: ((reply: ChunkReply) => void) | undefined;
    let failure: Error | undefined;
    const deliver = (reply: ChunkReply) => {
      if (waiting) {
        const resolve = waiting;
        waiting = undefined;
        resolve(reply);
      } else replies.push(reply);
    };
    w.on('message', (reply: SealerReply) => {
      if (reply.kind === 'digest' || reply.kind === 'digest-error') {
        const d = digests.get(reply.id);
        digests.delete(reply.id);
        if (reply.kind === 'digest') d?.resolve(reply.sha256);
        else
          d?.reject(Object.assign(new Error(reply.message), reply.code === null ? {} : { code: reply.code }));
      } else deliver(reply);
    });
    w.on('error', (err: Error) => {
      failure = err;
      failDigests(`chunk sealer failed: ${err.message}`);
      deliver({ kind: 'error', message: err.message });
    });
    w.on('exit', (code) => {
      failDigests(`chunk sealer stopped (exit code ${code})`);
      if (!failure) deliver({ kind: 'error', message: `chunk sealer stopped (exit code ${code})` });
    });
    const ask = (request: SealerRequest) => w.postMessage(request);
    const reply = () =>
      new Promise<ChunkReply>((resolve) => {
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
        if (got.kind === 'error')
          throw new BackupError('TRESOR_ERR_BACKUP_FAILED', `sealing: ${got.message}`);
        // Seal the next chunk while this one is written.
        if (!got.final) ask({ kind: 'next' });
        const stored = Buffer.from(got.stored.buffer, got.stored.byteOffset, got.stored.byteLength);
        yield { index: got.index, final: got.final, stored, sha256: got.sha256 };
        if (got.final) return;
      }
    } finally {
      worker = undefined;
      w.removeAllListeners('exit');
      failDigests('chunk sealer stopped');
      await w.terminate();
    }
  }

  return {
    chunks: chunks(),
    async storedDigest(destination, key) {
      if (worker === undefined) throw new BackupError('TRESOR_ERR_BACKUP_FAILED', 'no chunk sealer running');
      const id = nextDigest++;
      let request: SealerDigest;
      let transfer: ArrayBuffer[] = [];
      if (destination.folder !== undefined) {
        request = { kind: 'digest', id, folder: destination.folder, key };
      } else {
        const bytes = await destination.get(key);
        // Move a buffer the object owns whole; copy one that shares its memory (Node's pool).
        const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
        request = { kind: 'digest', id, bytes: owned ? bytes : new Uint8Array(bytes) };
        if (owned) transfer = [bytes.buffer as ArrayBuffer];
      }
      const w = worker;
      if (w === undefined) throw new BackupError('TRESOR_ERR_BACKUP_FAILED', 'no chunk sealer running');
      const answer = new Promise<string>((resolve, reject) => digests.set(id, { resolve, reject }));
      w.postMessage(request, transfer);
      return answer;
    },
  };
}

/** The sealed chunks alone (startChunkSealer, without the read-back). */
export function sealedChunks(options: Parameters<typeof startChunkSealer>[0]): AsyncGenerator<SealedChunk> {
  return startChunkSealer(options).chunks;
}
