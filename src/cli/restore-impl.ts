/**
 * What `tresor restore` does (restore.ts declares it and loads this module only when it runs); the
 * work itself is src/server/restore-deployment.ts. This file turns flags into a destination and a
 * keyd client, and the result into output.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  createFolderDestination,
  createS3Destination,
  type Destination,
  isBackupId,
} from '../backup/index.ts';
import { type KeydConnection, resolveServerConfig } from '../config/server-config.ts';
import { createKeydClient } from '../keyd/client.ts';
import { restoreDeployment } from '../server/restore-deployment.ts';
import { out, usageError } from './io.ts';

const COMMAND = 'tresor restore';

export interface RestoreFlags {
  from: string;
  backup?: string;
  to: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
  s3AccessKeyIdFile?: string;
  s3SecretAccessKeyFile?: string;
  config?: string;
  keydSocket?: string;
  json?: boolean;
}

/** `s3://bucket/prefix`: S3 bucket names are 3–63 of [a-z0-9.-]; the prefix is optional. */
const S3_URL = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/;

export async function restoreCommand(flags: RestoreFlags): Promise<void> {
  if (flags.backup !== undefined && !isBackupId(flags.backup)) {
    throw usageError(COMMAND, '--backup is not a backup id (YYYYMMDDTHHMMSSZ-<8 hex>)');
  }
  const destination = destinationOf(flags);
  const keys = createKeydClient({ connect: keydTarget(flags), clientName: 'tresor-restore' });
  try {
    const done = await restoreDeployment({
      destination,
      keys,
      target: resolve(flags.to),
      ...(flags.backup === undefined ? {} : { backupId: flags.backup }),
    });
    out(
      flags.json
        ? done
        : [
            `restored backup ${done.backupId} (taken ${done.createdAt}) from ${done.destination} into ${done.target}`,
            `  ${done.files} files, ${done.plaintextBytes} bytes; ${done.tenants.length} tenants`,
            `  signature, every digest and the audit log (${done.audit.size} entries) against its checkpoint of size ${done.audit.checkpointSize}: ok`,
            ...done.tenants
              .filter((t) => t.keyShredded)
              .map(
                (t) =>
                  `  tenant ${t.id}: closed after the backup, its key is shredded: its records can never be read again`,
              ),
          ].join('\n'),
      flags.json === true,
    );
  } finally {
    await keys.close();
  }
}

function destinationOf(flags: RestoreFlags): Destination {
  const s3 = S3_URL.exec(flags.from);
  if (flags.from.startsWith('s3://') && s3 === null) {
    throw usageError(COMMAND, '--from s3://bucket/prefix: the bucket name is not valid');
  }
  if (s3 === null) {
    for (const flag of ['s3Endpoint', 's3Region', 's3PathStyle'] as const) {
      if (flags[flag] !== undefined)
        throw usageError(COMMAND, `--${kebab(flag)} is for an s3:// destination`);
    }
    return createFolderDestination({ root: resolve(flags.from) });
  }
  const [, bucket = '', prefix = ''] = s3;
  if (flags.s3Endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(flags.s3Endpoint)) {
    throw usageError(COMMAND, '--s3-endpoint must be an http(s) URL');
  }
  return createS3Destination({
    name: `s3://${bucket}/${prefix}`,
    ...(flags.s3Endpoint === undefined ? {} : { endpoint: flags.s3Endpoint }),
    region: flags.s3Region ?? nonEmpty(process.env.AWS_REGION) ?? 'us-east-1',
    bucket,
    prefix,
    forcePathStyle: flags.s3PathStyle ?? flags.s3Endpoint !== undefined,
    accessKeyId: credential(
      '--s3-access-key-id-file',
      flags.s3AccessKeyIdFile ?? nonEmpty(process.env.TRESOR_S3_ACCESS_KEY_ID_FILE),
      'AWS_ACCESS_KEY_ID',
    ),
    secretAccessKey: credential(
      '--s3-secret-access-key-file',
      flags.s3SecretAccessKeyFile ?? nonEmpty(process.env.TRESOR_S3_SECRET_ACCESS_KEY_FILE),
      'AWS_SECRET_ACCESS_KEY',
    ),
  });
}

/** A credential from its file, else its AWS_* variable; never from a flag's value. */
function credential(flag: string, file: string | undefined, env: string): string {
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw usageError(COMMAND, `cannot read ${flag}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (text === '') throw usageError(COMMAND, `${flag} is empty`);
    return text;
  }
  const value = nonEmpty(process.env[env]);
  if (value === undefined) throw usageError(COMMAND, `an s3:// destination needs ${env} or ${flag}`);
  return value;
}

/** keyd as --keyd-socket says, else as the server's config (and its TRESOR_* variables) says. */
function keydTarget(flags: RestoreFlags): Parameters<typeof createKeydClient>[0]['connect'] {
  if (flags.keydSocket !== undefined) return { kind: 'unix', path: resolve(flags.keydSocket) };
  let keyd: KeydConnection;
  try {
    keyd = resolveServerConfig(flags.config === undefined ? {} : { config: flags.config }).keyd;
  } catch (err) {
    throw usageError(COMMAND, (err as Error).message);
  }
  if (keyd.kind === 'unix') return { kind: 'unix', path: keyd.socketPath };
  try {
    return {
      kind: 'tls',
      host: keyd.host,
      port: keyd.port,
      cert: readFileSync(keyd.certFile),
      key: readFileSync(keyd.keyFile),
      ca: readFileSync(keyd.caFile),
      ...(keyd.servername ? { servername: keyd.servername } : {}),
    };
  } catch (err) {
    throw usageError(
      COMMAND,
      `cannot read keyd's TLS files: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
