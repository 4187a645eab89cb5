/**
 * The worker thread of background-verify.ts: the checked pass over every chunk of a backup that
 * the event loop opened (digest, AES-GCM at its place, every file's digest: readChunks), writing
 * nothing. A folder destination's chunks are read here; a remote one's are asked of the event loop
 * (chunk-feed.ts). The thread runs at the lowest CPU priority (startTsWorker lowers it before
 * anything loads). The data key is wiped when the pass ends.
 */
import { parentPort } from 'node:worker_threads';
import { wipe } from '../crypto/index.ts';
import { type ChunkAnswer, type ChunkWant, chunkFeed } from './chunk-feed.ts';
import type { BackupManifest } from './manifest.ts';
import { readChunks } from './read-backup.ts';

export interface VerifyStart {
  kind: 'start';
  manifest: BackupManifest;
  /** The backup's data key, copied into the message; wiped here once the pass ends. */
  key: Uint8Array;
  /** A folder destination, read here; absent: each chunk is asked of the event loop. */
  folder?: { root: string; name: string };
}

export type VerifyRequest = VerifyStart | ChunkAnswer;

export type VerifyReply =
  | ChunkWant
  | { kind: 'passed' }
  | { kind: 'failed'; code: string | null; message: string };

const port = parentPort;
if (port === null) throw new Error('background-verify-worker.ts runs as a worker thread');
let feed: ReturnType<typeof chunkFeed> | undefined;

port.on('message', (message: VerifyRequest) => {
  if (message.kind !== 'start') {
    feed?.answer(message);
    return;
  }
  const key = Buffer.from(message.key);
  wipe(message.key);
  const { manifest } = message;
  const current = chunkFeed(manifest, message.folder, (want) => port.postMessage(want));
  feed = current;
  readChunks({ manifest, key, chunk: (index) => current.chunk(index) })
    .then(
      () => port.postMessage({ kind: 'passed' } satisfies VerifyReply),
      (err: { code?: unknown; message?: unknown }) =>
        port.postMessage({
          kind: 'failed',
          code: typeof err.code === 'string' ? err.code : null,
          message: typeof err.message === 'string' ? err.message : 'the pass failed',
        } satisfies VerifyReply),
    )
    .finally(() => wipe(key));
});
