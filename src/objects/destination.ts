/**
 * Where backups are kept. A destination stores named objects (`<backup id>/<object>`) and knows
 * nothing of their format: the folder destination (folder-destination.ts) and S3
 * (s3-destination.ts) behind one interface. The server's backups (src/backup) and keyd's own
 * (src/keyd/backup/) both use it; the format of what they store is theirs.
 *
 * The rules every backup relies on, whatever the destination:
 * - put() is all or nothing: an object is either absent or whole under its name;
 * - every object is read back after writing and its SHA-256 compared (putVerified), so a backup is
 *   counted only once the destination has shown it holds exactly the bytes written;
 * - a backup is complete only once its manifest exists, and the manifest is written last, so an
 *   interrupted backup never looks complete (listBackups).
 */
import { createHash } from 'node:crypto';
import { backupIdTime, isBackupId } from './backup-id.ts';
import { BackupError } from './errors.ts';

export const MANIFEST_OBJECT = 'manifest.json';
export const SIGNATURE_OBJECT = 'manifest.sig';

export interface Destination {
  /** A short name for reports and logs (never a credential). */
  readonly name: string;
  /** Stores `data` under `key`, replacing nothing half-way. TRESOR_ERR_BACKUP_DESTINATION on failure. */
  put(key: string, data: Buffer): Promise<void>;
  /** The object's bytes; TRESOR_ERR_BACKUP_NOT_FOUND when there is none. */
  get(key: string): Promise<Buffer>;
  /** Every whole object whose key starts with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
  /** Removes the object; removing what is not there is not an error. */
  delete(key: string): Promise<void>;
  /**
   * A folder destination's place, which a worker thread of this process can open by itself
   * (createFolderDestination): so a background pass reads the objects there, rather than having the
   * event loop read and copy every byte to it. Absent for a remote destination.
   */
  readonly folder?: { root: string; name: string };
}

/** Object keys: `/`-separated segments of [A-Za-z0-9._-], none starting with a dot. */
const OBJECT_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(\/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,7}$/;

export function checkObjectKey(key: string): string {
  if (!OBJECT_KEY.test(key)) {
    throw new BackupError('TRESOR_ERR_BACKUP_DESTINATION', 'invalid backup object name');
  }
  return key;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Where putVerified's digests come from when the caller has them off the event loop. */
export interface PutDigests {
  /** The SHA-256 (hex) of `data`, already taken (the backup's sealer takes it with the chunk). */
  digest?: string;
  /**
   * The SHA-256 (hex) of what the destination holds under the key, as get() would read it: the
   * backup's sealer worker reads a folder's object and hashes it on its own thread. Default: get()
   * here and hash the bytes.
   */
  storedDigest?: (destination: Destination, key: string) => Promise<string>;
}

/** put(), then get() and compare digests: the destination has shown it holds exactly `data`. */
export async function putVerified(
  destination: Destination,
  key: string,
  data: Buffer,
  digests: PutDigests = {},
): Promise<string> {
  const digest = digests.digest ?? sha256Hex(data);
  await destination.put(key, data);
  let back: string;
  try {
    back = digests.storedDigest
      ? await digests.storedDigest(destination, key)
      : sha256Hex(await destination.get(key));
  } catch (err) {
    throw new BackupError(
      'TRESOR_ERR_BACKUP_DESTINATION',
      `${destination.name}: ${key} could not be read back (${(err as { code?: string }).code ?? 'error'})`,
    );
  }
  if (back !== digest) {
    throw new BackupError(
      'TRESOR_ERR_BACKUP_DESTINATION',
      `${destination.name}: ${key} read back differs from what was written`,
    );
  }
  return digest;
}

export interface ListedBackup {
  id: string;
  /** When the backup started, from its id. */
  takenAt: Date;
  /** Its manifest is there: written last, it marks a backup whose every object was written and read back. */
  complete: boolean;
}

/** The backups a destination holds, oldest first; objects outside `<backup id>/` are ignored. */
export async function listBackups(destination: Destination): Promise<ListedBackup[]> {
  const byId = new Map<string, ListedBackup>();
  for (const key of await destination.list('')) {
    const [id, object] = key.split('/', 2);
    if (id === undefined || object === undefined || !isBackupId(id)) continue;
    const takenAt = backupIdTime(id);
    if (takenAt === undefined) continue;
    const entry = byId.get(id) ?? { id, takenAt, complete: false };
    if (object === MANIFEST_OBJECT) entry.complete = true;
    byId.set(id, entry);
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Deletes every object of a backup, the manifest first, so it stops counting as complete at once. */
export async function deleteBackup(destination: Destination, backupId: string): Promise<void> {
  const keys = await destination.list(`${backupId}/`);
  const manifest = `${backupId}/${MANIFEST_OBJECT}`;
  await destination.delete(manifest);
  for (const key of keys) if (key !== manifest) await destination.delete(key);
}
