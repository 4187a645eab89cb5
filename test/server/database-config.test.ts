/**
 * `database.url` (TRESOR_DATABASE_URL): the server's choice of backend, a secret-bearing value whose
 * password is never shown — not by `tresor config show` (redactedServerConfig), not in the audit
 * log's config digests' input, not in a config error; backups configured on PostgreSQL as on SQLite;
 * and keyd's `keyd.database.url`, checked at start without repeating it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { redactDatabaseUrl } from '../../src/config/database-url.ts';
import {
  ConfigError,
  redactedServerConfig,
  resolveDatabaseConfig,
  resolveServerConfig,
} from '../../src/config/server-config.ts';
import { resolveKeydConfig } from '../../src/keyd/config.ts';

const SECRET = 'pw-Zq8-do-not-show';
const URL_WITH_PASSWORD = `postgres://tresor:${SECRET}@db.internal:5432/tresor`;

function problemsOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return `${error.message}\n${error.problems.join('\n')}`;
    if (error instanceof Error) return error.message;
    throw error;
  }
  assert.fail('expected a configuration error');
}

describe('database.url', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgserver-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('without it the server stays on SQLite in the data folder', () => {
    const config = resolveServerConfig({ dataDir: dir }, {});
    assert.deepEqual(config.database, { kind: 'sqlite' });
    assert.deepEqual(resolveDatabaseConfig({}, {}), { kind: 'sqlite' });
  });

  test('TRESOR_DATABASE_URL selects PostgreSQL, and the shown config carries no password', () => {
    const config = resolveServerConfig({ dataDir: dir }, { TRESOR_DATABASE_URL: URL_WITH_PASSWORD });
    assert.deepEqual(config.database, { kind: 'postgres', url: URL_WITH_PASSWORD });
    const shown = JSON.stringify(redactedServerConfig(config));
    assert.ok(!shown.includes(SECRET), 'the password must not be shown');
    assert.ok(shown.includes('postgres://tresor:redacted@db.internal:5432/tresor'));
    // The config was not changed by redacting a copy of it.
    assert.equal(config.database.kind === 'postgres' && config.database.url, URL_WITH_PASSWORD);
  });

  test('the config file may name it too; a password in the query is redacted as well', () => {
    const file = join(dir, 'config.json');
    writeFileSync(
      file,
      JSON.stringify({ database: { url: 'postgres://db.internal/tresor?password=hush1' } }),
    );
    const config = resolveServerConfig({ dataDir: dir, config: file }, {});
    assert.equal(config.database.kind, 'postgres');
    assert.ok(!JSON.stringify(redactedServerConfig(config)).includes('hush1'));
    assert.ok(!redactDatabaseUrl('postgresql://u:p%40ss@h/d').includes('p%40ss'));
  });

  test('a URL that is not a PostgreSQL one is refused, naming the setting and never the value', () => {
    for (const bad of [
      `mysql://tresor:${SECRET}@db.internal/tresor`,
      `postgres://tresor:${SECRET}@db.internal/`,
      `not a url ${SECRET}`,
    ]) {
      const message = problemsOf(() => resolveServerConfig({ dataDir: dir }, { TRESOR_DATABASE_URL: bad }));
      assert.match(message, /TRESOR_DATABASE_URL/);
      assert.ok(!message.includes(SECRET), `the value leaked into: ${message}`);
    }
  });

  test('on PostgreSQL, backup destinations and a backup schedule are taken as on SQLite', () => {
    const config = resolveServerConfig(
      { dataDir: dir },
      { TRESOR_DATABASE_URL: URL_WITH_PASSWORD, TRESOR_BACKUP_INTERVAL_MINUTES: '60' },
    );
    assert.equal(config.database.kind, 'postgres');
    assert.equal(config.backup.intervalMinutes, 60);
    assert.ok(config.backup.destinations.length >= 1);
  });

  test('keyd.database.url: keyd takes it, refuses the data’s database and a non-URL, never repeating it', () => {
    const keydUrl = URL_WITH_PASSWORD.replace(/\/[^/]*$/, '/tresor_keyd');
    assert.equal(resolveKeydConfig({ dir }, { TRESOR_KEYD_DATABASE_URL: keydUrl }).databaseUrl, keydUrl);
    const same = problemsOf(() =>
      resolveKeydConfig(
        { dir },
        { TRESOR_KEYD_DATABASE_URL: URL_WITH_PASSWORD, TRESOR_DATABASE_URL: URL_WITH_PASSWORD },
      ),
    );
    assert.match(same, /same database as database\.url/);
    assert.ok(!same.includes(SECRET));
    const file = join(dir, 'keyd.json');
    writeFileSync(
      file,
      JSON.stringify({
        database: { url: URL_WITH_PASSWORD },
        keyd: { database: { url: URL_WITH_PASSWORD } },
      }),
    );
    assert.match(
      problemsOf(() => resolveKeydConfig({ config: file, dir }, {})),
      /same database as database\.url/,
    );
    const bad = problemsOf(() =>
      resolveKeydConfig({ dir }, { TRESOR_KEYD_DATABASE_URL: `mysql://u:${SECRET}@h/db` }),
    );
    assert.match(bad, /must be a postgres:\/\/ URL/);
    assert.ok(!bad.includes(SECRET));
  });
});
