import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import {
  CONTROL_STORE_FILE,
  controlStoreMigrations,
  controlStorePath,
  openControlStore,
} from '../../src/server/control-store.ts';

/** A control store made by the code of commit 4661674, before the migrations were renumbered. */
const FIXTURE = join(import.meta.dirname, '..', 'store', 'fixtures', 'control-4661674.sqlite');

function read<T>(path: string, query: string): T[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(query).all() as T[];
  } finally {
    db.close();
  }
}

const schemaOf = (path: string) =>
  read<{ type: string; name: string; tbl_name: string; sql: string | null }>(
    path,
    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex_%' ORDER BY type, name",
  );
const migrationsOf = (path: string) =>
  read<{ name: string }>(path, 'SELECT name FROM kysely_migration ORDER BY name').map((r) => r.name);

describe('control store', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-control-store-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('numbers its migrations without gaps or twins', () => {
    assert.deepEqual(
      Object.keys(controlStoreMigrations).map((name) => name.slice(0, 4)),
      ['0001', '0002', '0003', '0004', '0005', '0006', '0007', '0008', '0009', '0010', '0011'],
    );
  });

  it('lives in control.sqlite of the data folder', () => {
    assert.equal(CONTROL_STORE_FILE, 'control.sqlite');
    assert.equal(controlStorePath('/data'), join('/data', 'control.sqlite'));
  });

  it('upgrades a store made before the renumbering to the schema of a new one, rows kept', async () => {
    const fresh = join(dir, 'fresh.sqlite');
    await (await openControlStore(fresh)).close();
    const old = join(dir, 'old.sqlite');
    copyFileSync(FIXTURE, old);
    assert.deepEqual(migrationsOf(old), [
      '0001-audit-events',
      '0002-control-tables',
      '0003-audit-log',
      '0004-identity',
      '0006-webauthn',
      '0007-access',
      '0007-system-keys',
    ]);

    // Twice: the second opening finds nothing left to rename or migrate.
    for (let i = 0; i < 2; i++) await (await openControlStore(old, { fileMustExist: true })).close();

    assert.deepEqual(migrationsOf(old), Object.keys(controlStoreMigrations));
    assert.deepEqual(migrationsOf(fresh), Object.keys(controlStoreMigrations));
    assert.deepEqual(schemaOf(old), schemaOf(fresh));
    assert.deepEqual(read(old, 'SELECT id, state FROM tenants ORDER BY id'), [
      { id: 'ten_000000000000000000000001', state: 'active' },
      { id: 'ten_000000000000000000000002', state: 'closed' },
    ]);
    for (const [table, key, value] of [
      ['api_keys', 'id', 'ak_000000000000000000000001'],
      ['people', 'id', 'psn_000000000000000000000001'],
      ['deletion_certificates', 'tenant', 'ten_000000000000000000000002'],
      ['grant_policies', 'tenant', 'ten_000000000000000000000001'],
      ['system_keys', 'name', 'fixture'],
      ['audit_events', 'action', 'fixture.create'],
    ] as const) {
      assert.deepEqual(read(old, `SELECT ${key} AS k FROM ${table}`), [{ k: value }], table);
    }
    // 0009: the old all-powerful operator tokens (no scope, no owner person) are dropped, not carried over.
    assert.deepEqual(read(old, "SELECT name FROM sqlite_master WHERE name = 'operators'"), []);
    assert.deepEqual(read(old, 'SELECT id FROM operator_tokens'), []);
  });
});
