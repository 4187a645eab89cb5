/**
 * Wiping store files: overwrite their bytes with zeros in place and fsync, so unlinking them does not
 * hand blocks that still hold data back to the filesystem; then unlink and fsync the folder so the
 * removal itself is durable. Every step tolerates files already gone, so a wipe interrupted by a
 * crash completes when run again.
 *
 * This is defence in depth below crypto-shredding, not a replacement for it: on SSDs (wear levelling)
 * and copy-on-write filesystems an in-place overwrite may land on new blocks and leave the old ones
 * readable to someone with the raw device. What the store holds is ciphertext and audit metadata.
 */
import { type FileHandle, open, unlink } from 'node:fs/promises';

const ZEROS = Buffer.alloc(1024 * 1024);

function isMissing(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && error.code === 'ENOENT';
}

/** Overwrites every byte of `path` with zeros (same length) and fsyncs it; false if it does not exist. */
export async function zeroFile(path: string): Promise<boolean> {
  let file: FileHandle;
  try {
    file = await open(path, 'r+');
  } catch (error) {
    if (isMissing(error)) return false;
    throw error;
  }
  try {
    const { size } = await file.stat();
    let position = 0;
    while (position < size) {
      const { bytesWritten } = await file.write(ZEROS, 0, Math.min(ZEROS.length, size - position), position);
      position += bytesWritten;
    }
    await file.sync();
    return true;
  } finally {
    await file.close();
  }
}

/** fsyncs a folder, so that files created in it or removed from it stay so after power loss. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Zeroes, then unlinks each of `paths` (all in `folder`), then fsyncs `folder`. */
export async function wipeFiles(paths: readonly string[], folder: string): Promise<void> {
  for (const path of paths) await zeroFile(path);
  for (const path of paths) {
    try {
      await unlink(path);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }
  try {
    await syncFolder(folder);
  } catch (error) {
    if (!isMissing(error)) throw error; // no folder: nothing was ever there
  }
}
