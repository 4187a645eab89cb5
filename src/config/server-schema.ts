/**
 * The config file, written once: its shape (validation, unknown keys refused), each setting's
 * TRESOR_* variable and flag, its default, which settings are secrets, and the words of
 * docs/configuration.md (`npm run docs:config`). The server reads `dataDir` and `server`; the
 * `keyd` section is keyd's (keyd-schema.ts).
 *
 * Rules that tie settings together (TLS needs a certificate and a key, keyd over TCP needs
 * mutual TLS, ...) are checked in server-config.ts, after this schema.
 */
import Type from 'typebox';
import { BACKUP_DESTINATION } from './destination-schema.ts';
import { KEYD_SECTION } from './keyd-schema.ts';
import { secret, section, setting } from './settings.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const MINUTE = 60_000;
const DAY_MS = 24 * 60 * MINUTE;

const int = (env: string, min: number, max: number, fallback: number | undefined, description: string) =>
  Type.Optional(
    setting(
      Type.Integer({
        minimum: min,
        maximum: max,
        description,
        ...(fallback === undefined ? {} : { default: fallback }),
      }),
      { env },
    ),
  );
const text = (env: string, description: string, more: { flag?: string; defaultText?: string } = {}) =>
  Type.Optional(setting(Type.String({ minLength: 1, pattern: '\\S', description }), { env, ...more }));
const path = (env: string, description: string, more: { flag?: string; defaultText?: string } = {}) =>
  Type.Optional(
    setting(Type.String({ minLength: 1, pattern: '\\S', description }), { env, path: true, ...more }),
  );
const list = (env: string, description: string, defaultText: string) =>
  Type.Optional(
    setting(Type.Array(Type.String({ minLength: 1, pattern: '\\S' }), { description }), { env, defaultText }),
  );

