/**
 * The server's configuration: flags > TRESOR_* environment > JSON config file (`server` section,
 * plus a top-level `dataDir`) > defaults. Everything is validated at start and every problem is
 * reported at once, each naming where the bad value came from, so a misconfigured server never
 * half-starts.
 *
 * Secrets (today: the passphrase of an encrypted TLS private key) come only from the environment
 * or from a file named by a `*_FILE` variable or config entry — never from a flag, since command
 * lines are visible to every user of the machine (`ps`). `redactedServerConfig` is what
 * `tresor config show` prints.
 *
 * Paths from the config file are relative to the file's folder; paths from flags and the
 * environment to the working directory.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { TresorError } from '../errors.ts';

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
  | { kind: 'unix'; socketPath: string }
  | {
      kind: 'tls';
      host: string;
      port: number;
      certFile: string;
      keyFile: string;
      caFile: string;
      servername?: string;
    };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

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

export interface ServerConfig {
  dataDir: string;
  host: string;
  port: number;
  /** Optional plain-HTTP port that only redirects to HTTPS. */
  redirectPort?: number;
  /** The public https:// origin (behind a load balancer); redirects use it when set. */
  publicUrl?: string;
  tls: TlsSource;
  /** Largest request body in bytes. */
  bodyLimit: number;
  rateLimit: { windowMs: number; perAddress: number; perKey: number };
  timeouts: ServerTimeouts;
  /** Load balancer addresses/CIDRs whose X-Forwarded-For is believed; empty: none. */
  trustProxy: string[];
  keyd: KeydConnection;
  /** Days between a contract's end and the crypto-shredding of the tenant's data. */
  closeGraceDays: number;
  logLevel: LogLevel;
  audit: AuditConfig;
  access: AccessConfig;
  console: ConsoleConfig;
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
  /** Free bytes under which the data folder's filesystem is reported low (warning). */
  diskWarnBytes: number;
  /** Space kept in a reserve file, released when the disk fills so refusals can still be recorded. */
  diskReserveBytes: number;
  /** JSON file of audit sinks (see src/audit/sinks/config.ts); none when unset. */
  sinksFile?: string;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export const DEFAULT_TIMEOUTS: ServerTimeouts = {
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 5_000,
  idleMs: 30_000,
  handshakeMs: 10_000,
  shutdownGraceMs: 10_000,
};

/** Per minute. Generous: one application server sends all its tenants' traffic from one address with few keys. */
export const DEFAULT_RATE_LIMIT = { windowMs: 60_000, perAddress: 600_000, perKey: 600_000 };

