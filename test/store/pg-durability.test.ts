/**
 * The durability and ordering settings of every PostgreSQL store are pinned: every connection a
 * store uses (its readers and its writer, the control store's and the tenant stores') runs with
 * synchronous_commit = on and on a server with fsync = on, even when the database's own default
 * says otherwise; and a database that would lose acknowledged writes or order text unlike SQLite
 * is refused at open with a message that says what to change.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Kysely, sql } from 'kysely';
import { TresorError } from '../../src/errors.ts';
import { openPgControlStore } from '../../src/server/control-store.ts';
import { assertUsableDatabase, type PgDatabaseFacts } from '../../src/store/pg/checks.ts';
import { openPgStore } from '../../src/store/pg/store.ts';
import { createPgTenantStores } from '../../src/store/pg/tenant-stores.ts';
import type { Store } from '../../src/store/types.ts';
import { tenantStorePgMigrations } from '../../src/vault/tenant-store-schema.ts';
import { type FreshPgDatabase, freshPgDatabase, onServer } from '../helpers/pg.ts';
import { RECORDS_PG_MIGRATIONS } from './fixtures/records.ts';

interface Settings {
  pid: number;
  synchronous_commit: string;
  fsync: string;
}

const SETTINGS = sql<Settings>`SELECT pg_backend_pid() AS pid, current_setting('synchronous_commit') AS synchronous_commit, current_setting('fsync') AS fsync`;

/**
 * The settings of `count` distinct reader connections: each read holds its connection (inside a
 * read transaction) until all have answered, so the pool must open that many.
 */
async function readerSettings(db: Kysely<unknown>, count: number): Promise<Settings[]> {
  let arrived = 0;
  let release!: () => void;
  const all = new Promise<void>((resolve) => {
    release = resolve;
  });
  return Promise.all(
    Array.from({ length: count }, () =>
      db.transaction().execute(async (trx) => {
        const { rows } = await SETTINGS.execute(trx);
        arrived += 1;
        if (arrived === count) release();
        await all;
        return rows[0] as Settings;
      }),
    ),
  );
}

async function writerSettings(store: Store<unknown>): Promise<Settings> {
  return store.write(async (trx) => (await SETTINGS.execute(trx)).rows[0] as Settings);
}

function assertDurable(settings: Settings[], count: number): void {
  assert.equal(new Set(settings.map((s) => s.pid)).size, count, 'each read used its own connection');
  for (const s of settings) {
    assert.equal(s.synchronous_commit, 'on', `connection ${s.pid}: synchronous_commit`);
    assert.equal(s.fsync, 'on', `connection ${s.pid}: fsync`);
  }
}

const GOOD: PgDatabaseFacts = {
  fsync: 'on',
  synchronousCommit: 'on',
  localeProvider: 'c',
  collate: 'C',
  ctype: 'C',
  database: 'd',
  encoding: 'UTF8',
};

function refusedWith(pattern: RegExp) {
  return (error: unknown) =>
    error instanceof TresorError && error.code === 'TRESOR_ERR_CONFIG_INVALID' && pattern.test(error.message);
}

describe('PostgreSQL store durability settings', () => {
  let database: FreshPgDatabase;

  before(async () => {
    database = await freshPgDatabase();
    // A database whose default is synchronous_commit = off: a store that relied on the server's
    // default, instead of setting it on its own connections, would acknowledge unflushed commits.
    await onServer(`ALTER DATABASE ${database.name} SET synchronous_commit = off`);
  });

  after(async () => {
    await database?.drop();
  });

  it('the database default is really off for a connection that does not set it (the test can fail)', async () => {
    const pg = await import('pg');
    const client = new pg.default.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query('SHOW synchronous_commit');
      assert.equal(rows[0]?.synchronous_commit, 'off');
    } finally {
      await client.end();
    }
  });

  it('runs every connection of a store (4 readers and the writer) with synchronous_commit and fsync on', async () => {
    const store = await openPgStore({
      url: database.url,
      schema: 'durable',
      migrations: RECORDS_PG_MIGRATIONS,
    });
    try {
      assertDurable(await readerSettings(store.db as Kysely<unknown>, 4), 4);
      const writer = await writerSettings(store as Store<unknown>);
      assert.equal(writer.synchronous_commit, 'on');
      assert.equal(writer.fsync, 'on');
    } finally {
      await store.close();
    }
  });

  it('runs every connection of the control store and of the tenant stores with synchronous_commit and fsync on', async () => {
    const control = await openPgControlStore(database.url);
    const tenants = await createPgTenantStores({ url: database.url, migrations: tenantStorePgMigrations });
    try {
      assertDurable(await readerSettings(control.db as Kysely<unknown>, 3), 3);
      assert.equal((await writerSettings(control as Store<unknown>)).synchronous_commit, 'on');
      const acme = await tenants.create('acme');
      assertDurable(await readerSettings(acme.db as Kysely<unknown>, 3), 3);
      const writer = await writerSettings(acme as Store<unknown>);
      assert.equal(writer.synchronous_commit, 'on');
      assert.equal(writer.fsync, 'on');
    } finally {
      await tenants.close();
      await control.close();
    }
  });

  it('refuses a server with fsync off, a connection with synchronous_commit off, a non-UTF8 database', () => {
    assert.doesNotThrow(() => assertUsableDatabase(GOOD));
    assert.throws(
      () => assertUsableDatabase({ ...GOOD, fsync: 'off' }),
      refusedWith(/fsync = off.*set fsync = on/),
    );
    assert.throws(
      () => assertUsableDatabase({ ...GOOD, synchronousCommit: 'off' }),
      refusedWith(/synchronous_commit = off/),
    );
    assert.throws(() => assertUsableDatabase({ ...GOOD, encoding: 'SQL_ASCII' }), refusedWith(/needs UTF8/));
  });

  it('refuses a database that does not order text by bytes (a locale or ICU collation)', () => {
    assert.doesNotThrow(() => assertUsableDatabase({ ...GOOD, collate: 'POSIX', ctype: 'POSIX' }));
    assert.throws(
      () => assertUsableDatabase({ ...GOOD, collate: 'en_US.UTF-8', ctype: 'en_US.UTF-8' }),
      refusedWith(/LC_COLLATE 'C'/),
    );
    assert.throws(() => assertUsableDatabase({ ...GOOD, ctype: 'C.UTF-8' }), refusedWith(/byte order/));
    assert.throws(() => assertUsableDatabase({ ...GOOD, localeProvider: 'i' }), refusedWith(/provider i/));
  });

  it('refuses to open a store in a real database made with another collation, saying how to make one', async () => {
    const other = await freshPgDatabase({ collate: 'C.UTF-8' });
    try {
      await assert.rejects(
        openPgStore({ url: other.url, schema: 'refused', migrations: RECORDS_PG_MIGRATIONS }),
        refusedWith(/sorts text by C\.UTF-8.*TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'/),
      );
      await assert.rejects(
        createPgTenantStores({ url: other.url, migrations: tenantStorePgMigrations }),
        refusedWith(/LC_COLLATE 'C'/),
      );
    } finally {
      await other.drop();
    }
  });
});
