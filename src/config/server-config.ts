/**
 * The server's configuration: flags > TRESOR_* environment > JSON config file (`server` section,
 * plus a top-level `dataDir`) > defaults. The settings, their variables, flags, defaults and
 * secrets are declared once in server-schema.ts; this file adds the rules that tie settings
 * together and shapes the result into `ServerConfig`. Everything is validated at start and every
 * problem is reported at once, each naming where the bad value came from, so a misconfigured
 * server never half-starts.
 *
 * Secrets (today: the passphrase of an encrypted TLS private key) come only from the environment
 * or from a file named by a `*_FILE` variable or config entry. A secret keeps its schema path in
 * `ServerConfig` (`tls.keyPassphrase`), which is how `redactedServerConfig` finds it.
 */
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { TresorError } from '../errors.ts';
import type { BackupDestinationConfig, BackupRetentionConfig } from '../objects/configured-destinations.ts';
import { databaseUrlProblem, redactDatabaseUrl } from './database-url.ts';
import { CONFIG_FILE_SCHEMA, SERVER_SECTION } from './server-schema.ts';
import { settingsOf } from './settings.ts';
import { type Gathered, gatherSettings, type Problem } from './sources.ts';

export type TlsSource =
  | {
      kind: 'files';
      certFile: string;
      keyFile: string;
      /** Passphrase of an encrypted private key (secret). */
      keyPassphrase?: string;
    }
  /** Certificates of the development CA in <dataDir>/tls, made on first start (dev-tls.ts). */
  | { kind: 'dev'; dir: string };

export type KeydConnection =
  | {
      kind: 'unix';
      socketPath: string;
      /** Further keyd instances' sockets (keyd.sockets after the first): the client fails over to them. */
      moreSocketPaths?: string[];
    }
  | {
      kind: 'tls';
      host: string;
      port: number;
      /** Further keyd instances (keyd.addresses after the first), with the same certificates. */
      moreAddresses?: { host: string; port: number }[];
      certFile: string;
      keyFile: string;
      caFile: string;
      servername?: string;
    };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface ServerTimeouts {
  /** Time to receive the complete request headers (slowloris). */
  headersMs: number;
  /** Time to receive the complete request, body included. */
  requestMs: number;
  /** How long an idle keep-alive connection is kept. */
  keepAliveMs: number;
  /** Socket inactivity after which a connection is closed. */
  idleMs: number;
  /** Time to complete the TLS handshake. */
  handshakeMs: number;
  /** How long shutdown waits for in-flight requests before closing their connections. */
  shutdownGraceMs: number;
}

/**
 * Where the data lives: SQLite files in the data folder, or a PostgreSQL database (`database.url`,
 * secret-bearing: see database-url.ts).
 */
export type DatabaseConfig = { kind: 'sqlite' } | { kind: 'postgres'; url: string };

export interface ServerConfig {
  dataDir: string;
  database: DatabaseConfig;
  host: string;
  port: number;
  /** Optional plain-HTTP port that only redirects to HTTPS. */
  redirectPort?: number;
  /** The public https:// origin (behind a load balancer); redirects use it when set. */
  publicUrl?: string;
  /** The plain-HTTP metrics listener (monitor/metrics-listener.ts); off when absent. */
  metrics?: { host: string; port: number };
  tls: TlsSource;
  /** Largest request body in bytes. */
  bodyLimit: number;
  rateLimit: { windowMs: number; perAddress: number; perKey: number };
  timeouts: ServerTimeouts;
  /** Connection caps: in all, and per client address (0: none; trusted proxies are exempt). */
  connections: { max: number; perAddress: number };
  /** The cache of unwrapped keys (keyd/key-cache.ts): size bound and time bound. */
  keyCache: { maxEntries: number; ttlSeconds: number };
  /** Load balancer addresses/CIDRs whose X-Forwarded-For is believed; empty: none. */
  trustProxy: string[];
  keyd: KeydConnection;
  /** Grace days of a close: after a contract's end before closing, and after a close before the key is destroyed. */
  closeGraceDays: number;
  /** How long a successful API key authentication is remembered (api-keys.ts; the cross-process bound on PostgreSQL). */
  principalCacheMs: number;
  /** PostgreSQL, several processes: the sequencer's fallback sweeps and the closed-tenant key check (ms). */
  clusterSweepMs: number;
  logLevel: LogLevel;
  audit: AuditConfig;
  access: AccessConfig;
  console: ConsoleConfig;
  backup: BackupConfig;
  probe: ProbeConfig;
  alerts: AlertsConfig;
}

