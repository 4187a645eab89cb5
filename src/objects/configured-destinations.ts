/**
 * The destinations of a config (`server.backup.destinations`, `keyd.backup.destinations`) as Destination objects, each with
 * its retention policy. S3 credentials are read from their files here, at start, into the
 * destination's client only: they never enter the config object, a log or a report.
 */
import { readFileSync } from 'node:fs';
import type { Destination } from './destination.ts';
import { BackupError } from './errors.ts';
import { createFolderDestination } from './folder-destination.ts';
import type { RetentionPolicy } from './retention.ts';
import { createS3Destination } from './s3-destination.ts';

/** What a backup destination keeps (retention.ts): every backup, then one a day. */
export interface BackupRetentionConfig {
  keepAllDays: number;
  keepDailyDays: number;
}

/** One backup destination; S3 credentials stay in their files until the destination is made. */
export type BackupDestinationConfig =
  | { name: string; kind: 'folder'; path: string; retention: BackupRetentionConfig }
  | {
      name: string;
      kind: 's3';
      endpoint?: string;
      region: string;
      bucket: string;
      prefix: string;
      forcePathStyle: boolean;
      accessKeyIdFile: string;
      secretAccessKeyFile: string;
      /** Seconds one request may take before the attempt fails. */
      timeoutSeconds: number;
      retention: BackupRetentionConfig;
    };

export interface ConfiguredDestination {
  name: string;
  destination: Destination;
  retention: RetentionPolicy;
}

export function configuredDestinations(
  destinations: readonly BackupDestinationConfig[],
): ConfiguredDestination[] {
  return destinations.map((d) => ({
    name: d.name,
    retention: { keepAllDays: d.retention.keepAllDays, dailyDays: d.retention.keepDailyDays },
    destination:
      d.kind === 'folder'
        ? createFolderDestination({ root: d.path, name: d.name })
        : createS3Destination({
            name: d.name,
            ...(d.endpoint === undefined ? {} : { endpoint: d.endpoint }),
            region: d.region,
            bucket: d.bucket,
            prefix: d.prefix,
            forcePathStyle: d.forcePathStyle,
            accessKeyId: secretFile(d.name, 'accessKeyIdFile', d.accessKeyIdFile),
            secretAccessKey: secretFile(d.name, 'secretAccessKeyFile', d.secretAccessKeyFile),
            requestTimeoutMs: d.timeoutSeconds * 1000,
          }),
  }));
}

/** A credential from its file (one trailing newline trimmed); the error names the setting, never the content. */
function secretFile(destination: string, setting: string, path: string): string {
  try {
    const value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    if (value.length === 0) throw new Error('empty');
    return value;
  } catch {
    throw new BackupError(
      'TRESOR_ERR_CONFIG_INVALID',
      `backup destination ${destination}: cannot read the file named by ${setting}`,
    );
  }
}
