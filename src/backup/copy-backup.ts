/**
 * Copying a complete backup from one destination to another, object by object with read-back
 * (putVerified), chunks first, then the signature, the manifest last: a destination that failed
 * during a backup gets the very same backup (same id, same bytes) on a retry, without taking and
 * encrypting a second one. If the copy fails, what it wrote is removed.
 */
import {
  type Destination,
  deleteBackup,
  MANIFEST_OBJECT,
  putVerified,
  SIGNATURE_OBJECT,
} from '../objects/destination.ts';
import { BackupError } from './errors.ts';

export async function copyBackup(from: Destination, to: Destination, backupId: string): Promise<void> {
  const keys = await from.list(`${backupId}/`);
  const manifest = `${backupId}/${MANIFEST_OBJECT}`;
  const signature = `${backupId}/${SIGNATURE_OBJECT}`;
  if (!keys.includes(manifest)) {
    throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `${from.name} holds no complete backup ${backupId}`);
  }
  const order = [...keys.filter((k) => k !== manifest && k !== signature), signature, manifest];
  try {
    for (const key of order) await putVerified(to, key, await from.get(key));
  } catch (err) {
    await deleteBackup(to, backupId).catch(() => undefined);
    throw err;
  }
}