/** Alerts (src/alerts, docs/alerts.md): thresholds of the detectors and the delivery channels. */
export interface AlertsConfig {
  windowMinutes: number;
  bruteForceAccountFailures: number;
  bruteForceAddressFailures: number;
  noGrantRefusals: number;
  staffRecordReads: number;
  staffTenants: number;
  exports: number;
  checkIntervalSeconds: number;
  backupOverdueMinutes: number;
  certificateExpiringDays: number;
  retryAttempts: number;
  retryBaseMs: number;
  /** `secret` is a secret (redacted by its schema path). */
  webhook?: { url: string; secret: string; ca?: string };
  /** `password` is a secret. */
  mail?: {
    host: string;
    port: number;
    tls: 'starttls' | 'implicit' | 'none';
    from: string;
    to: string[];
    user?: string;
    password?: string;
    ca?: string;
  };
}

export type { BackupDestinationConfig, BackupRetentionConfig };

/** Backups (src/backup, docs/backup.md). */
export interface BackupConfig {
  /** Minutes between scheduled backups; 0: only on demand. */
  intervalMinutes: number;
  /** Minutes between scheduled re-verifications of the backups held; 0: none. */
  verifyIntervalMinutes: number;
  destinations: BackupDestinationConfig[];
  /** True when none was configured: the two default folders under the data folder, on its disk. */
  defaultDestinations: boolean;
  /** Further tries of a failed destination within a run, the first after retryBaseMs, doubling. */
  retryAttempts: number;
  retryBaseMs: number;
  /** The snapshot's and the trial restore's scratch folder (default `<dataDir>/backup-scratch`). */
  scratchDir: string;
}

/** The server's own availability probe (src/probe, docs/availability.md); off without a key file. */
export interface ProbeConfig {
  apiKeyFile?: string;
  intervalMs: number;
  /** The origin probed; undefined: publicUrl, else https://localhost:<port>. */
  url?: string;
  caFile?: string;
}

/** Staff access grants (src/access). */
export interface AccessConfig {
  /** A grant's length when the request names none (minutes; default 60). */
  defaultGrantMinutes: number;
  /** The hard maximum; a longer request is refused, not shortened (minutes; default 480). */
  maxGrantMinutes: number;
}

/** The web console's sign-in: WebAuthn relying party, session timeouts, login throttle. */
export interface ConsoleConfig {
  /** WebAuthn RP ID (W3C WebAuthn §5.1.4.1): the console's host name (never an IP address). */
  rpId: string;
  /** Origins the console is served from, exactly as browsers write them (`https://host[:port]`). */
  origins: string[];
  /** Idle and absolute session timeouts per side (NIST SP 800-63B §7.2). */
  sessions: {
    operatorIdleMs: number;
    operatorAbsoluteMs: number;
    customerIdleMs: number;
    customerAbsoluteMs: number;
  };
  /** Login throttle (login-throttle.ts): delays after `delayAfter` failures, lockout after `lockoutThreshold`. */
  login: {
    delayAfter: number;
    baseDelayMs: number;
    lockoutThreshold: number;
    lockoutMs: number;
    addressDelayAfter: number;
  };
}

