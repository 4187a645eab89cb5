/**
 * keyd's configuration: flags > TRESOR_KEYD_* environment > config file (JSON, "keyd" section) >
 * defaults. Secrets (passphrase, PIN) are read only from files named by *_FILE variables or from
 * standard input, never from the command line. Validated at start: a bad config fails fast.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { BackupDestinationConfig, BackupRetentionConfig } from '../objects/configured-destinations.ts';
import { parseDestinationList } from '../objects/destination-list.ts';
import { BackupError } from '../objects/errors.ts';
import { KeydError } from './errors.ts';
import type { RootProviderKind } from './root/types.ts';

export interface AllowlistEntry {
  fingerprint256: string;
  name: string;
  role: 'admin' | 'server';
}

export interface KeydConfig {
  dir: string;
  /** No default: an operator chooses (checkRootKeyChoice). */
  provider: RootProviderKind | undefined;
  /** The explicit consent the dev-file provider needs: it leaves the root key readable on disk. */
  insecureDevKeyFile: boolean;
  listen:
    | { kind: 'unix'; path: string }
    | {
        kind: 'tls';
        host: string;
        port: number;
        certFile: string;
        keyFile: string;
        caFile: string;
        allowlist: AllowlistEntry[];
      };
  /** File holding the passphrase (passphrase provider) for unattended unseal; otherwise `tresor keyd unseal`. */
  passphraseFile?: string;
  pkcs11?: { library: string; tokenLabel: string; pinFile?: string };
  tenantKeyCryptoperiodDays: number;
  destroyGraceSeconds: number;
  maintenanceIntervalSeconds: number;
  /** Absent (a config built in code): the defaults, defaultKeydBackupConfig(dir). */
  backup?: KeydBackupConfig;
  /**
   * `keyd.database.url` (TRESOR_KEYD_DATABASE_URL): keyd's store in its own PostgreSQL database,
   * which several keyd instances may share; absent, the SQLite store in keyd's folder. May hold a
   * password: never shown.
   */
  databaseUrl?: string;
}

/** keyd's own backups (docs/backup.md, "keyd's own backups"): apart from the data's, shorter kept. */
export interface KeydBackupConfig {
  /** Minutes between scheduled backups (fractions allowed); 0: only on demand. */
  intervalMinutes: number;
  destinations: BackupDestinationConfig[];
  /** True when none was configured: `<dir>/backups/a` and `/b`, on keyd's own disk. */
  defaultDestinations: boolean;
}

/** Shorter than the data's (2 and 35 days): a destroyed tenant key leaves keyd's backups within a week. */
export const KEYD_BACKUP_RETENTION: BackupRetentionConfig = { keepAllDays: 1, keepDailyDays: 7 };
export const KEYD_BACKUP_INTERVAL_MINUTES = 360;

type Source = Record<string, unknown>;

const PROVIDERS: readonly RootProviderKind[] = ['dev-file', 'passphrase', 'shamir', 'pkcs11'];

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function yes(v: unknown): boolean {
  return v === true || v === '1' || v === 'true';
}

function num(v: unknown, name: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n) || n < 0)
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `${name} must be a non-negative number`);
  return n;
}

export function defaultKeydDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.TRESOR_DATA_DIR ?? '.tresor-data', 'keyd');
}

