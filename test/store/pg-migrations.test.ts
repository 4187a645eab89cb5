/**
 * PostgreSQL migrations run under Kysely's migration lock (an advisory lock) in the store's own
 * schema: two processes opening a new store at once apply each migration exactly once, and a failing
 * migration leaves the schema as it was (one transaction).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Kysely, type Migration, sql } from 'kysely';
import { controlStorePgMigrations, openPgControlStore } from '../../src/server/control-store.ts';
import { openPgStore } from '../../src/store/pg/store.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';

interface RunsDb {
  runs: { name: string };
}

/** A migration that is not idempotent: run twice, its CREATE TABLE or the unique insert fails. */
function counted(name: string, table?: string): Migration {
  return {
    async up(db: Kysely<unknown>) {
      if (table) await sql.raw(`CREATE TABLE ${table} (id integer)`).execute(db);
      await sql`INSERT INTO runs (name) VALUES (${name})`.execute(db);
    },
  };
}

const MIGRATIONS = {
  '0001-runs': {
    async up(db: Kysely<unknown>) {
      await sql`CREATE TABLE runs (name text PRIMARY KEY)`.execute(db);
      await sql`INSERT INTO runs (name) VALUES ('0001-runs')`.execute(db);
    },
  },
  '0002-a': counted('0002-a', 'a'),
  '0003-b': counted('0003-b', 'b'),
  '0004-c': counted('0004-c'),
};

describe('PostgreSQL store migrations', () => {
  let database: FreshPgDatabase;

  before(async () => {
    database = await freshPgDatabase();
  });

  after(async () => {
    await database?.drop();
  });

  it('applies each migration once when two openers race on a new store', async () => {
    const open = () => openPgStore<RunsDb>({ url: database.url, schema: 'raced', migrations: MIGRATIONS });
    const stores = await Promise.all([open(), open(), open()]);
    try {
      const runs = await stores[0]?.db.selectFrom('runs').select('name').orderBy('name').execute();
      assert.deepEqual(
        runs?.map((r) => r.name),
        ['0001-runs', '0002-a', '0003-b', '0004-c'],
      );
      const { rows } = await sql<{
        name: string;
      }>`SELECT name FROM raced.kysely_migration ORDER BY name`.execute(stores[0]?.db as Kysely<unknown>);
      assert.deepEqual(
        rows.map((r) => r.name),
        Object.keys(MIGRATIONS),
      );
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('keeps the migration history in the store schema, apart from another store of the same database', async () => {
    const one = await openPgStore<RunsDb>({ url: database.url, schema: 'one', migrations: MIGRATIONS });
    const two = await openPgStore<RunsDb>({
      url: database.url,
      schema: 'two',
      migrations: { '0001-runs': MIGRATIONS['0001-runs'] },
    });
    try {
      const { rows } = await sql<{ schema: string; n: number }>`SELECT table_schema AS schema, count(*) AS n
        FROM information_schema.tables WHERE table_name = 'kysely_migration' AND table_schema IN ('one', 'two')
        GROUP BY table_schema ORDER BY table_schema`.execute(one.db as Kysely<unknown>);
      assert.deepEqual(rows, [
        { schema: 'one', n: 1 },
        { schema: 'two', n: 1 },
      ]);
      assert.equal((await two.db.selectFrom('runs').selectAll().execute()).length, 1);
      assert.equal((await one.db.selectFrom('runs').selectAll().execute()).length, 4);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('leaves the schema as it was when a migration fails (the run is one transaction)', async () => {
    const failing = {
      ...MIGRATIONS,
      '0005-fails': {
        async up(db: Kysely<unknown>) {
          await sql`CREATE TABLE d (id integer)`.execute(db);
          await sql`SELECT 1/0`.execute(db);
        },
      },
    };
    await assert.rejects(
      openPgStore<RunsDb>({ url: database.url, schema: 'failing', migrations: failing }),
      /division by zero/,
    );
    const store = await openPgStore<RunsDb>({ url: database.url, schema: 'failing', migrations: MIGRATIONS });
    try {
      const { rows } = await sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables
        WHERE table_schema = 'failing' AND table_name IN ('runs', 'a', 'd') ORDER BY table_name`.execute(
        store.db as Kysely<unknown>,
      );
      // The failed run left nothing; the second run applied 0001–0004 afresh.
      assert.deepEqual(
        rows.map((r) => r.name),
        ['a', 'runs'],
      );
    } finally {
      await store.close();
    }
  });

  it('applies the control store migrations once under two concurrent openers, in schema tresor', async () => {
    const [a, b] = await Promise.all([openPgControlStore(database.url), openPgControlStore(database.url)]);
    try {
      const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM tresor.kysely_migration`.execute(
        a.db as Kysely<unknown>,
      );
      assert.equal(rows[0]?.n, Object.keys(controlStorePgMigrations).length);
      assert.equal(await b.healthy(), true);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