export interface AuditConfig {
  /** The log's origin (C2SP tlog-checkpoint), fixed at the first start; generated when unset (src/audit/log-identity.ts). */
  origin?: string;
  /** Where the latest checkpoints are kept outside the store (rollback detection). */
  witnessDir: string;
  /** Period of checkpoint signing while entries arrive (≤ 1 s: the issue's "at least once a second"). */
  checkpointIntervalMs: number;
  /** Longest time an entry may stay unsigned (keyd down) before data routes answer 503. */
  signBoundMs: number;
  /** Minutes between re-verifications of the live log (0: off). */
  verifyIntervalMinutes: number;
  /** Free bytes under which the data folder's filesystem is reported low (warning). */
  diskWarnBytes: number;
  /** Space kept in a reserve file, released when the disk fills so refusals can still be recorded. */
  diskReserveBytes: number;
  /** JSON file of audit sinks (see src/audit/sinks/config.ts); none when unset. */
  sinksFile?: string;
  /** Archiving on: entries kept out of sealed segments (src/audit/archiver.ts); off when unset. */
  archiveKeepEntries?: number;
  /** Full tiles of 256 entries per sealed segment. */
  archiveSegmentTiles: number;
  /** Minutes between archiving passes. */
  archiveIntervalMinutes: number;
  /** After each archiving pass, prune the live log behind the segments (src/audit/log-prune.ts). */
  archivePrune: boolean;
}

const SERVER_SETTINGS = settingsOf(SERVER_SECTION, '/server');

/** The schema defaults of the settings under `pointer`, keyed by their last name. */
function defaultsUnder(pointer: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of SERVER_SETTINGS)
    if (s.pointer.startsWith(`${pointer}/`))
      out[s.pointer.slice(pointer.length + 1)] = s.schema.default as number;
  return out;
}

export const DEFAULT_BODY_LIMIT = SERVER_SETTINGS.find((s) => s.pointer === '/server/bodyLimit')?.schema
  .default as number;

export const DEFAULT_TIMEOUTS = defaultsUnder('/server/timeouts') as unknown as ServerTimeouts;

/** Per minute: see the rate-limit section of the config schema (docs/configuration.md) for the figures' reasons. */
export const DEFAULT_RATE_LIMIT = defaultsUnder('/server/rateLimit') as unknown as ServerConfig['rateLimit'];

export class ConfigError extends TresorError<'TRESOR_ERR_CONFIG_INVALID'> {
  readonly problems: readonly string[];

