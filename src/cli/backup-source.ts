/**
 * `--from <folder | s3://bucket/prefix>` of the restore commands (`tresor restore`, `tresor keyd
 * restore`) as a destination to read backups from. S3 credentials come from files or the AWS_*
 * variables, never from the command line.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Destination } from '../objects/destination.ts';
import { createFolderDestination } from '../objects/folder-destination.ts';
import { createS3Destination } from '../objects/s3-destination.ts';
import { usageError } from './io.ts';

export interface BackupSourceFlags {
  from: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
  s3AccessKeyIdFile?: string;
  s3SecretAccessKeyFile?: string;
}

/** `s3://bucket/prefix`: S3 bucket names are 3–63 of [a-z0-9.-]; the prefix is optional. */
const S3_URL = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/;

/** The destination `--from` names, with the S3 flags and credentials that go with it. */
export function backupSource(command: string, flags: BackupSourceFlags): Destination {
  const s3 = S3_URL.exec(flags.from);
  if (flags.from.startsWith('s3://') && s3 === null) {
    throw usageError(command, '--from s3://bucket/prefix: the bucket name is not valid');
  }
  if (s3 === null) {
    for (const flag of ['s3Endpoint', 's3Region', 's3PathStyle'] as const) {
      if (flags[flag] !== undefined)
        throw usageError(command, `--${kebab(flag)} is for an s3:// destination`);
    }
    return createFolderDestination({ root: resolve(flags.from) });
  }
  const [, bucket = '', prefix = ''] = s3;
  if (flags.s3Endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(flags.s3Endpoint)) {
    throw usageError(command, '--s3-endpoint must be an http(s) URL');
  }
  return createS3Destination({
    name: `s3://${bucket}/${prefix}`,
    ...(flags.s3Endpoint === undefined ? {} : { endpoint: flags.s3Endpoint }),
    region: flags.s3Region ?? nonEmpty(process.env.AWS_REGION) ?? 'us-east-1',
    bucket,
    prefix,
    forcePathStyle: flags.s3PathStyle ?? flags.s3Endpoint !== undefined,
    accessKeyId: credential(
      command,
      '--s3-access-key-id-file',
      flags.s3AccessKeyIdFile ?? nonEmpty(process.env.TRESOR_S3_ACCESS_KEY_ID_FILE),
      'AWS_ACCESS_KEY_ID',
    ),
    secretAccessKey: credential(
      command,
      '--s3-secret-access-key-file',
      flags.s3SecretAccessKeyFile ?? nonEmpty(process.env.TRESOR_S3_SECRET_ACCESS_KEY_FILE),
      'AWS_SECRET_ACCESS_KEY',
    ),
  });
}

/** A credential from its file, else its AWS_* variable; never from a flag's value. */
function credential(command: string, flag: string, file: string | undefined, env: string): string {
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw usageError(command, `cannot read ${flag}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (text === '') throw usageError(command, `${flag} is empty`);
    return text;
  }
  const value = nonEmpty(process.env[env]);
  if (value === undefined) throw usageError(command, `an s3:// destination needs ${env} or ${flag}`);
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