export const SERVER_SECTION = section(
  {
    host: Type.Optional(
      setting(
        Type.String({
          minLength: 1,
          pattern: '\\S',
          default: '127.0.0.1',
          description: 'Listen address or host name.',
        }),
        {
          env: 'TRESOR_HOST',
          flag: 'host',
        },
      ),
    ),
    port: Type.Optional(
      setting(Type.Integer({ minimum: 0, maximum: 65535, default: 8443, description: 'HTTPS port.' }), {
        env: 'TRESOR_PORT',
        flag: 'port',
      }),
    ),
    redirectPort: Type.Optional(
      setting(
        Type.Integer({
          minimum: 0,
          maximum: 65535,
          description:
            'Optional plain-HTTP port: browser pages are redirected to HTTPS, API and machine paths refused (403 TRESOR_ERR_HTTPS_REQUIRED); must differ from `port`.',
        }),
        { env: 'TRESOR_REDIRECT_PORT', flag: 'redirectPort', defaultText: 'none' },
      ),
    ),
    publicUrl: text(
      'TRESOR_PUBLIC_URL',
      'The public https:// origin (behind a load balancer), without a path; redirects use it.',
      { flag: 'publicUrl', defaultText: 'none' },
    ),
    tls: Type.Optional(
      section(
        {
          certFile: path('TRESOR_TLS_CERT', 'PEM certificate chain.', {
            flag: 'tlsCert',
            defaultText: 'the development CA in `<dataDir>/tls`',
          }),
          keyFile: path('TRESOR_TLS_KEY', 'PEM private key.', { flag: 'tlsKey' }),
          ...secret(
            'keyPassphrase',
            'TRESOR_TLS_KEY_PASSPHRASE',
            'The passphrase of an encrypted TLS private key.',
          ),
        },
        'The HTTPS certificate. Without `certFile` and `keyFile`, certificates of a development CA are made in `<dataDir>/tls`.',
      ),
    ),
    bodyLimit: Type.Optional(
      setting(
        Type.Integer({
          minimum: 1024,
          maximum: 64 * 1024 * 1024,
          default: 1024 * 1024,
          description: 'Largest request body in bytes.',
        }),
        { env: 'TRESOR_BODY_LIMIT', flag: 'bodyLimit' },
      ),
    ),
    rateLimit: Type.Optional(
      section(
        {
          windowMs: int(
            'TRESOR_RATE_LIMIT_WINDOW_MS',
            1000,
            3_600_000,
            MINUTE,
            'Length of a rate-limit window.',
          ),
          perAddress: int(
            'TRESOR_RATE_LIMIT_PER_ADDRESS',
            1,
            10_000_000,
            12_000,
            'Requests per window from one client address.',
          ),
          perKey: int(
            'TRESOR_RATE_LIMIT_PER_KEY',
            1,
            10_000_000,
            3_000,
            'Requests per window with one credential (each bearer token).',
          ),
        },
        'Rate limits, checked before authentication and refused with 429 and `Retry-After`. Per credential 3,000 a minute (50 a second, all minute long) is more than a person or an integration sends; per address 12,000 a minute leaves room for an application server sending for its tenants with a few keys. Each guessed secret is a new credential, so the per-address budget is what stops a guessing loop from one address, within its first minute. Sign-in has its own, stricter throttle (`console.login`). A bulk import or load test that needs more sets these explicitly.',
      ),
    ),
    timeouts: Type.Optional(
      section(
        {
          headersMs: int(
            'TRESOR_HEADERS_TIMEOUT_MS',
            1000,
            120_000,
            10_000,
            'Time to receive the complete request headers (slowloris); at most `requestMs`.',
          ),
          requestMs: int(
            'TRESOR_REQUEST_TIMEOUT_MS',
            1000,
            600_000,
            30_000,
            'Time to receive the complete request, body included.',
          ),
          keepAliveMs: int(
            'TRESOR_KEEP_ALIVE_TIMEOUT_MS',
            1000,
            600_000,
            5_000,
            'How long an idle keep-alive connection is kept.',
          ),
          idleMs: int(
            'TRESOR_IDLE_TIMEOUT_MS',
            1000,
            600_000,
            30_000,
            'Socket inactivity after which a connection is closed.',
          ),
          handshakeMs: int(
            'TRESOR_TLS_HANDSHAKE_TIMEOUT_MS',
            1000,
            120_000,
            10_000,
            'Time to complete the TLS handshake.',
          ),
          shutdownGraceMs: int(
            'TRESOR_SHUTDOWN_GRACE_MS',
            0,
            600_000,
            10_000,
            'How long shutdown waits for in-flight requests before closing their connections.',
          ),
        },
        'Connection and request timeouts, in milliseconds.',
      ),
    ),
    connections: Type.Optional(
      section(
        {
          max: int(
            'TRESOR_MAX_CONNECTIONS',
            1,
            1_000_000,
            4096,
            'Open connections the server holds at most; past it new ones are closed at once. Keep it below the process’s file limit (`ulimit -n`), which also covers the stores’ files and keyd’s socket.',
          ),
          perAddress: int(
            'TRESOR_MAX_CONNECTIONS_PER_ADDRESS',
            0,
            1_000_000,
            256,
            'Open connections from one client address at most (0: no per-address cap). Addresses in `trustProxy` are not capped: a load balancer carries many clients.',
          ),
        },
        'Connection caps, so that held connections (slow or silent clients) cannot exhaust the server’s file descriptors. Connections that finish no TLS handshake, or send no request, are closed by `timeouts`.',
      ),
    ),
    keyCache: Type.Optional(
      section(
        {
          maxEntries: int(
            'TRESOR_KEY_CACHE_MAX_ENTRIES',
            1,
            10_000_000,
            50_000,
            'Unwrapped keys held at most (least recently used out first). Size it above the keys your active tenants use at once — each tenant a tenant key and one or two data keys — or keys are evicted and loaded from keyd again and again (watch `tresor_key_cache_evictions_total` and the hit ratio, hits ÷ (hits + misses)). About 200 bytes each.',
          ),
          ttlSeconds: int(
            'TRESOR_KEY_CACHE_TTL_SECONDS',
            1,
            86_400,
            300,
            'How long an unwrapped key stays in memory after keyd gave it (NIST SP 800-57: bound the exposure). Each key’s lifetime is shortened by a random fraction up to a fifth, so keys loaded together do not expire together.',
          ),
        },
        'The server’s cache of keys unwrapped by keyd (src/keyd/key-cache.ts), bounded in size, time and uses; every removed key is zeroed.',
      ),
    ),
    trustProxy: list(
      'TRESOR_TRUST_PROXY',
      'Load balancer addresses or CIDR blocks whose X-Forwarded-For is believed.',
      'none',
    ),
    keyd: Type.Optional(
      section(
        {
          socket: path('TRESOR_KEYD_SOCKET', 'keyd’s Unix socket.', {
            defaultText: '`<dataDir>/keyd/keyd.sock`',
          }),
          address: text(
            'TRESOR_KEYD_ADDRESS',
            'keyd over TCP with mutual TLS instead of the socket: `host:port`.',
            {
              defaultText: 'none (the socket)',
            },
          ),
          sockets: list(
            'TRESOR_KEYD_SOCKETS',
            'Several keyd instances on one PostgreSQL store (docs/keyd.md), each on its Unix socket, instead of `socket`: the server prefers the first and fails over to the next when one cannot be reached.',
            'none (`socket`)',
          ),
          addresses: list(
            'TRESOR_KEYD_ADDRESSES',
            'Several keyd instances on one PostgreSQL store (docs/keyd.md) over TCP with mutual TLS, `host:port` each, instead of `address`: the server prefers the first and fails over to the next when one cannot be reached.',
            'none (`address`)',
          ),
          clientCert: path('TRESOR_KEYD_CLIENT_CERT', 'Client certificate for keyd over TCP.'),
          clientKey: path('TRESOR_KEYD_CLIENT_KEY', 'Client private key for keyd over TCP.'),
          ca: path('TRESOR_KEYD_CA', 'CA certificate that keyd’s server certificate must chain to.'),
          servername: text(
            'TRESOR_KEYD_SERVERNAME',
            'Name expected in keyd’s certificate, when it differs from the address’s host.',
          ),
        },
        'How the server reaches keyd: the Unix socket, or `address` with mutual TLS (`clientCert`, `clientKey`, `ca` all required).',
      ),
    ),
    principalCacheMs: int(
      'TRESOR_PRINCIPAL_CACHE_MS',
      0,
      600_000,
      5_000,
      'How long a successful API key authentication is remembered (0: never). With several server processes on one PostgreSQL database it is also the bound within which every process refuses a revoked key or a closed tenant’s key should the change’s notification (LISTEN/NOTIFY) not reach it.',
    ),
    clusterSweepMs: int(
      'TRESOR_CLUSTER_SWEEP_MS',
      100,
      60_000,
      1_000,
      'With several server processes on one PostgreSQL database: how often the sequencer’s lease holder looks at every outbox, and every other process at the log, whatever LISTEN/NOTIFY said — the bound within which an event is sequenced, and a standby’s live stream follows, should a notification be lost. Also the period of every process’s check for closed tenants’ data keys. Unused on SQLite.',
    ),
    closeGraceDays: int(
      'TRESOR_CLOSE_GRACE_DAYS',
      0,
      3650,
      30,
      'Grace days of a close: after a contract ends before the tenant is closed, and after any close before keyd destroys the tenant’s key (cancellable meanwhile; the tenant serves nothing). 0 shreds at once.',
    ),
    backup: Type.Optional(
      section(
        {
          intervalMinutes: Type.Optional(
            setting(
              Type.Number({
                minimum: 0,
                maximum: 7 * 24 * 60,
                default: 360,
                description:
                  'Minutes between scheduled backups (360: four a day); 0 takes backups only on demand (`tresor backup now`). Fractions are allowed.',
              }),
              { env: 'TRESOR_BACKUP_INTERVAL_MINUTES' },
            ),
          ),
          destinations: Type.Optional(
            setting(
              Type.Array(BACKUP_DESTINATION, {
                minItems: 1,
                maxItems: 16,
                description:
                  'Where every backup is written, each with its own retention: `{"name", "kind": "folder", "path"}` or `{"name", "kind": "s3", "endpoint", "region", "bucket", "prefix", "forcePathStyle", "accessKeyIdFile", "secretAccessKeyFile", "timeoutSeconds"}` (S3 credentials only from files; `timeoutSeconds`, default 60, bounds one request), each with an optional `retention: {"keepAllDays": 2, "keepDailyDays": 35}`. Give two or more on different disks or sites. Relative paths are resolved against the config file’s folder (the working directory from the environment). In the environment: the list as JSON.',
              }),
              {
                env: 'TRESOR_BACKUP_DESTINATIONS',
                defaultText:
                  'two folders under the data folder, `<dataDir>/backups/a` and `<dataDir>/backups/b` (on the data’s own disk: `tresor server` warns)',
              },
            ),
          ),
          verifyIntervalMinutes: Type.Optional(
            setting(
              Type.Number({
                minimum: 0,
                maximum: 30 * 24 * 60,
                default: 1440,
                description:
                  'Minutes between scheduled re-verifications of the backups held (1440: daily): each run checks the least recently verified ones again (at most 4), as after a backup — trial restore at one destination, verifyBackup at the others. 0: only after each backup and on demand. Fractions are allowed.',
              }),
              { env: 'TRESOR_BACKUP_VERIFY_INTERVAL_MINUTES' },
            ),
          ),
          retryAttempts: int(
            'TRESOR_BACKUP_RETRY_ATTEMPTS',
            0,
            20,
            3,
            'How many more times a destination that failed is tried within one backup run.',
          ),
          retryBaseMs: int(
            'TRESOR_BACKUP_RETRY_BASE_MS',
            10,
            3_600_000,
            5_000,
            'Wait before the first retry of a failed destination; it doubles per further retry.',
          ),
          scratchDir: path(
            'TRESOR_BACKUP_SCRATCH_DIR',
            'A private folder (made 0700) for the backup’s snapshot and the trial restore’s scratch copy, each as large as the stores, removed after each use. On another disk than the data folder (or a tmpfs, if memory allows), their writes do not queue ahead of the live stores’ fsyncs: measured on one ext4 disk, the write rate during the trial restore rose from 0.53–0.92× to 0.75–1.01× of the rate without (docs/performance.md §h).',
            { defaultText: '`<dataDir>/backup-scratch`' },
          ),
        },
        'Backups (docs/backup.md): the schedule and the destinations.',
      ),
    ),
    probe: Type.Optional(
      section(
        {
          apiKeyFile: path(
            'TRESOR_PROBE_API_KEY_FILE',
            'A file holding the API key of a tenant admin of the probe’s own tenant: with it the server probes its own public URL end to end (docs/availability.md) and records availability; without it the probe job is off.',
            { defaultText: 'none (no probe job)' },
          ),
          intervalSeconds: int(
            'TRESOR_PROBE_INTERVAL_SECONDS',
            1,
            86_400,
            60,
            'Seconds between the server’s own probes.',
          ),
          url: text('TRESOR_PROBE_URL', 'The https:// origin the server probes.', {
            defaultText: '`publicUrl`, else `https://localhost:<port>`',
          }),
          caFile: path('TRESOR_PROBE_CA_FILE', 'The CA the probe trusts for that origin’s certificate.', {
            defaultText: 'the system’s CAs; the dev stack’s own CA under `tresor dev`',
          }),
        },
        'The server’s own availability probe (docs/availability.md).',
      ),
    ),
    alerts: Type.Optional(
      section(
        {
          windowMinutes: int(
            'TRESOR_ALERTS_WINDOW_MINUTES',
            1,
            24 * 60,
            15,
            'The window of the counting detectors (brute force, refusals without a grant): occurrences older than this no longer count.',
          ),
          bruteForceAccountFailures: int(
            'TRESOR_ALERTS_BRUTE_FORCE_ACCOUNT_FAILURES',
            1,
            1000,
            10,
            'Failed console sign-ins of one account within the window that raise `brute-force.account` (each further one bumps it).',
          ),
          bruteForceAddressFailures: int(
            'TRESOR_ALERTS_BRUTE_FORCE_ADDRESS_FAILURES',
            1,
            1000,
            20,
            'Failed console sign-ins from one client address within the window that raise `brute-force.address`.',
          ),
          noGrantRefusals: int(
            'TRESOR_ALERTS_NO_GRANT_REFUSALS',
            1,
            1000,
            1,
            'Refusals of one staff member on a tenant-data route (no live grant) within the window that raise `access.refused-no-grant`.',
          ),
          staffRecordReads: int(
            'TRESOR_ALERTS_STAFF_RECORD_READS',
            1,
            10_000_000,
            500,
            'Records one staff member reads through grants within the window that raise `staff.bulk-reads`.',
          ),
          staffTenants: int(
            'TRESOR_ALERTS_STAFF_TENANTS',
            1,
            100_000,
            5,
            'Distinct tenants one staff member reaches through grants within the window that raise `staff.many-tenants`.',
          ),
          exports: int(
            'TRESOR_ALERTS_EXPORTS',
            1,
            10_000,
            3,
            'Full exports of one tenant within the window that raise `export.volume`.',
          ),
          checkIntervalSeconds: int(
            'TRESOR_ALERTS_CHECK_INTERVAL_SECONDS',
            1,
            3600,
            60,
            'Period of the state checks: keyd sealed or unreachable, the audit log unable to record, backups overdue, the certificate expiring.',
          ),
          backupOverdueMinutes: int(
            'TRESOR_ALERTS_BACKUP_OVERDUE_MINUTES',
            1,
            30 * 24 * 60,
            720,
            'Minutes without a completed backup (since the newest, or since the start before any) that raise `backup.overdue`; checked only while scheduled backups are on.',
          ),
          certificateExpiringDays: int(
            'TRESOR_ALERTS_CERTIFICATE_EXPIRING_DAYS',
            1,
            365,
            14,
            'Days before the TLS certificate’s end from which `certificate.expiring` is raised.',
          ),
          retryAttempts: int(
            'TRESOR_ALERTS_RETRY_ATTEMPTS',
            0,
            20,
            5,
            'How many more times a failed delivery (webhook or mail) of an alert is tried.',
          ),
          retryBaseMs: int(
            'TRESOR_ALERTS_RETRY_BASE_MS',
            10,
            3_600_000,
            2_000,
            'Wait before the first retry of a failed delivery; it doubles per further retry.',
          ),
          webhook: Type.Optional(
            section(
              {
                url: text(
                  'TRESOR_ALERTS_WEBHOOK_URL',
                  'The https:// URL each opened alert is POSTed to, signed with `Tresor-Signature: t=<unix>,v1=<hex HMAC-SHA256 over "<t>.<body>">`.',
                  { defaultText: 'none (no webhook)' },
                ),
                ...secret(
                  'secret',
                  'TRESOR_ALERTS_WEBHOOK_SECRET',
                  'The webhook’s HMAC key (at least 32 bytes).',
                ),
                ca: path(
                  'TRESOR_ALERTS_WEBHOOK_CA',
                  'PEM CA certificate(s) the webhook’s server certificate must chain to, instead of the system roots.',
                ),
              },
              'The alerts webhook (docs/alerts.md): `url` and `secret` together, or neither.',
            ),
          ),
          mail: Type.Optional(
            section(
              {
                host: text('TRESOR_ALERTS_SMTP_HOST', 'The SMTP server alerts are mailed through.', {
                  defaultText: 'none (no mail)',
                }),
                port: int('TRESOR_ALERTS_SMTP_PORT', 1, 65_535, 587, 'The SMTP server’s port.'),
                tls: Type.Optional(
                  setting(
                    Type.Enum(['starttls', 'implicit', 'none'], {
                      default: 'starttls',
                      description:
                        '`starttls` (required, the mail is not sent without it), `implicit` (SMTPS, port 465) or `none` (only for a relay on the same host).',
                    }),
                    { env: 'TRESOR_ALERTS_SMTP_TLS' },
                  ),
                ),
                from: text('TRESOR_ALERTS_MAIL_FROM', 'The sender address of alert mails.'),
                to: list('TRESOR_ALERTS_MAIL_TO', 'The recipients of alert mails.', 'none'),
                user: text('TRESOR_ALERTS_SMTP_USER', 'The SMTP user name, when the server wants one.'),
                ...secret('password', 'TRESOR_ALERTS_SMTP_PASSWORD', 'The SMTP password.'),
                ca: path(
                  'TRESOR_ALERTS_SMTP_CA',
                  'PEM CA certificate(s) the SMTP server’s certificate must chain to, instead of the system roots.',
                ),
              },
              'Alert mails over SMTP (docs/alerts.md): `host`, `from` and `to` together, or none of them.',
            ),
          ),
        },
        'Alerts (docs/alerts.md): the detectors’ thresholds and where opened alerts are delivered.',
      ),
    ),
    logLevel: Type.Optional(
      setting(Type.Enum([...LOG_LEVELS], { default: 'info', description: 'Log level.' }), {
        env: 'TRESOR_LOG_LEVEL',
        flag: 'logLevel',
      }),
    ),
    audit: Type.Optional(
      section(
        {
          origin: text(
            'TRESOR_AUDIT_ORIGIN',
            'The log’s unique name in its checkpoints (C2SP tlog-checkpoint origin; also the checkpoint key’s name): printable ASCII, no spaces or `+`. Fixed at the first start and never changed after; a later start with another value refuses to start.',
            {
              defaultText:
                'generated at the first start: `<host of publicUrl, or tresor>/audit/<8 random hex>`',
            },
          ),
          witnessDir: path(
            'TRESOR_AUDIT_WITNESS_DIR',
            'Where the latest checkpoints are kept outside the store (rollback detection).',
            { defaultText: '`<dataDir>/witness`' },
          ),
          checkpointIntervalMs: int(
            'TRESOR_AUDIT_CHECKPOINT_INTERVAL_MS',
            50,
            1000,
            1000,
            'Period of checkpoint signing while entries arrive.',
          ),
          verifyIntervalMinutes: Type.Optional(
            setting(
              Type.Number({
                minimum: 0,
                maximum: 7 * 24 * 60,
                default: 1440,
                description:
                  'Minutes between re-verifications of the live audit log against the latest witnessed checkpoint (every entry, the tree, the checkpoints; a failure is audited and raises `audit.verification-failed`); 0 turns them off. Fractions are allowed.',
              }),
              { env: 'TRESOR_AUDIT_VERIFY_INTERVAL_MINUTES' },
            ),
          ),
          signBoundMs: int(
            'TRESOR_AUDIT_SIGN_BOUND_MS',
            1000,
            3_600_000,
            10_000,
            'Longest time an entry may stay unsigned (keyd down) before data routes answer 503.',
          ),
          diskWarnBytes: int(
            'TRESOR_AUDIT_DISK_WARN_BYTES',
            0,
            Number.MAX_SAFE_INTEGER,
            1024 ** 3,
            'Free bytes under which the data folder’s filesystem is reported low.',
          ),
          diskReserveBytes: int(
            'TRESOR_AUDIT_DISK_RESERVE_BYTES',
            0,
            1024 ** 4,
            64 * 1024 ** 2,
            'Space kept in a reserve file, released when the disk fills so refusals can still be recorded.',
          ),
          sinksFile: path('TRESOR_AUDIT_SINKS_FILE', 'JSON file of audit sinks.', { defaultText: 'none' }),
          archiveKeepEntries: int(
            'TRESOR_AUDIT_ARCHIVE_KEEP_ENTRIES',
            0,
            Number.MAX_SAFE_INTEGER,
            undefined,
            'Turns archiving on: the newest this many entries stay out of sealed segments; older full tiles are sealed, encrypted and signed into segments on every backup destination (docs/audit.md, "Sealed segments"). Unset: no archiving.',
          ),
          archiveSegmentTiles: int(
            'TRESOR_AUDIT_ARCHIVE_SEGMENT_TILES',
            1,
            4096,
            64,
            'Full tiles of 256 entries per sealed segment.',
          ),
          archivePrune: Type.Optional(
            setting(
              Type.Boolean({
                default: false,
                description:
                  'When archiving is on: after each archiving pass, the live log drops the entries (and their lower tree nodes) that sealed segments on every destination hold, once each segment is read back and checked (docs/audit.md, "Sealed segments"). Off unless set: deleting the live copy of the log is the operator’s decision, and from then on proofs, verification, export and restores of the older part need the destinations and keyd.',
              }),
              { env: 'TRESOR_AUDIT_ARCHIVE_PRUNE' },
            ),
          ),
          archiveIntervalMinutes: int(
            'TRESOR_AUDIT_ARCHIVE_INTERVAL_MINUTES',
            1,
            7 * 24 * 60,
            60,
            'Minutes between archiving passes (when archiving is on).',
          ),
        },
        'The audit log.',
      ),
    ),
    metrics: Type.Optional(
      section(
        {
          port: Type.Optional(
            setting(
              Type.Integer({
                minimum: 0,
                maximum: 65535,
                description:
                  'Port of the metrics listener: plain HTTP, `GET /metrics` only, no token and no audit entry (docs/monitoring.md). Off unless set.',
              }),
              { env: 'TRESOR_METRICS_PORT', defaultText: 'none (off)' },
            ),
          ),
          host: Type.Optional(
            setting(
              Type.String({
                minLength: 1,
                pattern: '\\S',
                default: '127.0.0.1',
                description:
                  'Address of the metrics listener. Anyone who reaches it reads the metrics: keep it on loopback or a monitoring network.',
              }),
              { env: 'TRESOR_METRICS_HOST' },
            ),
          ),
        },
        'The metrics listener (the HTTPS `GET /metrics` with a `metrics:read` token is always there).',
      ),
    ),
    access: Type.Optional(
      section(
        {
          defaultGrantMinutes: int(
            'TRESOR_ACCESS_DEFAULT_GRANT_MINUTES',
            1,
            7 * 24 * 60,
            60,
            'A staff grant’s length when the request names none; at most `maxGrantMinutes`.',
          ),
          maxGrantMinutes: int(
            'TRESOR_ACCESS_MAX_GRANT_MINUTES',
            1,
            7 * 24 * 60,
            480,
            'The hard maximum of a grant; a longer request is refused, not shortened.',
          ),
        },
        'Staff access grants.',
      ),
    ),
    console: Type.Optional(
      section(
        {
          rpId: text(
            'TRESOR_CONSOLE_RP_ID',
            'WebAuthn relying party ID: the console’s host name (never an IP address).',
            { defaultText: 'the host of `publicUrl`, else `host` (`localhost` for an address)' },
          ),
          origins: list(
            'TRESOR_CONSOLE_ORIGINS',
            'Origins the console is served from, exactly as browsers write them (`https://host[:port]`).',
            '`publicUrl`, else `https://<rpId>:<port>`',
          ),
          sessions: Type.Optional(
            section(
              {
                operatorIdleMs: int(
                  'TRESOR_SESSION_OPERATOR_IDLE_MS',
                  1000,
                  DAY_MS,
                  15 * MINUTE,
                  'Idle timeout of a staff session.',
                ),
                operatorAbsoluteMs: int(
                  'TRESOR_SESSION_OPERATOR_ABSOLUTE_MS',
                  1000,
                  7 * DAY_MS,
                  12 * 60 * MINUTE,
                  'Absolute timeout of a staff session; at least its idle timeout.',
                ),
                customerIdleMs: int(
                  'TRESOR_SESSION_CUSTOMER_IDLE_MS',
                  1000,
                  DAY_MS,
                  30 * MINUTE,
                  'Idle timeout of a customer session.',
                ),
                customerAbsoluteMs: int(
                  'TRESOR_SESSION_CUSTOMER_ABSOLUTE_MS',
                  1000,
                  7 * DAY_MS,
                  12 * 60 * MINUTE,
                  'Absolute timeout of a customer session; at least its idle timeout.',
                ),
              },
              'Console session timeouts in milliseconds (NIST SP 800-63B §7.2).',
            ),
          ),
          login: Type.Optional(
            section(
              {
                delayAfter: int(
                  'TRESOR_LOGIN_DELAY_AFTER',
                  0,
                  100,
                  3,
                  'Failed sign-ins of an account before delays start.',
                ),
                baseDelayMs: int(
                  'TRESOR_LOGIN_BASE_DELAY_MS',
                  0,
                  60_000,
                  1000,
                  'First delay; it doubles per further failure.',
                ),
                lockoutThreshold: int(
                  'TRESOR_LOGIN_LOCKOUT_THRESHOLD',
                  1,
                  10,
                  10,
                  'Failed sign-ins after which the account is locked (at most 10).',
                ),
                lockoutMs: int(
                  'TRESOR_LOGIN_LOCKOUT_MS',
                  1000,
                  DAY_MS,
                  15 * MINUTE,
                  'How long a lockout lasts.',
                ),
                addressDelayAfter: int(
                  'TRESOR_LOGIN_ADDRESS_DELAY_AFTER',
                  1,
                  100_000,
                  20,
                  'Distinct accounts that failed to sign in from one address within an hour before every attempt from it is delayed (against password spraying); one account’s repeated failures count once here, and lock only that account.',
                ),
              },
              'Sign-in throttle.',
            ),
          ),
        },
        'The web console’s sign-in: WebAuthn relying party, session timeouts, sign-in throttle.',
      ),
    ),
  },
  'Settings of `tresor server`.',
);