  constructor(problems: readonly string[], what = 'server configuration') {
    super('TRESOR_ERR_CONFIG_INVALID', `invalid ${what}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

type Source = Record<string, unknown>;

/**
 * Resolves the configuration. `flags` are the parsed command-line options (camelCase);
 * `flags.config` or TRESOR_CONFIG names the JSON config file.
 */
export function resolveServerConfig(flags: Source = {}, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const g = gatherSettings(CONFIG_FILE_SCHEMA, flags, env);
  // The keyd section is keyd's to read; `tresor config check` reports its problems.
  const problems = g.problems.filter((p) => !isKeydProblem(p)).map((p) => p.message);
  const get = <T>(pointer: string): T | undefined =>
    (g.values.get(`/server${pointer}`) ?? g.defaults.get(`/server${pointer}`)) as T | undefined;
  const num = (pointer: string): number => get<number>(pointer) as number;
  const from = (pointer: string): string =>
    g.from.get(`/server${pointer}`) ?? `server${pointer.replaceAll('/', '.')}`;

  const dataDir = (g.values.get('/dataDir') as string | undefined) ?? resolve('.tresor-data');
  const database = databaseConfig(g.values.get('/database/url') as string | undefined, g, problems);

  const host = get<string>('/host') as string;
  if (!isIP(host) && !/^[A-Za-z0-9.-]{1,253}$/.test(host))
    problems.push(`${from('/host')} is not an address or name`);
  const port = num('/port');
  const redirectPort = get<number>('/redirectPort');
  if (redirectPort !== undefined && redirectPort !== 0 && redirectPort === port) {
    problems.push('redirectPort must differ from port');
  }

  const metricsPort = get<number>('/metrics/port');
  const metricsHost = get<string>('/metrics/host') ?? '127.0.0.1';
  if (!isIP(metricsHost) && !/^[A-Za-z0-9.-]{1,253}$/.test(metricsHost))
    problems.push(`${from('/metrics/host')} is not an address or name`);
  if (
    metricsPort !== undefined &&
    metricsPort !== 0 &&
    (metricsPort === port || metricsPort === redirectPort)
  )
    problems.push('metrics.port must differ from port and redirectPort');

  const publicUrlText = get<string>('/publicUrl');
  let publicUrl: string | undefined;
  if (publicUrlText !== undefined) {
    try {
      const u = new URL(publicUrlText);
      if (u.protocol !== 'https:' || u.pathname !== '/' || u.search || u.hash || u.username)
        throw new Error();
      publicUrl = u.origin;
    } catch {
      problems.push(
        `${from('/publicUrl')} must be an https:// origin without path, e.g. https://vault.example.com`,
      );
    }
  }

  const certFile = get<string>('/tls/certFile');
  const keyFile = get<string>('/tls/keyFile');
  const keyPassphrase = get<string>('/tls/keyPassphrase');
  let tls: TlsSource;
  if (certFile || keyFile) {
    if (!certFile || !keyFile)
      problems.push('TLS needs both a certificate file (tlsCert) and a key file (tlsKey)');
    tls = { kind: 'files', certFile: certFile ?? '', keyFile: keyFile ?? '' };
    if (keyPassphrase !== undefined) tls.keyPassphrase = keyPassphrase;
  } else {
    if (keyPassphrase !== undefined) problems.push('a TLS key passphrase is set but no TLS key file');
    tls = { kind: 'dev', dir: resolve(dataDir, 'tls') };
  }

  const bodyLimit = num('/bodyLimit');
  const rateLimit = {
    windowMs: num('/rateLimit/windowMs'),
    perAddress: num('/rateLimit/perAddress'),
    perKey: num('/rateLimit/perKey'),
  };
  const timeouts: ServerTimeouts = {
    headersMs: num('/timeouts/headersMs'),
    requestMs: num('/timeouts/requestMs'),
    keepAliveMs: num('/timeouts/keepAliveMs'),
    idleMs: num('/timeouts/idleMs'),
    handshakeMs: num('/timeouts/handshakeMs'),
    shutdownGraceMs: num('/timeouts/shutdownGraceMs'),
  };
  const connections = { max: num('/connections/max'), perAddress: num('/connections/perAddress') };
  const keyCache = { maxEntries: num('/keyCache/maxEntries'), ttlSeconds: num('/keyCache/ttlSeconds') };
  if (timeouts.headersMs > timeouts.requestMs)
    problems.push('timeouts.headersMs must not exceed timeouts.requestMs');

  const trustProxy = get<string[]>('/trustProxy') ?? [];
  for (const entry of trustProxy) {
    const [address, bits, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const maxBits = family === 6 ? 128 : 32;
    if (
      family === 0 ||
      extra !== undefined ||
      (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= maxBits))
    ) {
      problems.push(`trustProxy entry ${JSON.stringify(entry)} is not an IP address or CIDR block`);
    }
  }

  const keydAddresses = get<string[]>('/keyd/addresses');
  const keydSockets = get<string[]>('/keyd/sockets');
  if (keydAddresses !== undefined && get<string>('/keyd/address') !== undefined)
    problems.push(`${from('/keyd/addresses')} and ${from('/keyd/address')}: set one of them`);
  if (keydSockets !== undefined && get<string>('/keyd/socket') !== undefined)
    problems.push(`${from('/keyd/sockets')} and ${from('/keyd/socket')}: set one of them`);
  const addressList = keydAddresses ?? [get<string>('/keyd/address')].filter((a) => a !== undefined);
  let keyd: KeydConnection;
  if (addressList.length > 0) {
    const addressFrom = from(keydAddresses === undefined ? '/keyd/address' : '/keyd/addresses');
    const parsed = addressList.map((address) => {
      const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(address);
      if (!m?.[1] || !m[2] || Number(m[2]) > 65535) problems.push(`${addressFrom} must be host:port`);
      return { host: (m?.[1] ?? '').replace(/^\[|\]$/g, ''), port: Number(m?.[2] ?? 0) };
    });
    const clientCert = get<string>('/keyd/clientCert');
    const clientKey = get<string>('/keyd/clientKey');
    const ca = get<string>('/keyd/ca');
    if (!clientCert || !clientKey || !ca) {
      problems.push(
        'keyd over TCP needs mutual TLS: TRESOR_KEYD_CLIENT_CERT, TRESOR_KEYD_CLIENT_KEY and TRESOR_KEYD_CA',
      );
    }
    const [first, ...more] = parsed;
    keyd = {
      kind: 'tls',
      host: first?.host ?? '',
      port: first?.port ?? 0,
      certFile: clientCert ?? '',
      keyFile: clientKey ?? '',
      caFile: ca ?? '',
    };
    if (more.length > 0) keyd.moreAddresses = more;
    const servername = get<string>('/keyd/servername');
    if (servername) keyd.servername = servername;
  } else {
    const [first, ...more] = (keydSockets ?? []).map((socket) => resolve(socket));
    keyd = {
      kind: 'unix',
      socketPath: first ?? get<string>('/keyd/socket') ?? resolve(dataDir, 'keyd', 'keyd.sock'),
    };
    if (more.length > 0) keyd.moreSocketPaths = more;
  }

  const closeGraceDays = num('/closeGraceDays');
  const principalCacheMs = num('/principalCacheMs');
  const clusterSweepMs = num('/clusterSweepMs');
  const logLevel = get<LogLevel>('/logLevel') as LogLevel;

  const origin = get<string>('/audit/origin');
  if (origin !== undefined && !/^[\x21-\x2a\x2c-\x7e]{1,200}$/.test(origin))
    problems.push('audit.origin must be printable ASCII without spaces or "+" (C2SP tlog-checkpoint)');
  const sinksFile = get<string>('/audit/sinksFile');
  const audit: AuditConfig = {
    ...(origin === undefined ? {} : { origin }),
    witnessDir: get<string>('/audit/witnessDir') ?? resolve(dataDir, 'witness'),
    checkpointIntervalMs: num('/audit/checkpointIntervalMs'),
    signBoundMs: num('/audit/signBoundMs'),
    verifyIntervalMinutes: get<number>('/audit/verifyIntervalMinutes') as number,
    diskWarnBytes: num('/audit/diskWarnBytes'),
    diskReserveBytes: num('/audit/diskReserveBytes'),
    archiveSegmentTiles: num('/audit/archiveSegmentTiles'),
    archiveIntervalMinutes: num('/audit/archiveIntervalMinutes'),
    archivePrune: get<boolean>('/audit/archivePrune') ?? false,
  };
  if (sinksFile !== undefined) audit.sinksFile = sinksFile;
  const archiveKeepEntries = get<number>('/audit/archiveKeepEntries');
  if (archiveKeepEntries !== undefined) audit.archiveKeepEntries = archiveKeepEntries;

  const access: AccessConfig = {
    defaultGrantMinutes: num('/access/defaultGrantMinutes'),
    maxGrantMinutes: num('/access/maxGrantMinutes'),
  };
  if (access.defaultGrantMinutes > access.maxGrantMinutes)
    problems.push('access.defaultGrantMinutes must not exceed access.maxGrantMinutes');
  // WebAuthn binds credentials to a host name: by default the public URL's, else the listening
  // host's — `localhost` for an address (browsers treat https://localhost as a secure context).
  const publicHost = publicUrl === undefined ? undefined : new URL(publicUrl).hostname;
  const listenName = isIP(host) !== 0 ? 'localhost' : host;
  const rpId = get<string>('/console/rpId') ?? publicHost ?? listenName;
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(rpId) || isIP(rpId) !== 0)
    problems.push('console.rpId must be a host name (not an IP address)');
  const originsSet = get<string[]>('/console/origins') ?? [];
  const origins =
    originsSet.length > 0 ? originsSet : [publicUrl ?? `https://${rpId}${port === 443 ? '' : `:${port}`}`];
  for (const o of origins) {
    let ok = false;
    try {
      const u = new URL(o);
      ok = u.protocol === 'https:' && u.origin === o;
    } catch {}
    if (!ok) problems.push(`console origin ${JSON.stringify(o)} must be an https:// origin (no path)`);
  }
  const consoleConfig: ConsoleConfig = {
    rpId,
    origins,
    sessions: {
      operatorIdleMs: num('/console/sessions/operatorIdleMs'),
      operatorAbsoluteMs: num('/console/sessions/operatorAbsoluteMs'),
      customerIdleMs: num('/console/sessions/customerIdleMs'),
      customerAbsoluteMs: num('/console/sessions/customerAbsoluteMs'),
    },
    login: {
      delayAfter: num('/console/login/delayAfter'),
      baseDelayMs: num('/console/login/baseDelayMs'),
      lockoutThreshold: num('/console/login/lockoutThreshold'),
      lockoutMs: num('/console/login/lockoutMs'),
      addressDelayAfter: num('/console/login/addressDelayAfter'),
    },
  };
  for (const side of ['operator', 'customer'] as const) {
    if (consoleConfig.sessions[`${side}AbsoluteMs`] < consoleConfig.sessions[`${side}IdleMs`])
      problems.push(`console.sessions.${side}AbsoluteMs must not be below ${side}IdleMs`);
  }

  // Relative paths of destinations: against the config file's folder when they come from it.
  const backupBase =
    g.configPath !== undefined && g.from.get('/server/backup/destinations')?.startsWith('config file')
      ? dirname(g.configPath)
      : process.cwd();
  const backup = backupConfig(dataDir, backupBase, get, problems);

  const probe: ProbeConfig = { intervalMs: (get<number>('/probe/intervalSeconds') as number) * 1000 };
  const probeKey = get<string>('/probe/apiKeyFile');
  if (probeKey !== undefined) probe.apiKeyFile = probeKey;
  const probeUrl = get<string>('/probe/url');
  if (probeUrl !== undefined) {
    let ok = false;
    try {
      const u = new URL(probeUrl);
      ok = u.protocol === 'https:' && u.origin === probeUrl;
    } catch {}
    if (!ok) problems.push(`probe.url ${JSON.stringify(probeUrl)} must be an https:// origin (no path)`);
    probe.url = probeUrl;
  }
  const probeCa = get<string>('/probe/caFile');
  if (probeCa !== undefined) probe.caFile = probeCa;
  const alerts = alertsConfig(get, num, problems);

  if (problems.length > 0) throw new ConfigError(problems);
  const config: ServerConfig = {
    dataDir,
    database,
    host,
    port,
    tls,
    bodyLimit,
    rateLimit,
    timeouts,
    connections,
    keyCache,
    trustProxy,
    keyd,
    closeGraceDays,
    principalCacheMs,
    clusterSweepMs,
    logLevel,
    audit,
    access,
    console: consoleConfig,
    backup,
    probe,
    alerts,
  };
  if (redirectPort !== undefined) config.redirectPort = redirectPort;
  if (publicUrl !== undefined) config.publicUrl = publicUrl;
  if (metricsPort !== undefined) config.metrics = { host: metricsHost, port: metricsPort };
  return config;
}

