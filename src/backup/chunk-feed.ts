/**
 * The chunks of a backup for a pass that runs in a worker thread (the background verification,
 * background-verify.ts; the trial restore, src/server/backup-trial-scratch.ts). A folder
 * destination's chunks are read in the worker itself (path and name only cross the thread), so the
 * event loop neither reads nor copies them; a remote destination's (S3, whose client and
 * credentials live on the event loop) are asked of the event loop (`want`), which fetches each and
 * copies it over. Either way the pass asks for `AHEAD` chunks beyond the one it reads.
 */
import type { Destination } from '../objects/destination.ts';
import { createFolderDestination } from '../objects/folder-destination.ts';
import type { BackupManifest } from './manifest.ts';
import { fetchChunk } from './read-backup.ts';

/** The worker's request for a chunk a remote destination holds. */
export interface ChunkWant {
  kind: 'want';
  index: number;
}

/** The event loop's answer to a `want`: a chunk's stored bytes, or why it could not be fetched. */
export type ChunkAnswer =
  | { kind: 'chunk'; index: number; stored: Uint8Array }
  | { kind: 'chunk-error'; index: number; code: string | null; message: string };

/** Chunks requested ahead of the one the pass reads. */
const AHEAD = 2;

/**
 * In the worker: `chunk(index)` for readChunks; `answer` takes the event loop's ChunkAnswers.
 * `folder` is the destination's Destination.folder, absent for a remote one.
 */
export function chunkFeed(
  manifest: BackupManifest,
  folder: { root: string; name: string } | undefined,
  want: (message: ChunkWant) => void,
): { chunk(index: number): Promise<Buffer>; answer(message: ChunkAnswer): void } {
  const local = folder === undefined ? undefined : createFolderDestination(folder);
  const waiting = new Map<number, { resolve(b: Buffer): void; reject(e: Error): void }>();
  const requested = new Map<number, Promise<Buffer>>();
  const ask = (index: number) => {
    if (index >= manifest.chunks.length || requested.has(index)) return;
    let promise: Promise<Buffer>;
    if (local !== undefined) {
      promise = fetchChunk(local, manifest.backupId, index);
    } else {
      promise = new Promise<Buffer>((resolve, reject) => waiting.set(index, { resolve, reject }));
      want({ kind: 'want', index });
    }
    promise.catch(() => undefined); // a chunk fetched ahead may fail after the pass stopped
    requested.set(index, promise);
  };
  return {
    chunk(index) {
      for (let i = index; i <= index + AHEAD; i++) ask(i);
      const promise = requested.get(index) as Promise<Buffer>;
      requested.delete(index);
      return promise;
    },
    answer(message) {
      const w = waiting.get(message.index);
      waiting.delete(message.index);
      if (message.kind === 'chunk') {
        w?.resolve(Buffer.from(message.stored.buffer, message.stored.byteOffset, message.stored.byteLength));
      } else {
        w?.reject(
          Object.assign(new Error(message.message), message.code === null ? {} : { code: message.code }),
        );
      }
    },
  };
}

/** On the event loop: fetches the chunk a worker wants and posts it (or why not) back. */
export function answerWant(
  destination: Destination,
  backupId: string,
  index: number,
  post: (answer: ChunkAnswer) => void,
): void {
  fetchChunk(destination, backupId, index).then(
    (stored) => post({ kind: 'chunk', index, stored }),
    (err: { code?: unknown; message?: unknown }) =>
      post({
        kind: 'chunk-error',
        index,
        code: typeof err.code === 'string' ? err.code : null,
        message: typeof err.message === 'string' ? err.message : String(err),
      }),
  );
}