export class ConfigError extends TresorError<'TRESOR_ERR_CONFIG_INVALID'> {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(
      'TRESOR_ERR_CONFIG_INVALID',
      `invalid server configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.problems = problems;
  }
}

type Source = Record<string, unknown>;

interface Setting {
  /** Flag name (camelCase as commander gives it); undefined for secrets, which have no flag. */
  flag?: string;
  env: string;
  /** Path in the config file's `server` section. */
  file: string;
}

const FILE_KEYS: Readonly<Record<string, readonly string[] | null>> = {
  host: null,
  port: null,
  redirectPort: null,
  publicUrl: null,
  tls: ['certFile', 'keyFile', 'keyPassphrase', 'keyPassphraseFile'],
  bodyLimit: null,
  rateLimit: ['windowMs', 'perAddress', 'perKey'],
  timeouts: Object.keys(DEFAULT_TIMEOUTS),
  trustProxy: null,
  keyd: ['socket', 'address', 'clientCert', 'clientKey', 'ca', 'servername'],
  closeGraceDays: null,
  logLevel: null,
  audit: [
    'origin',
    'witnessDir',
    'checkpointIntervalMs',
    'signBoundMs',
    'diskWarnBytes',
    'diskReserveBytes',
    'sinksFile',
  ],
  access: ['defaultGrantMinutes', 'maxGrantMinutes'],
  console: ['rpId', 'origins', 'sessions', 'login'],
};

/**
 * Resolves the configuration. `flags` are the parsed command-line options (camelCase);
 * `flags.config` or TRESOR_CONFIG names the JSON config file.
 */
export function resolveServerConfig(flags: Source = {}, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const problems: string[] = [];
  const configPath = text(flags.config) ?? text(env.TRESOR_CONFIG);
  const { server: file, top, fileDir } = readConfigFile(configPath, problems);

  /** The first source that sets a value, with where it came from (for messages) and its base folder. */
  const pick = (s: Setting): { value: unknown; from: string; base: string } | undefined => {
    if (s.flag !== undefined && flags[s.flag] !== undefined && flags[s.flag] !== '') {
      return { value: flags[s.flag], from: `flag --${kebab(s.flag)}`, base: process.cwd() };
    }
    if (env[s.env] !== undefined && env[s.env] !== '')
      return { value: env[s.env], from: `env ${s.env}`, base: process.cwd() };
    const fromFile = s.file.split('.').reduce<unknown>((o, k) => (isObject(o) ? o[k] : undefined), file);
    if (fromFile !== undefined)
      return { value: fromFile, from: `config file server.${s.file}`, base: fileDir };
    return undefined;
  };

  const str = (s: Setting): { value: string; from: string; base: string } | undefined => {
    const got = pick(s);
    if (got === undefined) return undefined;
    if (typeof got.value !== 'string' || got.value.trim() === '') {
      problems.push(`${got.from} must be a non-empty string`);
      return undefined;
    }
    return { value: got.value, from: got.from, base: got.base };
  };
  const path = (s: Setting): string | undefined => {
    const got = str(s);
    return got && resolve(got.base, got.value);
  };
  const int = (s: Setting, fallback: number, min: number, max: number): number => {
    const got = pick(s);
    if (got === undefined) return fallback;
    const n =
      typeof got.value === 'number'
        ? got.value
        : typeof got.value === 'string'
          ? Number(got.value)
          : Number.NaN;
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${got.from} must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  };

  // dataDir: flag > env > file (top level) > default
  let dataDir = resolve('.tresor-data');
  if (text(flags.dataDir)) dataDir = resolve(String(flags.dataDir));
  else if (text(env.TRESOR_DATA_DIR)) dataDir = resolve(String(env.TRESOR_DATA_DIR));
  else if (typeof top.dataDir === 'string' && top.dataDir !== '') dataDir = resolve(fileDir, top.dataDir);

  const host = str({ flag: 'host', env: 'TRESOR_HOST', file: 'host' })?.value ?? '127.0.0.1';
  if (!isIP(host) && !/^[A-Za-z0-9.-]{1,253}$/.test(host))
    problems.push(`host ${JSON.stringify(host)} is not an address or name`);
  const port = int({ flag: 'port', env: 'TRESOR_PORT', file: 'port' }, 8443, 0, 65535);
  const redirectSetting = { flag: 'redirectPort', env: 'TRESOR_REDIRECT_PORT', file: 'redirectPort' };
  const redirectPort = pick(redirectSetting) === undefined ? undefined : int(redirectSetting, 0, 0, 65535);
  if (redirectPort !== undefined && redirectPort !== 0 && redirectPort === port) {
    problems.push('redirectPort must differ from port');
  }

  const publicUrlGot = str({ flag: 'publicUrl', env: 'TRESOR_PUBLIC_URL', file: 'publicUrl' });
  let publicUrl: string | undefined;
  if (publicUrlGot) {
    try {
      const u = new URL(publicUrlGot.value);
      if (u.protocol !== 'https:' || u.pathname !== '/' || u.search || u.hash || u.username)
        throw new Error();
      publicUrl = u.origin;
    } catch {
      problems.push(
        `${publicUrlGot.from} must be an https:// origin without path, e.g. https://vault.example.com`,
      );
    }
  }

  const certFile = path({ flag: 'tlsCert', env: 'TRESOR_TLS_CERT', file: 'tls.certFile' });
  const keyFile = path({ flag: 'tlsKey', env: 'TRESOR_TLS_KEY', file: 'tls.keyFile' });
  const keyPassphrase = secret(
    { env: 'TRESOR_TLS_KEY_PASSPHRASE', file: 'tls.keyPassphrase' },
    { env: 'TRESOR_TLS_KEY_PASSPHRASE_FILE', file: 'tls.keyPassphraseFile' },
    pick,
    problems,
  );
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

  const bodyLimit = int(
    { flag: 'bodyLimit', env: 'TRESOR_BODY_LIMIT', file: 'bodyLimit' },
    DEFAULT_BODY_LIMIT,
    1024,
    64 * 1024 * 1024,
  );

  const rateLimit = {
    windowMs: int(
      { env: 'TRESOR_RATE_LIMIT_WINDOW_MS', file: 'rateLimit.windowMs' },
      DEFAULT_RATE_LIMIT.windowMs,
      1000,
      3_600_000,
    ),
    perAddress: int(
      { env: 'TRESOR_RATE_LIMIT_PER_ADDRESS', file: 'rateLimit.perAddress' },
      DEFAULT_RATE_LIMIT.perAddress,
      1,
      10_000_000,
    ),
    perKey: int(
      { env: 'TRESOR_RATE_LIMIT_PER_KEY', file: 'rateLimit.perKey' },
      DEFAULT_RATE_LIMIT.perKey,
      1,
      10_000_000,
    ),
  };

  const t = (name: keyof ServerTimeouts, envName: string, min: number, max: number) =>
    int({ env: envName, file: `timeouts.${name}` }, DEFAULT_TIMEOUTS[name], min, max);
  const timeouts: ServerTimeouts = {
    headersMs: t('headersMs', 'TRESOR_HEADERS_TIMEOUT_MS', 1000, 120_000),
    requestMs: t('requestMs', 'TRESOR_REQUEST_TIMEOUT_MS', 1000, 600_000),
    keepAliveMs: t('keepAliveMs', 'TRESOR_KEEP_ALIVE_TIMEOUT_MS', 1000, 600_000),
    idleMs: t('idleMs', 'TRESOR_IDLE_TIMEOUT_MS', 1000, 600_000),
    handshakeMs: t('handshakeMs', 'TRESOR_TLS_HANDSHAKE_TIMEOUT_MS', 1000, 120_000),
    shutdownGraceMs: t('shutdownGraceMs', 'TRESOR_SHUTDOWN_GRACE_MS', 0, 600_000),
  };
  if (timeouts.headersMs > timeouts.requestMs)
    problems.push('timeouts.headersMs must not exceed timeouts.requestMs');

  const trustProxy = list(pick({ env: 'TRESOR_TRUST_PROXY', file: 'trustProxy' }), problems);
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

  const keydAddress = str({ env: 'TRESOR_KEYD_ADDRESS', file: 'keyd.address' });
  let keyd: KeydConnection;
  if (keydAddress) {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(keydAddress.value);
    const clientCert = path({ env: 'TRESOR_KEYD_CLIENT_CERT', file: 'keyd.clientCert' });
    const clientKey = path({ env: 'TRESOR_KEYD_CLIENT_KEY', file: 'keyd.clientKey' });
    const ca = path({ env: 'TRESOR_KEYD_CA', file: 'keyd.ca' });
    if (!m?.[1] || !m[2] || Number(m[2]) > 65535) problems.push(`${keydAddress.from} must be host:port`);
    if (!clientCert || !clientKey || !ca) {
      problems.push(
        'keyd over TCP needs mutual TLS: TRESOR_KEYD_CLIENT_CERT, TRESOR_KEYD_CLIENT_KEY and TRESOR_KEYD_CA',
      );
    }
    keyd = {
      kind: 'tls',
      host: (m?.[1] ?? '').replace(/^\[|\]$/g, ''),
      port: Number(m?.[2] ?? 0),
      certFile: clientCert ?? '',
      keyFile: clientKey ?? '',
      caFile: ca ?? '',
    };
    const servername = str({ env: 'TRESOR_KEYD_SERVERNAME', file: 'keyd.servername' })?.value;
    if (servername) keyd.servername = servername;
  } else {
    keyd = {
      kind: 'unix',
      socketPath:
        path({ env: 'TRESOR_KEYD_SOCKET', file: 'keyd.socket' }) ?? resolve(dataDir, 'keyd', 'keyd.sock'),
    };
  }

  const closeGraceDays = int({ env: 'TRESOR_CLOSE_GRACE_DAYS', file: 'closeGraceDays' }, 30, 0, 3650);

  const levelGot = str({ flag: 'logLevel', env: 'TRESOR_LOG_LEVEL', file: 'logLevel' });
  let logLevel: LogLevel = 'info';
  if (levelGot) {
    if (LOG_LEVELS.includes(levelGot.value as LogLevel)) logLevel = levelGot.value as LogLevel;
    else problems.push(`${levelGot.from} must be one of ${LOG_LEVELS.join(', ')}`);
  }

  const origin = str({ env: 'TRESOR_AUDIT_ORIGIN', file: 'audit.origin' })?.value;
  if (origin !== undefined && !/^[\x21-\x2a\x2c-\x7e]{1,200}$/.test(origin))
    problems.push('audit.origin must be printable ASCII without spaces or "+" (C2SP tlog-checkpoint)');
  const sinksFile = path({ env: 'TRESOR_AUDIT_SINKS_FILE', file: 'audit.sinksFile' });
  const audit: AuditConfig = {
    ...(origin === undefined ? {} : { origin }),
    witnessDir:
      path({ env: 'TRESOR_AUDIT_WITNESS_DIR', file: 'audit.witnessDir' }) ?? resolve(dataDir, 'witness'),
    checkpointIntervalMs: int(
      { env: 'TRESOR_AUDIT_CHECKPOINT_INTERVAL_MS', file: 'audit.checkpointIntervalMs' },
      1000,
      50,
      1000,
    ),
    signBoundMs: int(
      { env: 'TRESOR_AUDIT_SIGN_BOUND_MS', file: 'audit.signBoundMs' },
      10_000,
      1000,
      3_600_000,
    ),
    diskWarnBytes: int(
      { env: 'TRESOR_AUDIT_DISK_WARN_BYTES', file: 'audit.diskWarnBytes' },
      1024 ** 3,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    diskReserveBytes: int(
      { env: 'TRESOR_AUDIT_DISK_RESERVE_BYTES', file: 'audit.diskReserveBytes' },
      64 * 1024 ** 2,
      0,
      1024 ** 4,
    ),
  };
  if (sinksFile !== undefined) audit.sinksFile = sinksFile;

  const access: AccessConfig = {
    defaultGrantMinutes: int(
      { env: 'TRESOR_ACCESS_DEFAULT_GRANT_MINUTES', file: 'access.defaultGrantMinutes' },
      60,
      1,
      7 * 24 * 60,
    ),
    maxGrantMinutes: int(
      { env: 'TRESOR_ACCESS_MAX_GRANT_MINUTES', file: 'access.maxGrantMinutes' },
      480,
      1,
      7 * 24 * 60,
    ),
  };
  if (access.defaultGrantMinutes > access.maxGrantMinutes)
    problems.push('access.defaultGrantMinutes must not exceed access.maxGrantMinutes');
  // WebAuthn binds credentials to a host name: by default the public URL's, else the listening
  // host's — `localhost` for an address (browsers treat https://localhost as a secure context).
  const publicHost = publicUrl === undefined ? undefined : new URL(publicUrl).hostname;
  const listenName = isIP(host) !== 0 ? 'localhost' : host;
  const rpId = str({ env: 'TRESOR_CONSOLE_RP_ID', file: 'console.rpId' })?.value ?? publicHost ?? listenName;
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(rpId) || isIP(rpId) !== 0)
    problems.push('console.rpId must be a host name (not an IP address)');
  const originsGot = list(pick({ env: 'TRESOR_CONSOLE_ORIGINS', file: 'console.origins' }), problems);
  const origins =
    originsGot.length > 0 ? originsGot : [publicUrl ?? `https://${rpId}${port === 443 ? '' : `:${port}`}`];
  for (const o of origins) {
    let ok = false;
    try {
      const u = new URL(o);
      ok = u.protocol === 'https:' && u.origin === o;
    } catch {}
    if (!ok) problems.push(`console origin ${JSON.stringify(o)} must be an https:// origin (no path)`);
  }
  const MINUTE = 60_000;
  const ms = (name: string, envName: string, fallback: number, min: number, max: number) =>
    int({ env: envName, file: `console.${name}` }, fallback, min, max);
  const consoleConfig: ConsoleConfig = {
    rpId,
    origins,
    sessions: {
      operatorIdleMs: ms(
        'sessions.operatorIdleMs',
        'TRESOR_SESSION_OPERATOR_IDLE_MS',
        15 * MINUTE,
        1000,
        24 * 60 * MINUTE,
      ),
      operatorAbsoluteMs: ms(
        'sessions.operatorAbsoluteMs',
        'TRESOR_SESSION_OPERATOR_ABSOLUTE_MS',
        12 * 60 * MINUTE,
        1000,
        7 * 24 * 60 * MINUTE,
      ),
      customerIdleMs: ms(
        'sessions.customerIdleMs',
        'TRESOR_SESSION_CUSTOMER_IDLE_MS',
        30 * MINUTE,
        1000,
        24 * 60 * MINUTE,
      ),
      customerAbsoluteMs: ms(
        'sessions.customerAbsoluteMs',
        'TRESOR_SESSION_CUSTOMER_ABSOLUTE_MS',
        12 * 60 * MINUTE,
        1000,
        7 * 24 * 60 * MINUTE,
      ),
    },
    login: {
      delayAfter: ms('login.delayAfter', 'TRESOR_LOGIN_DELAY_AFTER', 3, 0, 100),
      baseDelayMs: ms('login.baseDelayMs', 'TRESOR_LOGIN_BASE_DELAY_MS', 1000, 0, 60_000),
      // The issue: lockout after at most 10 failed tries.
      lockoutThreshold: ms('login.lockoutThreshold', 'TRESOR_LOGIN_LOCKOUT_THRESHOLD', 10, 1, 10),
      lockoutMs: ms('login.lockoutMs', 'TRESOR_LOGIN_LOCKOUT_MS', 15 * MINUTE, 1000, 24 * 60 * MINUTE),
      addressDelayAfter: ms('login.addressDelayAfter', 'TRESOR_LOGIN_ADDRESS_DELAY_AFTER', 20, 1, 100_000),
    },
  };
  for (const side of ['operator', 'customer'] as const) {
    if (consoleConfig.sessions[`${side}AbsoluteMs`] < consoleConfig.sessions[`${side}IdleMs`])
      problems.push(`console.sessions.${side}AbsoluteMs must not be below ${side}IdleMs`);
  }

  if (problems.length > 0) throw new ConfigError(problems);
  const config: ServerConfig = {
    dataDir,
    host,
    port,
    tls,
    bodyLimit,
    rateLimit,
    timeouts,
    trustProxy,
    keyd,
    closeGraceDays,
    logLevel,
    audit,
    access,
    console: consoleConfig,
  };
  if (redirectPort !== undefined) config.redirectPort = redirectPort;
  if (publicUrl !== undefined) config.publicUrl = publicUrl;
  return config;
}

