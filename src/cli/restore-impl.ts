/**
 * What `tresor restore` does (restore.ts declares it and loads this module only when it runs); the
 * work itself is src/server/restore-deployment.ts. This file turns flags into a destination and a
 * keyd client, and the result into output.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { configuredDestinations, type Destination, isBackupId } from '../backup/index.ts';
import { databaseTarget, databaseUrlProblem } from '../config/database-url.ts';
import { type KeydConnection, resolveDatabaseConfig, resolveServerConfig } from '../config/server-config.ts';
import { createKeydClient } from '../keyd/client.ts';
import { restoreDeployment, restoreDeploymentToPg } from '../server/restore-deployment.ts';
import { type BackupSourceFlags, backupSource } from './backup-source.ts';
import { out, usageError } from './io.ts';

const COMMAND = 'tresor restore';

export interface RestoreFlags extends BackupSourceFlags {
  backup?: string;
  /** A data folder (SQLite); absent: the database of --database-url or the config. */
  to?: string;
  databaseUrl?: string;
  config?: string;
  keydSocket?: string;
  json?: boolean;
}

export async function restoreCommand(flags: RestoreFlags): Promise<void> {
  if (flags.backup !== undefined && !isBackupId(flags.backup)) {
    throw usageError(COMMAND, '--backup is not a backup id (YYYYMMDDTHHMMSSZ-<8 hex>)');
  }
  const database = flags.to === undefined ? targetDatabase(flags) : undefined;
  const destination = backupSource(COMMAND, flags);
  const keys = createKeydClient({ connect: keydTarget(flags), clientName: 'tresor-restore' });
  try {
    const chosen = {
      ...(flags.backup === undefined ? {} : { backupId: flags.backup }),
      segmentDestinations: restoredDestinations(flags),
    };
    const done =
      database === undefined
        ? await restoreDeployment({ destination, keys, target: resolve(flags.to ?? ''), ...chosen })
        : await restoreDeploymentToPg({
            destination,
            keys,
            databaseUrl: database.url,
            shown: database.shown,
            ...chosen,
          });
    out(
      flags.json
        ? done
        : [
            `restored backup ${done.backupId} (taken ${done.createdAt}) from ${done.destination} into ${done.target}`,
            `  ${done.files} files, ${done.plaintextBytes} bytes; ${done.tenants.length} tenants`,
            `  signature, every digest and the audit log (${done.audit.size} entries) against its checkpoint of size ${done.audit.checkpointSize}: ok`,
            `  ${done.auditSegments.checked} sealed audit segments named by the backup: opened and checked`,
            ...done.auditSegments.copied.map(
              (c) => `  ${c.segments.length} of them copied to destination ${c.destination}`,
            ),
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

/**
 * The database a restore without --to loads into: --database-url (refused with a password: secrets
 * never go on the command line), else database.url of the environment or config file.
 */
function targetDatabase(flags: RestoreFlags): { url: string; shown: string } {
  if (flags.databaseUrl !== undefined) {
    const problem = databaseUrlProblem(flags.databaseUrl);
    if (problem !== null) throw usageError(COMMAND, `--database-url ${problem}`);
    const u = new URL(flags.databaseUrl);
    if (u.password !== '' || [...u.searchParams.keys()].some((k) => k.toLowerCase() === 'password'))
      throw usageError(
        COMMAND,
        '--database-url holds a password: give it in TRESOR_DATABASE_URL or PGPASSWORD, never on the command line',
      );
    return databaseTarget(flags.databaseUrl);
  }
  let database: ReturnType<typeof resolveDatabaseConfig>;
  try {
    database = resolveDatabaseConfig(flags.config === undefined ? {} : { config: flags.config });
  } catch (err) {
    throw usageError(COMMAND, (err as Error).message);
  }
  if (database.kind !== 'postgres')
    throw usageError(
      COMMAND,
      'give --to (a data folder) or a database (--database-url, TRESOR_DATABASE_URL)',
    );
  return databaseTarget(database.url);
}

/**
 * The restored deployment's backup destinations, where the backup's audit segments are copied: the
 * ones the config file or TRESOR_BACKUP_DESTINATIONS names (--config / TRESOR_CONFIG). None when no
 * config is given or it names none (the default folders lie inside the data folder being restored).
 */
function restoredDestinations(flags: RestoreFlags): Destination[] {
  const env = process.env;
  if (flags.config === undefined && !env.TRESOR_CONFIG && !env.TRESOR_BACKUP_DESTINATIONS) return [];
  try {
    const { backup } = resolveServerConfig(flags.config === undefined ? {} : { config: flags.config });
    return backup.defaultDestinations
      ? []
      : configuredDestinations(backup.destinations).map((d) => d.destination);
  } catch (err) {
    throw usageError(COMMAND, (err as Error).message);
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
