/**
 * The worker thread of chunk-sealer.ts: reads a snapshot's files as one stream, cuts it into
 * chunks of `chunkSize` plaintext bytes (the last may be shorter; an empty stream is one empty
 * chunk), seals each (chunk-cipher.ts) and takes the SHA-256 of the stored bytes, one chunk per
 * `next` message, so at most the chunk being written and the one being sealed are in memory. Reading,
 * AES-GCM and the digests — seconds of CPU for a large store — run here, at a lower CPU priority
 * (thread-priority.ts), not on the server's event loop. The data key is wiped when the stream
 * ends or fails, and each plaintext chunk once it is sealed.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { secretCopy, wipe } from '../crypto/index.ts';
import { sealChunk } from '../objects/chunk-cipher.ts';
import { createFolderDestination } from '../objects/folder-destination.ts';
import { lowerThreadPriority } from '../thread-priority.ts';

export interface SealerStart {
  kind: 'start';
  files: { name: string; path: string; size: number }[];
  key: Uint8Array;
  backupId: string;
  chunkSize: number;
}

/**
 * The read-back of a written object, hashed here: a folder destination's object read here by its
 * key, or another destination's bytes fetched by the event loop and handed over.
 */
export type SealerDigest = { kind: 'digest'; id: number } & (
  | { folder: { root: string; name: string }; key: string }
  | { bytes: Uint8Array }
);

export type SealerRequest = SealerStart | { kind: 'next' } | SealerDigest;

export type SealerReply =
  | { kind: 'chunk'; index: number; final: boolean; stored: Uint8Array; sha256: string }
  | { kind: 'error'; message: string }
  | { kind: 'digest'; id: number; sha256: string }
  | { kind: 'digest-error'; id: number; code: string | null; message: string };

const port = parentPort;
if (port === null) throw new Error('chunk-sealer-worker.ts runs as a worker thread');
lowerThreadPriority();

let chunks: Generator<Buffer> | undefined;
let key: Buffer | undefined;
let job: SealerStart | undefined;
let index = 0;
let count = 0;

port.on('message', (request: SealerRequest) => {
  if (request.kind === 'digest') {
    void readBack(request);
    return;
  }
  try {
    if (request.kind === 'start') {
      job = request;
      key = secretCopy(request.key); // not a pool slice: it is wiped
      wipe(request.key);
      const total = request.files.reduce((sum, f) => sum + f.size, 0);
      count = Math.max(1, Math.ceil(total / request.chunkSize));
      chunks = readChunks(request.files, request.chunkSize, total);
      index = 0;
      return;
    }
    if (!chunks || !key || !job) throw new Error('no stream started');
    const next = chunks.next();
    if (next.done) throw new Error('no chunk left');
    const final = index === count - 1;
    const sealed = sealChunk(key, { backupId: job.backupId, index, final }, next.value);
    // Transfer only a buffer this chunk owns whole: a small one sits in Node's shared pool, which
    // must not be detached (Node 24 refuses to transfer it at all), so it is copied out first.
    const owned = sealed.byteOffset === 0 && sealed.byteLength === sealed.buffer.byteLength;
    const stored = owned ? sealed : Buffer.alloc(sealed.length); // Buffer.alloc is never pooled
    if (stored !== sealed) sealed.copy(stored);
    wipe(next.value);
    const sha256 = createHash('sha256').update(stored).digest('hex');
    const reply: SealerReply = { kind: 'chunk', index, final, stored, sha256 };
    index += 1;
    if (final) wipe(key);
    port.postMessage(reply, [stored.buffer as ArrayBuffer]);
  } catch (err) {
    wipe(key);
    port.postMessage({ kind: 'error', message: (err as Error).message } satisfies SealerReply);
  }
});

async function readBack(request: SealerDigest): Promise<void> {
  try {
    const bytes =
      'bytes' in request ? request.bytes : await createFolderDestination(request.folder).get(request.key);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    port?.postMessage({ kind: 'digest', id: request.id, sha256 } satisfies SealerReply);
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    port?.postMessage({
      kind: 'digest-error',
      id: request.id,
      code: typeof e.code === 'string' ? e.code : null,
      message: typeof e.message === 'string' ? e.message : 'read-back failed',
    } satisfies SealerReply);
  }
}

/** The files as one stream of plaintext chunks of `chunkSize` bytes (the last may be shorter). */
function* readChunks(files: SealerStart['files'], chunkSize: number, total: number): Generator<Buffer> {
  if (total === 0) {
    yield Buffer.alloc(0);
    return;
  }
  // A buffer of its own per chunk (never from the shared pool): it is wiped after sealing.
  let chunk = Buffer.alloc(Math.min(chunkSize, total));
  let filled = 0;
  let remaining = total;
  for (const file of files) {
    const fd = openSync(file.path, 'r');
    try {
      let left = file.size;
      while (left > 0) {
        const bytesRead = readSync(fd, chunk, filled, Math.min(chunk.length - filled, left), null);
        if (bytesRead === 0) throw new Error(`snapshot: ${file.name} shrank while being read`);
        filled += bytesRead;
        left -= bytesRead;
        remaining -= bytesRead;
        if (filled === chunk.length) {
          yield chunk;
          chunk = Buffer.alloc(Math.min(chunkSize, remaining));
          filled = 0;
        }
      }
    } finally {
      closeSync(fd);
    }
  }
}