/**
 * Only where the data lives (`database.url`, else SQLite in the data folder), for the commands that
 * open the stores without serving (`tresor audit verify`, `tresor access`): the rest of the server's
 * configuration need not be valid for them.
 */
export function resolveDatabaseConfig(
  flags: Source = {},
  env: NodeJS.ProcessEnv = process.env,
): DatabaseConfig {
  const g = gatherSettings(CONFIG_FILE_SCHEMA, flags, env);
  const problems = g.problems.filter((p) => p.pointer.startsWith('/database')).map((p) => p.message);
  const database = databaseConfig(g.values.get('/database/url') as string | undefined, g, problems);
  if (problems.length > 0) throw new ConfigError(problems, 'database configuration');
  return database;
}

/** `database.url`, checked without ever repeating it (it may hold a password). */
function databaseConfig(url: string | undefined, g: Gathered, problems: string[]): DatabaseConfig {
  if (url === undefined) return { kind: 'sqlite' };
  const problem = databaseUrlProblem(url);
  if (problem !== null) problems.push(`${g.from.get('/database/url') ?? 'database.url'} ${problem}`);
  return { kind: 'postgres', url };
}

/** A destination as the schema admitted it (optional fields not yet defaulted). */
type RawDestination = {
  name: string;
  kind: 'folder' | 's3';
  retention?: Partial<BackupRetentionConfig>;
} & Record<string, unknown>;

