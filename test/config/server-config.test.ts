/**
 * Server configuration: flags > TRESOR_* environment > config file > defaults, validated at once
 * with every problem named, secrets only from the environment or *_FILE, redacted for display;
 * and the development TLS material made once and reused.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureDevTls } from '../../src/config/dev-tls.ts';
import {
  DEFAULT_BODY_LIMIT,
  DEFAULT_TIMEOUTS,
  redactedServerConfig,
  resolveServerConfig,
} from '../../src/config/server-config.ts';
import { problemsOf, writeConfigFile } from './fixture.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tresor-config-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const configFile = (content: unknown) => writeConfigFile(dir, content);

describe('server config', () => {
  it('has safe defaults: loopback, 8443, dev TLS in the data dir, 1 MiB bodies, short timeouts', () => {
    const c = resolveServerConfig({}, {});
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.port, 8443);
    assert.equal(c.dataDir, resolve('.tresor-data'));
    assert.deepEqual(c.tls, { kind: 'dev', dir: resolve('.tresor-data', 'tls') });
    assert.equal(c.bodyLimit, DEFAULT_BODY_LIMIT);
    assert.deepEqual(c.timeouts, DEFAULT_TIMEOUTS);
    assert.ok(c.timeouts.headersMs <= 10_000 && c.timeouts.requestMs <= 30_000);
    assert.deepEqual(c.keyd, { kind: 'unix', socketPath: resolve('.tresor-data', 'keyd', 'keyd.sock') });
    assert.equal(c.redirectPort, undefined);
    assert.deepEqual(c.trustProxy, []);
    assert.equal(c.closeGraceDays, 30);
  });

  it('derives the console WebAuthn RP and origins from the public URL or host, with 15 min / 30 min / 12 h sessions', () => {
    const dev = resolveServerConfig({}, {});
    assert.equal(dev.console.rpId, 'localhost');
    assert.deepEqual(dev.console.origins, ['https://localhost:8443']);
    assert.deepEqual(dev.console.sessions, {
      operatorIdleMs: 15 * 60_000,
      operatorAbsoluteMs: 12 * 3_600_000,
      customerIdleMs: 30 * 60_000,
      customerAbsoluteMs: 12 * 3_600_000,
    });
    assert.equal(dev.console.login.lockoutThreshold, 10);
    const prod = resolveServerConfig({}, { TRESOR_PUBLIC_URL: 'https://vault.example.com' });
    assert.equal(prod.console.rpId, 'vault.example.com');
    assert.deepEqual(prod.console.origins, ['https://vault.example.com']);
    const set = resolveServerConfig(
      {},
      {
        TRESOR_CONSOLE_RP_ID: 'example.com',
        TRESOR_CONSOLE_ORIGINS: 'https://a.example.com, https://b.example.com:8443',
        TRESOR_SESSION_OPERATOR_IDLE_MS: '600000',
        TRESOR_LOGIN_LOCKOUT_THRESHOLD: '5',
      },
    );
    assert.deepEqual(set.console.origins, ['https://a.example.com', 'https://b.example.com:8443']);
    assert.equal(set.console.sessions.operatorIdleMs, 600_000);
    assert.equal(set.console.login.lockoutThreshold, 5);
    assert.throws(
      () =>
        resolveServerConfig(
          {},
          {
            TRESOR_CONSOLE_RP_ID: '10.0.0.1',
            TRESOR_CONSOLE_ORIGINS: 'http://insecure.example.com',
            TRESOR_LOGIN_LOCKOUT_THRESHOLD: '11',
            TRESOR_SESSION_CUSTOMER_IDLE_MS: '86400000',
            TRESOR_SESSION_CUSTOMER_ABSOLUTE_MS: '3600000',
          },
        ),
      (err: { problems?: string[] }) => (err.problems?.length ?? 0) === 4,
    );
  });

  it('takes flags over the environment over the config file over defaults', () => {
    const file = configFile({
      dataDir: 'from-file',
      server: { port: 9001, host: '10.0.0.1', bodyLimit: 4096 },
    });
    const env = { TRESOR_CONFIG: file, TRESOR_PORT: '9002', TRESOR_HOST: '10.0.0.2' };
    const c = resolveServerConfig({ port: '9003' }, env);
    assert.equal(c.port, 9003);
    assert.equal(c.host, '10.0.0.2');
    assert.equal(c.bodyLimit, 4096);
    assert.equal(c.dataDir, join(dir, 'from-file'), 'file paths are relative to the file');
    assert.equal(resolveServerConfig({}, env).port, 9002);
    assert.equal(resolveServerConfig({}, { TRESOR_CONFIG: file }).port, 9001);
  });

  it('reports every problem at once, each naming its source', () => {
    const file = configFile({
      server: { port: 'eighty', tls: { certFile: 'c.pem' }, timeouts: { headersMs: 5 }, colour: 'red' },
    });
    const problems = problemsOf(() =>
      resolveServerConfig(
        { config: file },
        { TRESOR_BODY_LIMIT: '-1', TRESOR_LOG_LEVEL: 'loud', TRESOR_TRUST_PROXY: '10.0.0.0/99' },
      ),
    );
    const text = problems.join('\n');
    assert.match(text, /config file server\.port must be an integer/);
    assert.match(text, /env TRESOR_BODY_LIMIT must be an integer/);
    assert.match(text, /env TRESOR_LOG_LEVEL must be one of/);
    assert.match(text, /unknown setting server\.colour/);
    assert.match(text, /TLS needs both a certificate file/);
    assert.match(text, /server\.timeouts\.headersMs must be an integer from 1000/);
    assert.match(text, /trustProxy entry "10\.0\.0\.0\/99"/);
    assert.ok(problems.length >= 7);
  });

  it('fails clearly on a missing or unreadable config file', () => {
    assert.match(
      problemsOf(() => resolveServerConfig({ config: join(dir, 'nope.json') }, {}))[0] ?? '',
      /does not exist/,
    );
    assert.match(
      problemsOf(() => resolveServerConfig({ config: configFile('{oops') }, {}))[0] ?? '',
      /not readable JSON/,
    );
  });

  it('uses certificate files when given, relative to the working directory from flags', () => {
    const c = resolveServerConfig({ tlsCert: 'a/cert.pem', tlsKey: 'a/key.pem' }, {});
    assert.deepEqual(c.tls, {
      kind: 'files',
      certFile: resolve('a/cert.pem'),
      keyFile: resolve('a/key.pem'),
    });
  });

  it('reads the key passphrase from a *_FILE, refuses it in the config file, and redacts it', () => {
    const secretFile = join(dir, 'passphrase');
    writeFileSync(secretFile, 'correct horse\n', { mode: 0o600 });
    const c = resolveServerConfig(
      { tlsCert: 'c.pem', tlsKey: 'k.pem' },
      { TRESOR_TLS_KEY_PASSPHRASE_FILE: secretFile },
    );
    assert.equal(c.tls.kind === 'files' && c.tls.keyPassphrase, 'correct horse');
    const shown = JSON.stringify(redactedServerConfig(c));
    assert.doesNotMatch(shown, /correct horse/);
    assert.match(shown, /\[redacted\]/);
    assert.equal(c.tls.kind === 'files' && c.tls.keyPassphrase, 'correct horse', 'redaction copies');

    const inFile = configFile({ server: { tls: { certFile: 'c', keyFile: 'k', keyPassphrase: 'oops' } } });
    assert.match(
      problemsOf(() => resolveServerConfig({ config: inFile }, {})).join(),
      /secrets do not belong in the config file/,
    );
  });

  it('configures keyd over mutual TLS only with a client certificate, key and CA', () => {
    assert.match(
      problemsOf(() => resolveServerConfig({}, { TRESOR_KEYD_ADDRESS: 'keyd.internal:7443' })).join(),
      /mutual TLS/,
    );
    const c = resolveServerConfig(
      {},
      {
        TRESOR_KEYD_ADDRESS: '[fd00::1]:7443',
        TRESOR_KEYD_CLIENT_CERT: 'c.pem',
        TRESOR_KEYD_CLIENT_KEY: 'k.pem',
        TRESOR_KEYD_CA: 'ca.pem',
      },
    );
    assert.deepEqual(c.keyd, {
      kind: 'tls',
      host: 'fd00::1',
      port: 7443,
      certFile: resolve('c.pem'),
      keyFile: resolve('k.pem'),
      caFile: resolve('ca.pem'),
    });
  });

  it('lists several keyd instances (sockets, or addresses over mutual TLS), the preferred first', () => {
    const tls = resolveServerConfig(
      {},
      {
        TRESOR_KEYD_ADDRESSES: 'keyd-a.internal:7443,[fd00::2]:7444',
        TRESOR_KEYD_CLIENT_CERT: 'c.pem',
        TRESOR_KEYD_CLIENT_KEY: 'k.pem',
        TRESOR_KEYD_CA: 'ca.pem',
      },
    );
    assert.deepEqual(tls.keyd, {
      kind: 'tls',
      host: 'keyd-a.internal',
      port: 7443,
      moreAddresses: [{ host: 'fd00::2', port: 7444 }],
      certFile: resolve('c.pem'),
      keyFile: resolve('k.pem'),
      caFile: resolve('ca.pem'),
    });
    const unix = resolveServerConfig({}, { TRESOR_KEYD_SOCKETS: '/run/keyd-a.sock,/run/keyd-b.sock' });
    assert.deepEqual(unix.keyd, {
      kind: 'unix',
      socketPath: '/run/keyd-a.sock',
      moreSocketPaths: ['/run/keyd-b.sock'],
    });
    assert.match(
      problemsOf(() =>
        resolveServerConfig({}, { TRESOR_KEYD_SOCKETS: '/run/a.sock', TRESOR_KEYD_SOCKET: '/run/b.sock' }),
      ).join(),
      /set one of them/,
    );
    assert.match(
      problemsOf(() =>
        resolveServerConfig(
          {},
          {
            TRESOR_KEYD_ADDRESSES: 'keyd-a.internal:7443,nope',
            TRESOR_KEYD_CLIENT_CERT: 'c.pem',
            TRESOR_KEYD_CLIENT_KEY: 'k.pem',
            TRESOR_KEYD_CA: 'ca.pem',
          },
        ),
      ).join(),
      /must be host:port/,
    );
  });

  it('accepts a public URL only as an https origin, and a redirect port apart from the port', () => {
    assert.equal(
      resolveServerConfig({}, { TRESOR_PUBLIC_URL: 'https://vault.example.com/' }).publicUrl,
      'https://vault.example.com',
    );
    for (const bad of [
      'http://vault.example.com',
      'https://vault.example.com/x',
      'https://u:p@vault.example.com',
    ]) {
      assert.match(
        problemsOf(() => resolveServerConfig({}, { TRESOR_PUBLIC_URL: bad })).join(),
        /https:\/\/ origin/,
      );
    }
    assert.match(
      problemsOf(() => resolveServerConfig({ port: '8443', redirectPort: '8443' }, {})).join(),
      /must differ/,
    );
    assert.equal(resolveServerConfig({ redirectPort: '8080' }, {}).redirectPort, 8080);
  });
});

describe('backup config', () => {
  it('defaults to backups four times a day into two folders under the data folder, flagged as on its disk', () => {
    const c = resolveServerConfig({ dataDir: join(dir, 'data') }, {});
    assert.equal(c.backup.intervalMinutes, 360);
    assert.equal(c.backup.defaultDestinations, true);
    const retention = { keepAllDays: 2, keepDailyDays: 35 };
    assert.deepEqual(c.backup.destinations, [
      { name: 'a', kind: 'folder', path: join(dir, 'data', 'backups', 'a'), retention },
      { name: 'b', kind: 'folder', path: join(dir, 'data', 'backups', 'b'), retention },
    ]);
    assert.equal(c.backup.scratchDir, join(dir, 'data', 'backup-scratch'));
    const moved = resolveServerConfig(
      { dataDir: join(dir, 'data') },
      { TRESOR_BACKUP_SCRATCH_DIR: '/dev/shm/tresor-scratch' },
    );
    assert.equal(
      moved.backup.scratchDir,
      '/dev/shm/tresor-scratch',
      'the scratch folder may live on another disk',
    );
  });

  it('takes destinations from the config file or as JSON from the environment, with their retention', () => {
    const destinations = [
      { name: 'disk', kind: 'folder', path: '/mnt/b', retention: { keepAllDays: 1 } },
      {
        name: 'site',
        kind: 's3',
        region: 'eu-1',
        bucket: 'tresor',
        accessKeyIdFile: '/etc/k',
        secretAccessKeyFile: '/etc/s',
      },
    ];
    const fromFile = resolveServerConfig(
      { config: configFile({ server: { backup: { intervalMinutes: 0, destinations } } }) },
      {},
    );
    const fromEnv = resolveServerConfig(
      {},
      { TRESOR_BACKUP_DESTINATIONS: JSON.stringify(destinations), TRESOR_BACKUP_INTERVAL_MINUTES: '0' },
    );
    for (const c of [fromFile, fromEnv]) {
      assert.equal(c.backup.intervalMinutes, 0);
      assert.equal(c.backup.defaultDestinations, false);
      assert.deepEqual(c.backup.destinations, [
        { name: 'disk', kind: 'folder', path: '/mnt/b', retention: { keepAllDays: 1, keepDailyDays: 35 } },
        {
          name: 'site',
          kind: 's3',
          region: 'eu-1',
          bucket: 'tresor',
          prefix: '',
          forcePathStyle: false,
          accessKeyIdFile: '/etc/k',
          secretAccessKeyFile: '/etc/s',
          timeoutSeconds: 60,
          retention: { keepAllDays: 2, keepDailyDays: 35 },
        },
      ]);
    }
  });

  it('refuses unknown kinds and keys, a secret in the file, twice the same name, broken JSON and negative intervals', () => {
    const fileProblems = problemsOf(() =>
      resolveServerConfig(
        {
          config: configFile({
            server: {
              backup: {
                destinations: [
                  { name: 'x', kind: 'tape', path: '/t' },
                  {
                    name: 'y',
                    kind: 's3',
                    region: 'r',
                    bucket: 'b',
                    accessKeyIdFile: '/k',
                    secretAccessKey: 'v',
                  },
                ],
              },
            },
          }),
        },
        {},
      ),
    );
    assert.match(fileProblems.join('\n'), /server\.backup\.destinations/);
    assert.equal(fileProblems.join('\n').includes('"v"'), false, 'a value is never repeated');
    const twice = problemsOf(() =>
      resolveServerConfig(
        {},
        {
          TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
            { name: 'a', kind: 'folder', path: '/a' },
            { name: 'a', kind: 'folder', path: '/b' },
          ]),
        },
      ),
    );
    assert.match(twice.join('\n'), /backup destination name "a" is used twice/);
    const env = problemsOf(() =>
      resolveServerConfig(
        {},
        { TRESOR_BACKUP_DESTINATIONS: '[{"name":', TRESOR_BACKUP_INTERVAL_MINUTES: '-1' },
      ),
    );
    assert.match(env.join('\n'), /env TRESOR_BACKUP_DESTINATIONS must be a list of objects/);
    assert.match(env.join('\n'), /env TRESOR_BACKUP_INTERVAL_MINUTES must be a number from 0/);
  });
});

describe('development TLS', () => {
  it('makes a CA and a localhost certificate once, keys 0600 in a 0700 folder, and reuses them', async () => {
    const dataDir = join(dir, 'data');
    const first = await ensureDevTls(dataDir);
    assert.equal(statSync(join(dataDir, 'tls')).mode & 0o777, 0o700);
    assert.equal(statSync(first.keyFile).mode & 0o777, 0o600);
    assert.equal(statSync(join(dataDir, 'tls', 'ca-key.pem')).mode & 0o777, 0o600);
    const cert = new X509Certificate(readFileSync(first.certFile));
    assert.ok(cert.checkIssued(new X509Certificate(readFileSync(first.caFile))));
    assert.equal(cert.checkHost('localhost'), 'localhost');
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(cert.checkIP('::1'), '::1');

    const again = await ensureDevTls(dataDir);
    assert.deepEqual(again, first);
    assert.equal(new X509Certificate(readFileSync(again.certFile)).serialNumber, cert.serialNumber);
  });
});
