/**
 * Placeholder until the S3 destination lands (branch backup-s3 owns this file and replaces it):
 * the signature the server's wiring calls, refusing at start so a configured s3 destination is
 * never silently skipped.
 */
import type { Destination } from './destination.ts';
import { BackupError } from './errors.ts';

export interface S3DestinationOptions {
  name: string;
  endpoint?: string;
  region: string;
  bucket: string;
  prefix: string;
  forcePathStyle: boolean;
  accessKeyId: string;
  secretAccessKey: string;
}

export function createS3Destination(_options: S3DestinationOptions): Destination {
  throw new BackupError('TRESOR_ERR_CONFIG_INVALID', 's3 destinations arrive with the S3 destination');
}