/** The configuration with secrets replaced, for `tresor config show` and start-up logs. */
export function redactedServerConfig(config: ServerConfig): ServerConfig {
  const copy = structuredClone(config);
  if (copy.tls.kind === 'files' && copy.tls.keyPassphrase !== undefined)
    copy.tls.keyPassphrase = '[redacted]';
  return copy;
}

function readConfigFile(
  configPath: string | undefined,
  problems: string[],
): { server: Source; top: Source; fileDir: string } {
  if (!configPath) return { server: {}, top: {}, fileDir: process.cwd() };
  const absolute = resolve(configPath);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(absolute, 'utf8'));
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'is not readable JSON';
    problems.push(`config file ${absolute} ${reason}`);
    return { server: {}, top: {}, fileDir: dirname(absolute) };
  }
  if (!isObject(parsed)) {
    problems.push(`config file ${absolute} must hold a JSON object`);
    return { server: {}, top: {}, fileDir: dirname(absolute) };
  }
  const server = parsed.server ?? {};
  if (!isObject(server)) {
    problems.push('config file: "server" must be an object');
    return { server: {}, top: parsed, fileDir: dirname(absolute) };
  }
  // Unknown keys are refused: a misspelt setting would otherwise be silently ignored.
  for (const [key, value] of Object.entries(server)) {
    const nested = FILE_KEYS[key];
    if (nested === undefined) problems.push(`config file: unknown setting server.${key}`);
    else if (nested !== null) {
      if (!isObject(value)) problems.push(`config file: server.${key} must be an object`);
      else
        for (const sub of Object.keys(value))
          if (!nested.includes(sub)) problems.push(`config file: unknown setting server.${key}.${sub}`);
    }
  }
  return { server, top: parsed, fileDir: dirname(absolute) };
}

