/**
 * The tenant schemas' Kysely dialect on PostgreSQL answers the introspection Kysely's Migrator does
 * before each migration for its own schema only (src/store/pg/one-schema-dialect.ts): another
 * schema's tables and migration records are never read, so making a tenant does not read every
 * other tenant's catalog — the stock introspector did, which made creating tenants quadratic.
 * Runs on PostgreSQL whatever the pass (a file of the store's PostgreSQL half).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import {
  OneSchemaPostgresDialect,
  SCHEMA_MIGRATION_LOCK_CLASS,
} from '../../src/store/pg/one-schema-dialect.ts';
import { quoteIdent, sessionPool } from '../../src/store/pg/pool.ts';
import { migrate } from '../../src/store/pg/store.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';
import { RECORDS_PG_MIGRATIONS } from './fixtures/records.ts';

describe('the one-schema PostgreSQL dialect', () => {
  let database: FreshPgDatabase;
  let pool: pg.Pool;

  before(async () => {
    database = await freshPgDatabase();
    pool = new pg.Pool({ connectionString: database.url, max: 2 });
  });

  after(async () => {
    await pool?.end();
    await database?.drop();
  });

  function kyselyOn(schema: string): Kysely<unknown> {
    return new Kysely({ dialect: new OneSchemaPostgresDialect(schema, { pool }) });
  }

  it('introspects its own schema alone, where the stock introspector reads them all', async () => {
    const stock = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    for (const schema of ['one_a', 'one_b']) {
      await sql.raw(`CREATE SCHEMA ${schema}`).execute(stock);
      await sql.raw(`SET search_path TO ${schema}`).execute(stock);
    }
    const a = kyselyOn('one_a');
    const b = kyselyOn('one_b');
    await sql.raw('CREATE TABLE one_a.only_in_a (x int)').execute(stock);
    await sql.raw('CREATE TABLE one_b.only_in_b (x int)').execute(stock);

    assert.deepEqual(await a.introspection.getSchemas(), [{ name: 'one_a' }]);
    const tablesOfA = (await a.introspection.getTables()).map((t) => `${t.schema}.${t.name}`).sort();
    assert.ok(tablesOfA.includes('one_a.only_in_a'), tablesOfA.join(', '));
    assert.ok(!tablesOfA.some((t) => !t.startsWith('one_a.')), tablesOfA.join(', '));
    // The stock introspector sees both schemas' tables: what the tenant registry must not read.
    const everyTable = (await stock.introspection.getTables()).map((t) => `${t.schema}.${t.name}`);
    assert.ok(everyTable.includes('one_b.only_in_b'));
    assert.deepEqual(
      (await b.introspection.getTables()).map((t) => `${t.schema}.${t.name}`),
      ['one_b.only_in_b'],
    );
  });

  it("finds every relation the stock introspector finds in its schema, through pg_depend's index", async () => {
    const stock = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    await sql
      .raw(
        `CREATE SCHEMA one_d;
        CREATE TABLE one_d.plain (id int PRIMARY KEY, v text UNIQUE);
        CREATE TABLE one_d.parted (at int) PARTITION BY RANGE (at);
        CREATE TABLE one_d.parted_low PARTITION OF one_d.parted FOR VALUES FROM (0) TO (10);
        CREATE VIEW one_d.a_view AS SELECT id FROM one_d.plain;
        CREATE MATERIALIZED VIEW one_d.a_matview AS SELECT id FROM one_d.plain;
        CREATE TABLE public.moved_in (x int);
        ALTER TABLE public.moved_in SET SCHEMA one_d;
        CREATE TABLE one_d.moved_out (x int);
        ALTER TABLE one_d.moved_out SET SCHEMA public;`,
      )
      .execute(stock);
    const names = (tables: { schema?: string; name: string; isView: boolean }[]) =>
      tables
        .filter((t) => t.schema === 'one_d')
        .map((t) => `${t.name}${t.isView ? ' (view)' : ''}`)
        .sort();
    const ours = names(await kyselyOn('one_d').introspection.getTables());
    assert.deepEqual(ours, names(await stock.introspection.getTables()));
    assert.deepEqual(ours, ['a_view (view)', 'moved_in', 'parted', 'parted_low', 'plain']);
    // The query is answered from indexes: no sequential scan of pg_class, whose size grows with tenants.
    await sql.raw('SET enable_seqscan = off').execute(stock);
    const { rows } = await sql<{ 'QUERY PLAN': string }>`EXPLAIN
      SELECT c.relname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
      WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass
        AND d.refobjid = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'one_d')
        AND d.refobjsubid = 0 AND d.classid = 'pg_catalog.pg_class'::regclass`.execute(stock);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    assert.match(plan, /pg_depend_reference_index/, plan);
  });

  it("takes the schema's own migration lock: another schema migrates while it is held, the same schema waits", async () => {
    await pool.query('CREATE SCHEMA one_e; CREATE SCHEMA one_f');
    const dbOf = (schema: string) =>
      new Kysely<unknown>({
        dialect: new OneSchemaPostgresDialect(schema, { pool: sessionPool(pool, quoteIdent(schema)) }),
      });
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    const e = dbOf('one_e');
    const f = dbOf('one_f');
    try {
      await holder.query('SELECT pg_advisory_lock($1::int, hashtext($2))', [
        SCHEMA_MIGRATION_LOCK_CLASS,
        'one_e',
      ]);
      // Kysely's stock adapter would wait here: one lock for every migration of the database.
      await migrate(f, 'one_f', RECORDS_PG_MIGRATIONS);
      let done = false;
      const waiting = migrate(e, 'one_e', RECORDS_PG_MIGRATIONS).then(() => {
        done = true;
      });
      // Seen waiting on the advisory lock (polled, bounded), not finished while the lock is held.
      let waiters = 0;
      for (let i = 0; i < 200 && waiters === 0; i++) {
        const { rows } = await holder.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::int::oid`,
          [SCHEMA_MIGRATION_LOCK_CLASS],
        );
        waiters = Number(rows[0]?.n);
        if (waiters === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(waiters, 1);
      assert.equal(done, false);
      await holder.query('SELECT pg_advisory_unlock($1::int, hashtext($2))', [
        SCHEMA_MIGRATION_LOCK_CLASS,
        'one_e',
      ]);
      await waiting;
      for (const schema of ['one_e', 'one_f']) {
        const { rows } = await pool.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${schema}.kysely_migration`,
        );
        assert.equal(Number(rows[0]?.n), Object.keys(RECORDS_PG_MIGRATIONS).length);
      }
    } finally {
      await holder.end();
      await e.destroy();
      await f.destroy();
    }
  });

  it('lets the Migrator apply and then skip migrations in a tenant-like schema', async () => {
    await pool.query('CREATE SCHEMA one_c');
    const db = new Kysely<unknown>({
      dialect: new OneSchemaPostgresDialect('one_c', { pool: sessionPool(pool, quoteIdent('one_c')) }),
    });
    try {
      await migrate(db, 'one_c', RECORDS_PG_MIGRATIONS);
      await migrate(db, 'one_c', RECORDS_PG_MIGRATIONS);
      const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM one_c.kysely_migration`.execute(db);
      assert.equal(Number(rows[0]?.n), Object.keys(RECORDS_PG_MIGRATIONS).length);
    } finally {
      await db.destroy();
    }
  });
});