/** Resolves keyd's config from flags, environment and an optional JSON config file. */
export function resolveKeydConfig(flags: Source, env: NodeJS.ProcessEnv = process.env): KeydConfig {
  let file: Source = {};
  let whole: Source = {};
  let fileBase = process.cwd();
  const configPath = str(flags.config) ?? str(env.TRESOR_CONFIG);
  if (configPath) {
    try {
      const parsed = JSON.parse(readFileSync(configPath, 'utf8')) as Source;
      whole = parsed;
      file = (parsed.keyd as Source | undefined) ?? {};
      fileBase = dirname(resolve(configPath));
    } catch {
      throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `cannot read config file ${configPath}`);
    }
  }
  const pick = (flag: string, envName: string): unknown => flags[flag] ?? env[envName] ?? file[flag];

  const database = file.database as Source | undefined;
  const databaseUrl = str(env.TRESOR_KEYD_DATABASE_URL) ?? str(database?.url);
  if (databaseUrl !== undefined) {
    const dataUrl = str(env.TRESOR_DATABASE_URL) ?? str((whole.database as Source | undefined)?.url);
    checkKeydDatabaseUrl(databaseUrl, dataUrl);
  }
  const dir = resolve(str(pick('dir', 'TRESOR_KEYD_DIR')) ?? defaultKeydDir(env));
  const provider = str(pick('provider', 'TRESOR_KEYD_PROVIDER')) as RootProviderKind | undefined;
  if (provider !== undefined && !PROVIDERS.includes(provider)) {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `provider must be one of ${PROVIDERS.join(', ')}`);
  }

  const listenAddr = str(pick('listen', 'TRESOR_KEYD_LISTEN'));
  let listen: KeydConfig['listen'];
  if (!listenAddr) {
    const socket = str(pick('socket', 'TRESOR_KEYD_SOCKET')) ?? join(dir, 'keyd.sock');
    listen = { kind: 'unix', path: isAbsolute(socket) ? socket : resolve(socket) };
  } else {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listenAddr);
    if (!m?.[1] || !m[2]) throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'listen must be host:port');
    const certFile = str(pick('tlsCert', 'TRESOR_KEYD_TLS_CERT'));
    const keyFile = str(pick('tlsKey', 'TRESOR_KEYD_TLS_KEY'));
    const caFile = str(pick('tlsCa', 'TRESOR_KEYD_TLS_CA'));
    const allowlistFile = str(pick('allowlist', 'TRESOR_KEYD_ALLOWLIST'));
    if (!certFile || !keyFile || !caFile || !allowlistFile) {
      throw new KeydError(
        'TRESOR_ERR_CONFIG_INVALID',
        'a TCP listener needs mutual TLS: tlsCert, tlsKey, tlsCa and an allowlist of client certificates',
      );
    }
    let allowlist: AllowlistEntry[];
    try {
      allowlist = JSON.parse(readFileSync(allowlistFile, 'utf8')) as AllowlistEntry[];
      if (!Array.isArray(allowlist)) throw new Error('not an array');
    } catch {
      throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `cannot read the client allowlist ${allowlistFile}`);
    }
    listen = {
      kind: 'tls',
      host: m[1].replace(/^\[|\]$/g, ''),
      port: Number(m[2]),
      certFile,
      keyFile,
      caFile,
      allowlist,
    };
  }

  const pkcs11Token = str(pick('pkcs11Token', 'TRESOR_KEYD_PKCS11_TOKEN'));
  const config: KeydConfig = {
    dir,
    provider,
    insecureDevKeyFile: yes(pick('insecureDevKeyFile', 'TRESOR_KEYD_INSECURE_DEV_KEY_FILE')),
    listen,
    passphraseFile: str(pick('passphraseFile', 'TRESOR_KEYD_PASSPHRASE_FILE')),
    pkcs11:
      provider === 'pkcs11'
        ? {
            library:
              str(pick('pkcs11Library', 'TRESOR_KEYD_PKCS11_LIBRARY')) ?? '/usr/lib/softhsm/libsofthsm2.so',
            tokenLabel: pkcs11Token ?? 'tresor',
            pinFile: str(pick('pkcs11PinFile', 'TRESOR_KEYD_PKCS11_PIN_FILE')),
          }
        : undefined,
    tenantKeyCryptoperiodDays:
      num(pick('tenantKeyCryptoperiodDays', 'TRESOR_KEYD_TENANT_KEY_DAYS'), 'tenantKeyCryptoperiodDays') ??
      365,
    destroyGraceSeconds:
      num(pick('destroyGraceSeconds', 'TRESOR_KEYD_DESTROY_GRACE_SECONDS'), 'destroyGraceSeconds') ??
      7 * 86400,
    maintenanceIntervalSeconds:
      num(
        pick('maintenanceIntervalSeconds', 'TRESOR_KEYD_MAINTENANCE_SECONDS'),
        'maintenanceIntervalSeconds',
      ) ?? 3600,
    backup: backupConfig(dir, flags, env, file, fileBase),
    ...(databaseUrl === undefined ? {} : { databaseUrl }),
  };
  if (config.tenantKeyCryptoperiodDays < 1) {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'tenantKeyCryptoperiodDays must be at least 1');
  }
  return config;
}

/** host:port/database of a PostgreSQL URL, or undefined when it is not one. */
function databaseIdentity(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') return undefined;
  const name = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (u.hostname === '' || name === '' || name.includes('/')) return undefined;
  return `${u.hostname.toLowerCase()}:${u.port || '5432'}/${name}`;
}

/**
 * keyd.database.url must name one PostgreSQL database, and not the data's (`database.url`, when
 * keyd's environment or config file names it): keys and the data they protect never share a
 * database. Messages never repeat the URL (it may hold a password).
 */