/** A secret from its variable, or from the file its *_FILE variable names (one trailing newline trimmed). */
function secret(
  direct: { env: string; file: string },
  viaFile: { env: string; file: string },
  pick: (s: Setting) => { value: unknown; from: string; base: string } | undefined,
  problems: string[],
): string | undefined {
  const fileGot = pick(viaFile);
  if (fileGot !== undefined) {
    if (typeof fileGot.value !== 'string' || fileGot.value === '') {
      problems.push(`${fileGot.from} must name a file`);
      return undefined;
    }
    try {
      return readFileSync(resolve(fileGot.base, fileGot.value), 'utf8').replace(/\r?\n$/, '');
    } catch {
      problems.push(`${fileGot.from}: cannot read the secret file`);
      return undefined;
    }
  }
  const got = pick(direct);
  if (got === undefined) return undefined;
  if (got.from.startsWith('config file')) {
    problems.push(
      `${got.from}: secrets do not belong in the config file; use ${viaFile.file} or ${viaFile.env}`,
    );
    return undefined;
  }
  return typeof got.value === 'string' ? got.value : undefined;
}

function list(got: { value: unknown; from: string } | undefined, problems: string[]): string[] {
  if (got === undefined) return [];
  if (Array.isArray(got.value) && got.value.every((v) => typeof v === 'string')) return got.value as string[];
  if (typeof got.value === 'string')
    return got.value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  problems.push(`${got.from} must be a list of addresses`);
  return [];
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function isObject(v: unknown): v is Source {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
