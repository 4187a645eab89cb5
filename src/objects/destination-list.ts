/**
 * A list of destinations as an operator writes it (a config file's JSON, or the same JSON in an
 * environment variable), checked and completed: names unique and plain, every field of its kind,
 * relative paths resolved against `base`, each retention filled from the caller's defaults. For
 * keyd's `keyd.backup.destinations`; the server's list is checked by its config schema
 * (src/config/server-schema.ts) in the same shapes. Problems name the entry and field, never a value.
 */
import { resolve } from 'node:path';
import type { BackupDestinationConfig, BackupRetentionConfig } from './configured-destinations.ts';
import { BackupError } from './errors.ts';

const NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
const FOLDER_FIELDS = ['name', 'kind', 'path', 'retention'];
const S3_FIELDS = [
  'name',
  'kind',
  'timeoutSeconds',
  'endpoint',
  'region',
  'bucket',
  'prefix',
  'forcePathStyle',
  'accessKeyIdFile',
  'secretAccessKeyFile',
  'retention',
];

function problem(why: string): BackupError {
  return new BackupError('TRESOR_ERR_CONFIG_INVALID', why);
}

function text(entry: Record<string, unknown>, where: string, field: string): string {
  const v = entry[field];
  if (typeof v !== 'string' || !/\S/.test(v) || v.length > 4096) {
    throw problem(`${where}.${field} must be a non-empty string`);
  }
  return v;
}

function retentionOf(value: unknown, where: string, defaults: BackupRetentionConfig): BackupRetentionConfig {
  if (value === undefined) return { ...defaults };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw problem(`${where}.retention must be an object {keepAllDays, keepDailyDays}`);
  }
  const r = { ...defaults };
  for (const [key, days] of Object.entries(value)) {
    if (key !== 'keepAllDays' && key !== 'keepDailyDays') throw problem(`${where}.retention: unknown ${key}`);
    if (!Number.isSafeInteger(days) || (days as number) < 0 || (days as number) > 36_500) {
      throw problem(`${where}.retention.${key} must be a whole number of days from 0 to 36500`);
    }
    r[key] = days as number;
  }
  return r;
}

/** The checked destinations; TRESOR_ERR_CONFIG_INVALID naming the first problem. */
export function parseDestinationList(
  raw: unknown,
  base: string,
  defaults: BackupRetentionConfig,
): BackupDestinationConfig[] {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > 16) {
    throw problem('backup destinations must be a list of 1 to 16 destinations');
  }
  const names = new Set<string>();
  return raw.map((item, i): BackupDestinationConfig => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw problem(`backup destination ${i} must be an object`);
    }
    const entry = item as Record<string, unknown>;
    const where = `backup destination ${i}`;
    const name = entry.name;
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw problem(
        `${where}.name must be 1-32 lower-case letters, digits or -, starting with a letter or digit`,
      );
    }
    if (names.has(name)) throw problem(`backup destination name ${name} is used twice`);
    names.add(name);
    const allowed = entry.kind === 'folder' ? FOLDER_FIELDS : entry.kind === 's3' ? S3_FIELDS : undefined;
    if (!allowed) throw problem(`${where}.kind must be "folder" or "s3"`);
    for (const key of Object.keys(entry)) {
      if (!allowed.includes(key)) throw problem(`${where}: unknown field for kind ${entry.kind}`);
    }
    const retention = retentionOf(entry.retention, where, defaults);
    if (entry.kind === 'folder') {
      return { name, kind: 'folder', path: resolve(base, text(entry, where, 'path')), retention };
    }
    if (entry.prefix !== undefined && (typeof entry.prefix !== 'string' || entry.prefix.length > 256)) {
      throw problem(`${where}.prefix must be a string of at most 256 characters`);
    }
    if (entry.forcePathStyle !== undefined && typeof entry.forcePathStyle !== 'boolean') {
      throw problem(`${where}.forcePathStyle must be true or false`);
    }
    const timeout = entry.timeoutSeconds;
    if (
      timeout !== undefined &&
      !(Number.isSafeInteger(timeout) && (timeout as number) >= 1 && (timeout as number) <= 3600)
    ) {
      throw problem(`${where}.timeoutSeconds must be a whole number of seconds from 1 to 3600`);
    }
    return {
      name,
      kind: 's3',
      ...(entry.endpoint === undefined ? {} : { endpoint: text(entry, where, 'endpoint') }),
      region: text(entry, where, 'region'),
      bucket: text(entry, where, 'bucket'),
      prefix: typeof entry.prefix === 'string' ? entry.prefix : '',
      forcePathStyle: entry.forcePathStyle === true,
      accessKeyIdFile: resolve(base, text(entry, where, 'accessKeyIdFile')),
      secretAccessKeyFile: resolve(base, text(entry, where, 'secretAccessKeyFile')),
      timeoutSeconds: typeof timeout === 'number' ? timeout : 60,
      retention,
    };
  });
}
