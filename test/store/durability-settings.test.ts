/**
 * Durability is pinned, not assumed: every kind of durable SQLite store Tresor opens — the control
 * store (which also holds the audit log), a tenant store, keyd's key store, and the bare connections
 * opened through openSqlite (the audit sequencer's worker thread, the tenant-restore scratch file) —
 * runs with WAL, synchronous=FULL (2: an acknowledged commit survives power loss, not only a crash),
 * secure_delete on, and foreign keys on, on every connection — except the tenant stores, which run
 * synchronous=NORMAL (1) and fdatasync their WAL themselves, off the event loop, before a write
 * resolves (store.ts `ownSync`): pinned here by counting those fdatasyncs (removing the store's
 * fdatasync makes this test fail) and by the power-cut test (test/e2e/power-cut.test.ts). Setting synchronous=OFF in
 * src/store/sqlite/open.ts makes this test fail (tried, then reverted). The one exception is asked
 * for by name (`durable: false`): a scratch copy that is read and removed, never a store that serves.
 *
 * SQLite only: the PostgreSQL store pins synchronous_commit and fsync in its own tests.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Kysely, sql, type Transaction } from 'kysely';
import { openSqliteKeyStore } from '../../src/keyd/store.ts';
import { openControlStore } from '../../src/server/control-store.ts';
import { openSqlite } from '../../src/store/sqlite/open.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import { createTenantStores } from '../../src/store/sqlite/tenant-stores.ts';
import type { Store } from '../../src/store/types.ts';
import { type TenantDB, tenantStoreMigrations } from '../../src/vault/tenant-store-schema.ts';

const PINNED = { journal_mode: 'wal', synchronous: 2, secure_delete: 1, foreign_keys: 1 } as const;
type Settings = Record<keyof typeof PINNED, unknown>;

async function settingsOf<DB>(db: Kysely<DB> | Transaction<DB>): Promise<Settings> {
  const read = async (name: keyof typeof PINNED) => {
    // PRAGMA names take no bound parameters; these four are constants of this file.
    const { rows } = await sql.raw<Record<string, unknown>>(`PRAGMA ${name}`).execute(db);
    return Object.values(rows[0] ?? {})[0];
  };
  return {
    journal_mode: await read('journal_mode'),
    synchronous: await read('synchronous'),
    secure_delete: await read('secure_delete'),
    foreign_keys: await read('foreign_keys'),
  };
}

/** Both connections of a group-commit store: the writer (inside a write) and the reader. */
async function storeConnections<DB>(store: Store<DB>): Promise<{ writer: Settings; reader: Settings }> {
  return { writer: await store.write((trx) => settingsOf(trx)), reader: await settingsOf(store.db) };
}

describe('durability settings of every store', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'guarantees-durability-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('the control store (and the audit log in it): writer and reader connections', async () => {
    const control = await openControlStore(join(dir, 'control.sqlite'));
    try {
      const { writer, reader } = await storeConnections(control);
      assert.deepEqual(writer, PINNED, 'writer connection');
      assert.deepEqual(reader, PINNED, 'reader connection');
    } finally {
      await control.close();
    }
  });

  it("a tenant store: NORMAL on both connections, and the store's own fdatasync of the WAL, completed before each write resolves", async () => {
    let started = 0;
    let completed = 0;
    const tenants = createTenantStores<TenantDB>({
      dir,
      migrations: tenantStoreMigrations,
      aroundWalSync: async (sync) => {
        started++;
        await sync();
        completed++;
      },
    });
    try {
      const store = await tenants.create('acme');
      assert.equal(completed, 1, 'the WAL is fdatasynced once when the store opens');
      const { writer, reader } = await storeConnections(store);
      assert.deepEqual(writer, { ...PINNED, synchronous: 1 }, 'writer connection');
      assert.deepEqual(reader, { ...PINNED, synchronous: 1 }, 'reader connection');
      assert.equal(completed, 2, 'the write resolved after one more fdatasync of the WAL');
      const seen: number[] = [];
      await Promise.all(
        [1, 2, 3].map(() => store.write(async () => undefined).then(() => seen.push(completed))),
      );
      assert.equal(started, 3, 'three writes in one turn: one batch, one fdatasync');
      assert.deepEqual(seen, [3, 3, 3], 'each write resolved after its fdatasync completed');
    } finally {
      await tenants.close();
    }
  });

  it("keyd's key store", async () => {
    const keyDir = join(dir, 'keyd');
    mkdirSync(keyDir, { mode: 0o700 });
    const keys = openSqliteKeyStore(keyDir);
    try {
      assert.deepEqual(keys.durabilitySettings(), PINNED);
    } finally {
      await keys.close();
    }
  });

  it('a bare openSqlite connection (the audit sequencer worker, the tenant-restore scratch file)', () => {
    const db = openSqlite(join(dir, 'bare.sqlite'));
    try {
      const read = (name: string) => db.pragma(name, { simple: true });
      assert.deepEqual(
        {
          journal_mode: read('journal_mode'),
          synchronous: read('synchronous'),
          secure_delete: read('secure_delete'),
          foreign_keys: read('foreign_keys'),
        },
        PINNED,
      );
    } finally {
      db.close();
    }
  });

  it('the one exception, asked for by name: a scratch copy read and removed (durable: false, the trial restore) does not fsync; the default stays durable', async () => {
    const path = join(dir, 'scratch.sqlite');
    const durable = await openSqliteStore<TenantDB>(path, tenantStoreMigrations);
    await durable.close();
    const scratch = await openSqliteStore<TenantDB>(path, tenantStoreMigrations, {
      fileMustExist: true,
      durable: false,
    });
    try {
      const { writer, reader } = await storeConnections(scratch);
      assert.deepEqual(writer, { ...PINNED, synchronous: 0 }, 'writer connection');
      assert.deepEqual(reader, { ...PINNED, synchronous: 0 }, 'reader connection');
    } finally {
      await scratch.close();
    }
    const again = await openSqliteStore<TenantDB>(path, tenantStoreMigrations, { fileMustExist: true });
    try {
      assert.deepEqual((await storeConnections(again)).writer, PINNED, 'opened again without the option');
    } finally {
      await again.close();
    }
  });
});