/**
 * The data database. Its URL may carry a password: it is never logged, audited or put in an error
 * (redactedServerConfig and redactDatabaseUrl replace the password), and has no flag (command lines
 * are visible to every user of the machine).
 */
export const DATABASE_SECTION = section(
  {
    url: Type.Optional(
      setting(
        Type.String({
          minLength: 1,
          pattern: '\\S',
          description:
            'The PostgreSQL database holding the control store, the audit log and one schema per tenant: `postgres://user[:password]@host[:port]/database` (created with C collation, docs/operations.md). Without it everything lives in SQLite files in the data folder. The password is redacted wherever the URL is shown; it may also come from `PGPASSWORD`.',
        }),
        { env: 'TRESOR_DATABASE_URL', defaultText: 'none (SQLite in the data folder)' },
      ),
    ),
  },
  'Where the server keeps its data: SQLite files in the data folder (default) or a PostgreSQL database.',
);

export const CONFIG_FILE_SCHEMA = section(
  {
    dataDir: Type.Optional(
      setting(
        Type.String({
          minLength: 1,
          pattern: '\\S',
          description: 'The data folder (stores, witness, development TLS).',
        }),
        {
          env: 'TRESOR_DATA_DIR',
          flag: 'dataDir',
          path: true,
          defaultText: '`./.tresor-data`',
        },
      ),
    ),
    database: Type.Optional(DATABASE_SECTION),
    server: Type.Optional(SERVER_SECTION),
    keyd: Type.Optional(KEYD_SECTION),
  },
  'The config file (JSON), named by `--config` or `TRESOR_CONFIG`.',
);
