/**
 * Copying a complete backup from one destination to another, object by object with read-back
 * (putVerified): first the audit segments its manifest names that the other destination lacks
 * (audit-segments.ts: byte copies, they are sealed already), then its chunks, then the signature,
 * the manifest last: a destination that failed during a backup gets the very same backup (same id,
 * same bytes) on a retry, without taking and encrypting a second one, and a backup that appears
 * there complete finds the segments it names beside it. If the copy fails, what it wrote of the
 * backup is removed; segments copied whole stay (other backups may name them too).
 */
import {
  type Destination,
  deleteBackup,
  MANIFEST_OBJECT,
  putVerified,
  SIGNATURE_OBJECT,
} from '../objects/destination.ts';
import { copySegments } from './audit-segments.ts';
import { BackupError, invalidBackup } from './errors.ts';
import { parseManifest } from './manifest.ts';

export async function copyBackup(from: Destination, to: Destination, backupId: string): Promise<void> {
  const keys = await from.list(`${backupId}/`);
  const manifest = `${backupId}/${MANIFEST_OBJECT}`;
  const signature = `${backupId}/${SIGNATURE_OBJECT}`;
  if (!keys.includes(manifest)) {
    throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `${from.name} holds no complete backup ${backupId}`);
  }
  const manifestBytes = await from.get(manifest);
  const parsed = parseManifest(manifestBytes);
  if (parsed === undefined) throw invalidBackup(backupId, 'the manifest is malformed');
  await copySegments(from, to, backupId, parsed.auditSegments ?? []);
  const order = [...keys.filter((k) => k !== manifest && k !== signature), signature];
  try {
    for (const key of order) await putVerified(to, key, await from.get(key));
    await putVerified(to, manifest, manifestBytes);
  } catch (err) {
    await deleteBackup(to, backupId).catch(() => undefined);
    throw err;
  }
}
