/**
 * What `tresor restore` does (restore.ts declares it and loads this module only when it runs); the
 * work itself is src/server/restore-deployment.ts. This file turns flags into a destination and a
 * keyd client, and the result into output.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isBackupId } from '../backup/index.ts';
import { type KeydConnection, resolveServerConfig } from '../config/server-config.ts';
import { createKeydClient } from '../keyd/client.ts';
import { restoreDeployment } from '../server/restore-deployment.ts';
import { type BackupSourceFlags, backupSource } from './backup-source.ts';
import { out, usageError } from './io.ts';

const COMMAND = 'tresor restore';

export interface RestoreFlags extends BackupSourceFlags {
  backup?: string;
  to: string;
  config?: string;
  keydSocket?: string;
  json?: boolean;
}

export async function restoreCommand(flags: RestoreFlags): Promise<void> {
  if (flags.backup !== undefined && !isBackupId(flags.backup)) {
    throw usageError(COMMAND, '--backup is not a backup id (YYYYMMDDTHHMMSSZ-<8 hex>)');
  }
  const destination = backupSource(COMMAND, flags);
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
