/**
 * The keyd process: opens its store, builds the root-key provider, unseals what can be unsealed
 * unattended (dev key file; passphrase or PIN from a *_FILE), and serves on its private channel.
 * A Shamir keyd starts sealed and waits for `tresor keyd unseal`. SIGTERM/SIGINT close it cleanly.
 * keyd takes its own backups on its schedule (keyd.backup; docs/backup.md, "keyd's own backups").
 */
import { chmodSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import pino from 'pino';
import { configuredDestinations } from '../objects/configured-destinations.ts';
import { checkRootKeyChoice, defaultKeydBackupConfig, type KeydConfig, readSecretFile } from './config.ts';
import { KeydError } from './errors.ts';
import { openPgKeyStore } from './pg-store.ts';
import { DEV_WARNING } from './root/dev-file.ts';
import { createRootKeyProvider, type RootProviderConfig, type RootProviderKind } from './root/index.ts';
import { createKeydServer, type KeydAddress, type KeydListen } from './server.ts';
import { createKeyService, SYSTEM_CALLER } from './service.ts';

export interface KeydHandle {
  address: KeydAddress;
  /** Resolves once keyd has stopped (signal or close()). */
  closed: Promise<void>;
  close(): Promise<void>;
}

function providerConfig(config: KeydConfig, kind: RootProviderKind): RootProviderConfig {
  if (kind === 'pkcs11') {
    const p = config.pkcs11;
    if (!p) throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'pkcs11 settings missing');
    return { kind: 'pkcs11', library: p.library, tokenLabel: p.tokenLabel };
  }
  return { kind, dir: config.dir };
}

function listenConfig(config: KeydConfig): KeydListen {
  const l = config.listen;
  if (l.kind === 'unix') return l;
  return {
    kind: 'tls',
    host: l.host,
    port: l.port,
    cert: readFileSync(l.certFile),
    key: readFileSync(l.keyFile),
    ca: readFileSync(l.caFile),
    allowlist: l.allowlist,
  };
}

/** The secret keyd may use to unseal itself at start, if the operator configured one. */
function unattendedSecret(config: KeydConfig, kind: RootProviderKind): string | undefined {
  switch (kind) {
    case 'dev-file':
      return '';
    case 'passphrase':
      return config.passphraseFile ? readSecretFile(config.passphraseFile) : undefined;
    case 'pkcs11':
      return config.pkcs11?.pinFile ? readSecretFile(config.pkcs11.pinFile) : undefined;
    case 'shamir':
      return undefined;
  }
}

export async function runKeyd(
  config: KeydConfig,
  opts: { handleSignals?: boolean } = {},
): Promise<KeydHandle> {
  // Checked here, not only by the CLI: runKeyd is also called with a config object.
  const kind = checkRootKeyChoice(config);
  // Logs go to process.stderr, not a synchronous fd destination: if the reader of a piped stderr
  // dies, a synchronous writer retries EPIPE for ever and keyd could never exit. Losing log lines
  // then is acceptable — keyd's record of what it did is its ops log, not stderr.
  process.stderr.on('error', () => {});
  const logger = pino({ name: 'keyd', base: { pid: process.pid } }, process.stderr);
  mkdirSync(config.dir, { recursive: true, mode: 0o700 });
  if ((statSync(config.dir).mode & 0o077) !== 0) chmodSync(config.dir, 0o700);
  if (kind === 'dev-file') {
    process.stderr.write(`${DEV_WARNING}\n`);
    logger.warn({ provider: 'dev-file' }, DEV_WARNING);
  }

  // On PostgreSQL keyd's store is the database's to back up (PostgreSQL's tools): keyd's own
  // backups copy a SQLite store, so they are off.
  const onPg = config.databaseUrl !== undefined;
  const backup = onPg
    ? { intervalMinutes: 0, destinations: [], defaultDestinations: false }
    : (config.backup ?? defaultKeydBackupConfig(config.dir));
  if (onPg) {
    logger.warn(
      {},
      "keyd's store is in PostgreSQL (keyd.database.url): keyd takes no backups of its own; back the keyd database up with PostgreSQL's tools",
    );
  }
  if (backup.defaultDestinations) {
    logger.warn(
      { destinations: backup.destinations.map((d) => d.name) },
      "keyd backs up to two folders under its own folder (<keyd dir>/backups/a and /b), on keyd's own disk: " +
        'configure keyd.backup.destinations on other disks or sites (docs/backup.md)',
    );
  }
  if (kind === 'dev-file') {
    logger.warn(
      {},
      'keyd backups never hold the dev-file root key: keep dev-root.key elsewhere to restore one',
    );
  }

  const store = onPg ? await openPgKeyStore(config.databaseUrl as string) : undefined;
  const provider = createRootKeyProvider(providerConfig(config, kind));
  const service = createKeyService({
    dir: config.dir,
    ...(store === undefined ? {} : { store, ownsStore: true }),
    provider,
    config: {
      tenantKeyCryptoperiodDays: config.tenantKeyCryptoperiodDays,
      destroyGraceSeconds: config.destroyGraceSeconds,
      maintenanceIntervalSeconds: config.maintenanceIntervalSeconds,
    },
    backup: {
      destinations: configuredDestinations(backup.destinations),
      intervalMinutes: backup.intervalMinutes,
      onScheduled: (result) => {
        if ('error' in result) logger.error({ code: result.error }, 'scheduled keyd backup failed');
        else
          logger.info({ backupId: result.backupId, destinations: result.destinations }, 'keyd backup taken');
      },
    },
  });

  const secret = unattendedSecret(config, kind);
  if (secret !== undefined) {
    const status = await service.call('unseal', { secret }, SYSTEM_CALLER);
    logger.info({ provider: config.provider, sealed: status.sealed }, 'unsealed at start');
  } else {
    logger.warn(
      { provider: config.provider },
      'keyd is SEALED: submit unseal secrets with `tresor keyd unseal`',
    );
  }

  const server = createKeydServer({ service, listen: listenConfig(config), logger });
  let address: KeydAddress;
  try {
    address = await server.listen();
  } catch (err) {
    await service.close();
    throw err;
  }
  logger.info({ address }, 'keyd listening');

  let resolveClosed!: () => void;
  const closed = new Promise<void>((res) => {
    resolveClosed = res;
  });
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      logger.info({}, 'keyd stopping');
      await server.close();
      await service.close();
      logger.info({}, 'keyd stopped');
      resolveClosed();
    })();
    return closing;
  };
  if (opts.handleSignals !== false) {
    process.once('SIGTERM', () => void close());
    process.once('SIGINT', () => void close());
  }
  return { address, closed, close };
}
