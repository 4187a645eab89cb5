/**
 * The `keyd` section of the config file, in the same vocabulary as the server's (settings.ts), so
 * that `tresor config check` validates it and docs/configuration.md lists keyd's TRESOR_KEYD_*
 * variables beside the server's. Keys and variables are the ones `resolveKeydConfig`
 * (src/keyd/config.ts) reads today; keyd reads relative paths against the working directory.
 *
 * keyd's secrets (passphrase, PKCS#11 PIN) exist only as files or standard input, never as values.
 * Flags are listed only where keyd's command line has them today.
 */
import Type from 'typebox';
import { BACKUP_DESTINATION } from './destination-schema.ts';
import { section, setting } from './settings.ts';

const text = (env: string, description: string, more: { flag?: string; defaultText?: string } = {}) =>
  Type.Optional(setting(Type.String({ minLength: 1, pattern: '\\S', description }), { env, ...more }));
const file = (env: string, description: string, more: { secret?: 'file' } = {}) =>
  Type.Optional(
    setting(Type.String({ minLength: 1, pattern: '\\S', description }), { env, path: true, ...more }),
  );

export const KEYD_SECTION = section(
  {
    dir: Type.Optional(
      setting(
        Type.String({
          minLength: 1,
          pattern: '\\S',
          description: 'keyd’s own folder (key store, sealed root key).',
        }),
        {
          env: 'TRESOR_KEYD_DIR',
          flag: 'dir',
          path: true,
          defaultText: '`<TRESOR_DATA_DIR or ./.tresor-data>/keyd`',
        },
      ),
    ),
    provider: Type.Optional(
      setting(
        Type.Enum(['dev-file', 'passphrase', 'shamir', 'pkcs11'], {
          description:
            'Where the root key comes from. No default: keyd init and serve refuse to start without one. `dev-file` keeps the root key in a plain file and needs `insecureDevKeyFile`; never on TCP.',
        }),
        { env: 'TRESOR_KEYD_PROVIDER', flag: 'provider' },
      ),
    ),
    insecureDevKeyFile: Type.Optional(
      setting(
        Type.Boolean({
          description:
            'Says, on purpose, that the plain dev-file root key may be used (development only; refused on a TCP listener).',
        }),
        { env: 'TRESOR_KEYD_INSECURE_DEV_KEY_FILE', flag: 'insecureDevKeyFile', defaultText: '`false`' },
      ),
    ),
    socket: Type.Optional(
      setting(
        Type.String({
          minLength: 1,
          pattern: '\\S',
          description: 'Unix socket keyd listens on (mode 0600).',
        }),
        {
          env: 'TRESOR_KEYD_SOCKET',
          flag: 'socket',
          path: true,
          defaultText: '`<dir>/keyd.sock`',
        },
      ),
    ),
    listen: text(
      'TRESOR_KEYD_LISTEN',
      'Listen on TCP with mutual TLS instead of the socket: `host:port` (needs `tlsCert`, `tlsKey`, `tlsCa`, `allowlist`).',
      { flag: 'listen', defaultText: 'none (the socket)' },
    ),
    tlsCert: file('TRESOR_KEYD_TLS_CERT', 'keyd’s server certificate for TCP.'),
    tlsKey: file('TRESOR_KEYD_TLS_KEY', 'keyd’s server private key for TCP.'),
    tlsCa: file('TRESOR_KEYD_TLS_CA', 'CA that client certificates must chain to.'),
    allowlist: file(
      'TRESOR_KEYD_ALLOWLIST',
      'JSON list of allowed client certificates (`fingerprint256`, `name`, `role`: admin or server).',
    ),
    passphraseFile: file(
      'TRESOR_KEYD_PASSPHRASE_FILE',
      'File holding the root-key passphrase (passphrase provider) for unattended unseal; otherwise `tresor keyd unseal`.',
      { secret: 'file' },
    ),
    pkcs11Library: text('TRESOR_KEYD_PKCS11_LIBRARY', 'PKCS#11 module (pkcs11 provider).', {
      defaultText: '`/usr/lib/softhsm/libsofthsm2.so`',
    }),
    pkcs11Token: text('TRESOR_KEYD_PKCS11_TOKEN', 'PKCS#11 token label.', { defaultText: '`tresor`' }),
    pkcs11PinFile: file('TRESOR_KEYD_PKCS11_PIN_FILE', 'File holding the PKCS#11 user PIN.', {
      secret: 'file',
    }),
    tenantKeyCryptoperiodDays: Type.Optional(
      setting(
        Type.Number({
          minimum: 1,
          default: 365,
          description: 'Tenant key cryptoperiod in days (NIST SP 800-57 Part 1 §5.3).',
        }),
        { env: 'TRESOR_KEYD_TENANT_KEY_DAYS' },
      ),
    ),
    destroyGraceSeconds: Type.Optional(
      setting(
        Type.Number({
          minimum: 0,
          default: 7 * 86400,
          description: 'Grace in seconds before a scheduled key destruction completes.',
        }),
        { env: 'TRESOR_KEYD_DESTROY_GRACE_SECONDS' },
      ),
    ),
    maintenanceIntervalSeconds: Type.Optional(
      setting(
        Type.Number({
          minimum: 0,
          default: 3600,
          description: 'Seconds between keyd’s maintenance passes; 0: never on a timer.',
        }),
        { env: 'TRESOR_KEYD_MAINTENANCE_SECONDS' },
      ),
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
                  'Minutes between keyd’s own backups of its store (360: four a day); 0 takes them only on demand (`tresor keyd backup now`). Fractions are allowed. The deletion certificate’s `keydBackupsAgedOutBy` adds one interval to the retention.',
              }),
              { env: 'TRESOR_KEYD_BACKUP_INTERVAL_MINUTES' },
            ),
          ),
          destinations: Type.Optional(
            setting(
              Type.Array(BACKUP_DESTINATION, {
                minItems: 1,
                maxItems: 16,
                description:
                  'Where keyd’s own backups go, apart from the data’s: the same shapes as `server.backup.destinations` (`folder` or `s3`, S3 credentials only from files), each with an optional `retention` — for keyd `{"keepAllDays": 1, "keepDailyDays": 7}` by default, shorter than the data’s. Relative paths are resolved against the config file’s folder (the working directory from the environment). In the environment: the list as JSON.',
              }),
              {
                env: 'TRESOR_KEYD_BACKUP_DESTINATIONS',
                defaultText:
                  'two folders under keyd’s folder, `<dir>/backups/a` and `<dir>/backups/b` (on keyd’s own disk: keyd warns at start)',
              },
            ),
          ),
        },
        'keyd’s own backups (docs/backup.md, “keyd’s own backups”): the schedule and the destinations.',
      ),
    ),
    database: Type.Optional(
      section(
        {
          url: Type.Optional(
            setting(
              Type.String({
                minLength: 1,
                pattern: '\\S',
                description:
                  'keyd’s key store in its own PostgreSQL database (postgres://user:password@host/database): a database and role apart from the data’s — keyd refuses `database.url`’s database and any database holding Tresor’s data. Several keyd instances may share it (docs/keyd.md, “Several keyd instances”). keyd then takes no backups of its own: back the database up with PostgreSQL’s tools. Secret-bearing: never shown.',
              }),
              { env: 'TRESOR_KEYD_DATABASE_URL', defaultText: 'none (the SQLite store in keyd’s folder)' },
            ),
          ),
        },
        'keyd’s key store in PostgreSQL, shared by several keyd instances.',
      ),
    ),
  },
  'Settings of `tresor keyd`, the key service.',
);