const DEFAULT_RETENTION: BackupRetentionConfig = { keepAllDays: 2, keepDailyDays: 35 };

/** The backup section: the destinations (default: two folders under the data folder) with their retention. */
function backupConfig(
  dataDir: string,
  base: string,
  get: <T>(pointer: string) => T | undefined,
  problems: string[],
): BackupConfig {
  const configured = get<RawDestination[]>('/backup/destinations');
  const raw: RawDestination[] = configured ?? [
    { name: 'a', kind: 'folder', path: resolve(dataDir, 'backups', 'a') },
    { name: 'b', kind: 'folder', path: resolve(dataDir, 'backups', 'b') },
  ];
  const names = new Set<string>();
  const destinations: BackupDestinationConfig[] = [];
  for (const d of raw) {
    if (names.has(d.name)) problems.push(`backup destination name ${JSON.stringify(d.name)} is used twice`);
    names.add(d.name);
    const retention = { ...DEFAULT_RETENTION, ...d.retention };
    if (d.kind === 'folder') {
      destinations.push({ name: d.name, kind: 'folder', path: resolve(base, String(d.path)), retention });
    } else {
      const s3 = d;
      destinations.push({
        name: d.name,
        kind: 's3',
        ...(typeof s3.endpoint === 'string' ? { endpoint: s3.endpoint } : {}),
        region: String(s3.region),
        bucket: String(s3.bucket),
        prefix: typeof s3.prefix === 'string' ? s3.prefix : '',
        forcePathStyle: s3.forcePathStyle === true,
        accessKeyIdFile: resolve(base, String(s3.accessKeyIdFile)),
        secretAccessKeyFile: resolve(base, String(s3.secretAccessKeyFile)),
        timeoutSeconds: typeof s3.timeoutSeconds === 'number' ? s3.timeoutSeconds : 60,
        retention,
      });
    }
  }
  return {
    intervalMinutes: get<number>('/backup/intervalMinutes') as number,
    verifyIntervalMinutes: get<number>('/backup/verifyIntervalMinutes') as number,
    destinations,
    defaultDestinations: configured === undefined,
    retryAttempts: get<number>('/backup/retryAttempts') as number,
    retryBaseMs: get<number>('/backup/retryBaseMs') as number,
    scratchDir: get<string>('/backup/scratchDir') ?? resolve(dataDir, 'backup-scratch'),
  };
}

