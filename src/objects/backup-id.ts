/**
 * Backup ids: `<UTC time as YYYYMMDDTHHMMSSZ>-<8 random hex>`, e.g. `20260301T060000Z-3f9a0c1e`.
 * They sort by time as text, name the backup's folder at every destination, and bind its data key
 * in keyd (BACKUP_ID_PATTERN there is the wider wire rule). The time in the id is when the backup
 * started; retention reads it from the id, so listing a destination needs no manifest downloads.
 */
import { randomBytes } from 'node:crypto';

export const BACKUP_ID = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-[0-9a-f]{8}$/;

export function newBackupId(at: Date): string {
  const time = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
  return `${time}-${randomBytes(4).toString('hex')}`;
}

export function isBackupId(value: unknown): value is string {
  return typeof value === 'string' && BACKUP_ID.test(value);
}

/** When the backup with this id started (to the second), or undefined for a string that is not an id. */
export function backupIdTime(id: string): Date | undefined {
  const m = BACKUP_ID.exec(id);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m;
  const time = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`);
  return Number.isNaN(time.getTime()) ? undefined : time;
}