function checkKeydDatabaseUrl(url: string, dataUrl: string | undefined): void {
  const identity = databaseIdentity(url);
  if (identity === undefined) {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      'keyd.database.url (TRESOR_KEYD_DATABASE_URL) must be a postgres:// URL naming a host and one database',
    );
  }
  if (dataUrl !== undefined && databaseIdentity(dataUrl) === identity) {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      "keyd.database.url names the same database as database.url: keyd's keys need a database (and role) of their own, apart from the data's",
    );
  }
}

/** No destinations configured: two folders under keyd's own folder, every 6 hours (a warning at start). */
export function defaultKeydBackupConfig(dir: string): KeydBackupConfig {
  const retention = () => ({ ...KEYD_BACKUP_RETENTION });
  return {
    intervalMinutes: KEYD_BACKUP_INTERVAL_MINUTES,
    destinations: [
      { name: 'a', kind: 'folder', path: join(dir, 'backups', 'a'), retention: retention() },
      { name: 'b', kind: 'folder', path: join(dir, 'backups', 'b'), retention: retention() },
    ],
    defaultDestinations: true,
  };
}

/** keyd.backup: `intervalMinutes` and `destinations` (TRESOR_KEYD_BACKUP_* with the list as JSON). */
function backupConfig(
  dir: string,
  flags: Source,
  env: NodeJS.ProcessEnv,
  file: Source,
  fileBase: string,
): KeydBackupConfig {
  const section = (file.backup as Source | undefined) ?? {};
  const interval =
    num(
      flags.backupIntervalMinutes ?? env.TRESOR_KEYD_BACKUP_INTERVAL_MINUTES ?? section.intervalMinutes,
      'backup.intervalMinutes',
    ) ?? KEYD_BACKUP_INTERVAL_MINUTES;
  if (interval > 7 * 24 * 60) {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'backup.intervalMinutes must be at most a week (10080)');
  }
  let raw: unknown = section.destinations;
  let base = fileBase;
  const fromEnv = env.TRESOR_KEYD_BACKUP_DESTINATIONS;
  if (fromEnv !== undefined && fromEnv !== '') {
    base = process.cwd();
    try {
      raw = JSON.parse(fromEnv);
    } catch {
      throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'TRESOR_KEYD_BACKUP_DESTINATIONS must be a JSON list');
    }
  }
  if (raw === undefined) return { ...defaultKeydBackupConfig(dir), intervalMinutes: interval };
  try {
    return {
      intervalMinutes: interval,
      destinations: parseDestinationList(raw, base, KEYD_BACKUP_RETENTION),
      defaultDestinations: false,
    };
  } catch (err) {
    if (err instanceof BackupError) throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `keyd ${err.message}`);
    throw err;
  }
}

/** The production providers, named where an operator must choose one. */
export const PRODUCTION_PROVIDERS = 'passphrase | shamir | pkcs11';

export const NO_PROVIDER_MESSAGE =
  `no root-key provider chosen: pass --provider ${PRODUCTION_PROVIDERS} (or TRESOR_KEYD_PROVIDER); ` +
  'dev-file is for development only and needs --insecure-dev-key-file';

/**
 * There is no default root-key provider: a forgotten setting must not leave the root key in a
 * plain file. The dev file needs its explicit flag, and never serves over the network, where keyd
 * runs on its own host and the file would be the only thing between an intruder and every key.
 */
export function checkRootKeyChoice(config: KeydConfig): RootProviderKind {
  const { provider } = config;
  if (provider === undefined) throw new KeydError('TRESOR_ERR_CONFIG_INVALID', NO_PROVIDER_MESSAGE);
  if (provider !== 'dev-file') return provider;
  if (!config.insecureDevKeyFile) {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      'the dev-file provider keeps the root key in a plain file: it needs --insecure-dev-key-file ' +
        `(or TRESOR_KEYD_INSECURE_DEV_KEY_FILE=1); in production use --provider ${PRODUCTION_PROVIDERS}`,
    );
  }
  if (config.listen.kind !== 'unix') {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      `refusing the dev-file provider on a TCP listener: use --provider ${PRODUCTION_PROVIDERS}`,
    );
  }
  return provider;
}

/** Reads a secret from a file, trimming one trailing newline. */
export function readSecretFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `cannot read secret file ${path}`);
  }
}

/** The config with secrets' locations only (never their content), for `tresor keyd config show`. */
export function redactedKeydConfig(config: KeydConfig): KeydConfig {
  return JSON.parse(JSON.stringify(config)) as KeydConfig;
}
