/**
 * A destination in a local or mounted folder: `<root>/<backup id>/<object>`, owner-only.
 *
 * put() writes a temporary file (`.<name>.tmp-<random>`, which list() never shows), fsyncs it,
 * renames it to its name and fsyncs the folder: after a crash or power loss the object is either
 * absent or whole (POSIX rename(2) is atomic). Errors of the file system (full, read-only, gone)
 * become TRESOR_ERR_BACKUP_DESTINATION naming the folder's destination and the errno code.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { checkObjectKey, type Destination } from './destination.ts';
import { BackupError } from './errors.ts';
import { syncFolder } from './restore-target.ts';

export interface FolderDestinationOptions {
  /** The folder; created (0700) on first write if missing. */
  root: string;
  /** Report name; default `folder:<root>`. */
  name?: string;
}

export function createFolderDestination(options: FolderDestinationOptions): Destination {
  const root = options.root;
  const name = options.name ?? `folder:${root}`;
  const failed = (what: string, err: unknown) =>
    new BackupError(
      'TRESOR_ERR_BACKUP_DESTINATION',
      `${name}: ${what} failed (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );

  return {
    name,
    folder: { root, name },

    async put(key, data) {
      const path = join(root, checkObjectKey(key));
      const folder = join(path, '..');
      const temp = join(folder, `.${key.split('/').pop()}.tmp-${randomBytes(6).toString('hex')}`);
      try {
        await makeFolder(folder);
        const file = await open(temp, 'wx', 0o600);
        try {
          await file.writeFile(data);
          await file.sync();
        } finally {
          await file.close();
        }
        await rename(temp, path);
        await syncFolder(folder);
      } catch (err) {
        await rm(temp, { force: true }).catch(() => undefined);
        throw failed(`writing ${key}`, err);
      }
    },

    async get(key) {
      try {
        return await readFile(join(root, checkObjectKey(key)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `${name}: no object ${key}`);
        }
        throw failed(`reading ${key}`, err);
      }
    },

    async list(prefix) {
      let entries: string[];
      try {
        entries = await readdir(root, { recursive: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw failed('listing', err);
      }
      return entries
        .map((entry) => entry.split('\\').join('/'))
        .filter((key) => key.startsWith(prefix) && isObjectKey(key))
        .sort();
    },

    async delete(key) {
      const path = join(root, checkObjectKey(key));
      try {
        await rm(path, { force: true });
        // The backup's folder goes with its last object.
        if (key.includes('/')) await rmdir(join(path, '..')).catch(() => undefined);
      } catch (err) {
        throw failed(`deleting ${key}`, err);
      }
    },
  };
}

/**
 * mkdir -p, 0700. Node's recursive mkdir reports ENOENT where the file system is read-only
 * (EROFS) or refuses the folder: a plain mkdir then names the real cause for the report.
 */
async function makeFolder(folder: string): Promise<void> {
  try {
    await mkdir(folder, { recursive: true, mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    try {
      await mkdir(folder, { mode: 0o700 });
    } catch (cause) {
      // ENOENT again: a parent is really missing (and cannot be made); report the first error.
      if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') throw cause;
      throw err;
    }
  }
}

function isObjectKey(key: string): boolean {
  try {
    checkObjectKey(key);
    return key.includes('/'); // objects live in a backup's folder; the folders themselves are not objects
  } catch {
    return false;
  }
}
