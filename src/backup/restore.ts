/**
 * Restoring a whole backup into an empty data folder. The backup is read and checked as
 * verification does (read-backup.ts) while its files are written into a temporary sibling folder
 * (`.<target>.restore-<random>`, 0700); only once every check has passed is that folder renamed to
 * the target (rename(2): atomic, and it replaces only an empty folder). So there is never a
 * half-restored data folder: either the whole checked backup is there or nothing changed. A target
 * that exists and is not empty is refused before anything is read; any failure removes the
 * temporary folder.
 */
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { refuseNonEmpty, syncFolder, targetNotEmpty } from '../objects/restore-target.ts';
import type { ManifestFile } from './manifest.ts';
import { type BackupVerification, type FileSink, type ReadBackupOptions, readBackup } from './read-backup.ts';

export interface RestoreOptions extends ReadBackupOptions {
  /** The data folder to restore into: must not exist, or be an empty folder. */
  target: string;
  /**
   * false for a scratch restore that is read and removed (the trial restore after each backup):
   * no fsync, so it does not force its writes to disk in the middle of the server's commits.
   */
  durable?: boolean;
}

export interface RestoreResult extends BackupVerification {
  target: string;
}

export async function restoreBackup(options: RestoreOptions): Promise<RestoreResult> {
  const target = resolve(options.target);
  const verification = await restoreFiles({ target, durable: options.durable ?? true }, (sink) =>
    readBackup(options, sink),
  );
  return { ...verification, target };
}

/**
 * The file half of a restore: `read` runs a checked pass over the backup (readBackup, or readChunks
 * where the chunks come from another thread) writing through the sink into the staging folder,
 * which becomes the target only once `read` resolved. Its answer is passed through.
 */
export async function restoreFiles<T>(
  options: { target: string; durable: boolean },
  read: (sink: FileSink) => Promise<T>,
): Promise<T> {
  const target = resolve(options.target);
  const durable = options.durable;
  await refuseNonEmpty(target);
  const parent = dirname(target);
  const staging = join(parent, `.${basename(target)}.restore-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    let handle: FileHandle | undefined;
    const folders = new Set<string>([staging]);
    const answer = await read({
      async begin(file: ManifestFile) {
        const path = join(staging, file.name);
        await mkdir(dirname(path), { recursive: true, mode: 0o700 });
        folders.add(dirname(path));
        handle = await open(path, 'wx', 0o600);
      },
      async write(bytes: Buffer) {
        await handle?.write(bytes);
      },
      async end() {
        if (durable) await handle?.sync();
        await handle?.close();
        handle = undefined;
      },
    }).finally(() => handle?.close().catch(() => undefined));
    if (durable) for (const folder of folders) await syncFolder(folder);
    await refuseNonEmpty(target); // filled meanwhile? then leave it alone
    try {
      await rename(staging, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') throw targetNotEmpty(target);
      throw err;
    }
    if (durable) await syncFolder(parent);
    return answer;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}