/**
 * Every problem of a config file, the `keyd` section's included, as `tresor server --config FILE`
 * would meet them with `env` (`tresor config check`); empty when the file is valid.
 */
export function checkConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const keydProblems = gatherSettings(CONFIG_FILE_SCHEMA, { config: file }, env).problems.filter(
    isKeydProblem,
  );
  try {
    resolveServerConfig({ config: file }, env);
    return keydProblems.map((p) => p.message);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return [...err.problems, ...keydProblems.map((p) => p.message)];
  }
}

/** The alerts section: thresholds, and each channel only when its required settings are all given. */
function alertsConfig(
  get: <T>(pointer: string) => T | undefined,
  num: (pointer: string) => number,
  problems: string[],
): AlertsConfig {
  const alerts: AlertsConfig = {
    windowMinutes: num('/alerts/windowMinutes'),
    bruteForceAccountFailures: num('/alerts/bruteForceAccountFailures'),
    bruteForceAddressFailures: num('/alerts/bruteForceAddressFailures'),
    noGrantRefusals: num('/alerts/noGrantRefusals'),
    staffRecordReads: num('/alerts/staffRecordReads'),
    staffTenants: num('/alerts/staffTenants'),
    exports: num('/alerts/exports'),
    checkIntervalSeconds: num('/alerts/checkIntervalSeconds'),
    backupOverdueMinutes: num('/alerts/backupOverdueMinutes'),
    certificateExpiringDays: num('/alerts/certificateExpiringDays'),
    retryAttempts: num('/alerts/retryAttempts'),
    retryBaseMs: num('/alerts/retryBaseMs'),
  };
  const url = get<string>('/alerts/webhook/url');
  const secret = get<string>('/alerts/webhook/secret');
  const webhookCa = get<string>('/alerts/webhook/ca');
  if (url !== undefined || secret !== undefined) {
    let https = false;
    try {
      const u = new URL(url ?? '');
      https = u.protocol === 'https:' && u.username === '' && u.password === '';
    } catch {}
    if (!https) problems.push('alerts.webhook.url must be an https:// URL without credentials');
    if (secret === undefined || Buffer.byteLength(secret) < 32)
      problems.push('alerts.webhook.secret (or secretFile) must be given, at least 32 bytes');
    alerts.webhook = { url: url ?? '', secret: secret ?? '', ...(webhookCa ? { ca: webhookCa } : {}) };
  }
  const host = get<string>('/alerts/mail/host');
  const from = get<string>('/alerts/mail/from');
  const to = get<string[]>('/alerts/mail/to') ?? [];
  if (host !== undefined || from !== undefined || to.length > 0) {
    if (host === undefined || from === undefined || to.length === 0)
      problems.push('alerts.mail needs host, from and to together');
    const user = get<string>('/alerts/mail/user');
    const password = get<string>('/alerts/mail/password');
    if ((user === undefined) !== (password === undefined))
      problems.push('alerts.mail.user and alerts.mail.password go together');
    const ca = get<string>('/alerts/mail/ca');
    alerts.mail = {
      host: host ?? '',
      port: num('/alerts/mail/port'),
      tls: get<'starttls' | 'implicit' | 'none'>('/alerts/mail/tls') ?? 'starttls',
      from: from ?? '',
      to,
      ...(user !== undefined ? { user } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(ca !== undefined ? { ca } : {}),
    };
  }
  return alerts;
}

const REDACTED = '[redacted]';

/** The configuration with every secret of the schema replaced, for `tresor config show` and start-up logs. */
export function redactedServerConfig(config: ServerConfig): ServerConfig {
  const copy = structuredClone(config) as unknown as Source;
  for (const s of SERVER_SETTINGS) {
    if (s.secret !== 'value') continue;
    const names = s.pointer.split('/').slice(2);
    const last = names.pop() as string;
    let at: unknown = copy;
    for (const n of names) at = typeof at === 'object' && at !== null ? (at as Source)[n] : undefined;
    if (typeof at === 'object' && at !== null && (at as Source)[last] !== undefined)
      (at as Source)[last] = REDACTED;
  }
  const database = (copy as unknown as ServerConfig).database;
  if (database.kind === 'postgres') database.url = redactDatabaseUrl(database.url);
  return copy as unknown as ServerConfig;
}

function isKeydProblem(p: Problem): boolean {
  return p.pointer === '/keyd' || p.pointer.startsWith('/keyd/');
}
