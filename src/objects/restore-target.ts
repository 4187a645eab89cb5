/**
 * The folder a restore fills, and the folders whose entries must be on disk: one check that a
 * restore target is an empty folder (or absent), its one refusal, and the fsync of a folder after
 * a rename or a new entry in it (rename(2) is durable only once the parent folder is synced).
 * Shared by the archive's restore (src/backup/restore.ts), the folder destination, the
 * whole-deployment restore (src/server/restore-deployment.ts) and keyd's restore.
 */
import { open, readdir, stat } from 'node:fs/promises';
import { BackupError } from './errors.ts';

/** Throws TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY unless `target` is absent or an empty folder. */
export async function refuseNonEmpty(target: string): Promise<void> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!info.isDirectory() || (await readdir(target)).length > 0) throw targetNotEmpty(target);
}

export function targetNotEmpty(target: string): BackupError {
  return new BackupError(
    'TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY',
    `restore target ${target} is not an empty folder: a restore never mixes with existing data`,
  );
}

/** fsync of a folder: its new and renamed entries survive a crash. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
