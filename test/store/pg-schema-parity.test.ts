/**
 * The two backends' migration histories make the same tables: every table of the control store
 * and of the tenant store exists on PostgreSQL with the same columns (names, nullability, type
 * family), the same named indexes and (at least) the same triggers as on SQLite, compared
 * programmatically so the histories cannot drift apart unseen. And on PostgreSQL the append-only
 * triggers refuse UPDATE, DELETE and TRUNCATE, as SQLite's refuse UPDATE and DELETE.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import {
  type ControlDB,
  controlStoreMigrations,
  openPgControlStore,
} from '../../src/server/control-store.ts';
import type { PgStore } from '../../src/store/pg/store.ts';
import { createPgTenantStores } from '../../src/store/pg/tenant-stores.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Migrations, TenantStores } from '../../src/store/types.ts';
import {
  type TenantDB,
  tenantStoreMigrations,
  tenantStorePgMigrations,
} from '../../src/vault/tenant-store-schema.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';

/** Kysely's own bookkeeping tables: varchar on both, not part of a domain's schema. */
const KYSELY_TABLES = new Set(['kysely_migration', 'kysely_migration_lock']);

interface Shape {
  /** table → "column type-family null|not-null", in column order. */
  columns: Map<string, string[]>;
  /** Named indexes that are not a constraint's (table.index). */
  indexes: Set<string>;
  triggers: Set<string>;
}

function sqliteFamily(declared: string): string {
  const type = declared.toLowerCase();
  // SQLite gives any declared type containing "INT" integer affinity (its datatype rule 1).
  if (type === 'integer' || type === 'bigint') return 'integer';
  if (type === 'blob') return 'bytes';
  if (type === 'text') return 'text';
  return `other:${type}`;
}

function pgFamily(type: string): string {
  if (type === 'integer' || type === 'bigint' || type === 'smallint') return 'integer';
  if (type === 'bytea') return 'bytes';
  if (type === 'text') return 'text';
  return `other:${type}`;
}

async function sqliteShape(migrations: Migrations): Promise<Shape> {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-pg-parity-'));
  try {
    const path = join(dir, 'store.sqlite');
    const store = await openSqliteStore(path, migrations);
    await store.close();
    const db = new Database(path, { readonly: true });
    try {
      const tables = (
        db
          .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
          .all() as {
          name: string;
        }[]
      )
        .map((t) => t.name)
        .filter((t) => !KYSELY_TABLES.has(t));
      const columns = new Map<string, string[]>();
      for (const table of tables) {
        const info = db.prepare(`PRAGMA table_info(${table})`).all() as {
          name: string;
          type: string;
          notnull: number;
          pk: number;
        }[];
        // A primary key column is never null on PostgreSQL; SQLite's INTEGER PRIMARY KEY cannot be either.
        columns.set(
          table,
          info.map((c) => `${c.name} ${sqliteFamily(c.type)} ${c.notnull || c.pk ? 'not-null' : 'null'}`),
        );
      }
      const indexes = new Set(
        (
          db
            .prepare("SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            .all() as { tbl_name: string; name: string }[]
        ).map((i) => `${i.tbl_name}.${i.name}`),
      );
      const triggers = new Set(
        (db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").all() as { name: string }[]).map(
          (t) => t.name,
        ),
      );
      return { columns, indexes, triggers };
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function pgShape(db: Kysely<unknown>, schema: string): Promise<Shape> {
  const cols = await sql<{ table_name: string; column_name: string; data_type: string; is_nullable: string }>`
    SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
    WHERE table_schema = ${schema} ORDER BY table_name, ordinal_position`.execute(db);
  const columns = new Map<string, string[]>();
  for (const c of cols.rows) {
    if (KYSELY_TABLES.has(c.table_name)) continue;
    const list = columns.get(c.table_name) ?? [];
    list.push(`${c.column_name} ${pgFamily(c.data_type)} ${c.is_nullable === 'YES' ? 'null' : 'not-null'}`);
    columns.set(c.table_name, list);
  }
  const idx = await sql<{ table_name: string; index_name: string }>`
    SELECT t.relname AS table_name, i.relname AS index_name
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = ${schema}
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)`.execute(db);
  const indexes = new Set(
    idx.rows.filter((i) => !KYSELY_TABLES.has(i.table_name)).map((i) => `${i.table_name}.${i.index_name}`),
  );
  const trg = await sql<{ name: string }>`
    SELECT tgname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${schema} AND NOT t.tgisinternal`.execute(
    db,
  );
  return { columns, indexes, triggers: new Set(trg.rows.map((t) => t.name)) };
}

function assertSameShape(sqlite: Shape, pg: Shape): void {
  assert.deepEqual([...pg.columns.keys()].sort(), [...sqlite.columns.keys()].sort(), 'the same tables');
  for (const [table, columns] of sqlite.columns) {
    assert.deepEqual(pg.columns.get(table), columns, `the columns of ${table}`);
  }
  assert.deepEqual([...pg.indexes].sort(), [...sqlite.indexes].sort(), 'the same named indexes');
  for (const trigger of sqlite.triggers)
    assert.ok(pg.triggers.has(trigger), `trigger ${trigger} on PostgreSQL`);
  // PostgreSQL has one more kind: TRUNCATE skips row triggers, so append-only tables refuse it too.
  for (const trigger of pg.triggers) {
    assert.ok(
      sqlite.triggers.has(trigger) || trigger.endsWith('_no_truncate'),
      `trigger ${trigger} on SQLite`,
    );
  }
}

function refused(message: RegExp) {
  return (error: unknown) => error instanceof Error && message.test(error.message);
}

describe('PostgreSQL and SQLite schemas', () => {
  let database: FreshPgDatabase;
  let control: PgStore<ControlDB>;
  let tenants: TenantStores<TenantDB>;

  before(async () => {
    database = await freshPgDatabase();
    control = await openPgControlStore(database.url);
    tenants = await createPgTenantStores<TenantDB>({
      url: database.url,
      migrations: tenantStorePgMigrations,
    });
  });

  after(async () => {
    await tenants?.close();
    await control?.close();
    await database?.drop();
  });

  it('has every control-store table with the same columns, indexes and triggers on both backends', async () => {
    const sqlite = await sqliteShape(controlStoreMigrations);
    assert.ok(sqlite.columns.size >= 25, 'the SQLite control store has its tables');
    assertSameShape(sqlite, await pgShape(control.db as Kysely<unknown>, 'tresor'));
  });

  it('has every tenant-store table with the same columns, indexes and triggers on both backends', async () => {
    await tenants.create('parity');
    const sqlite = await sqliteShape(tenantStoreMigrations);
    assert.deepEqual([...sqlite.columns.keys()].sort(), [
      'audit_events',
      'audit_moved',
      'blind_index',
      'collections',
      'data_keys',
      'idempotency_keys',
      'records',
    ]);
    assertSameShape(sqlite, await pgShape(control.db as Kysely<unknown>, 'tenant_parity'));
  });

  it('refuses UPDATE, DELETE and TRUNCATE of the append-only tables', async () => {
    const db = control.db as Kysely<unknown>;
    await sql`INSERT INTO audit_events (at, tenant, action, event) VALUES ('t', NULL, 'a', '{}');
      INSERT INTO audit_leaves (idx, n, block) VALUES (0, 1, '\\x01');
      INSERT INTO audit_tenants (tenant) VALUES ('tn');
      INSERT INTO audit_tenant_entries (ref, idx) VALUES (1, 0);
      INSERT INTO audit_nodes (level, idx, hash) VALUES (0, 0, '\\x00');
      INSERT INTO audit_checkpoints (size, note, at) VALUES (1, 'n', 't');
      INSERT INTO people (id, side, role, tenant, email, created_at, updated_at)
        VALUES ('psn_1', 'operator', 'security-officer', NULL, 'a@example.com', 't', 't');
      INSERT INTO access_reviews (id, period_from, period_to, tenant, note, attested_by, recorded_by, attested_at)
        VALUES ('rev_1', '2026-01-01', '2026-02-01', NULL, 'n', 'psn_1', 'system:cli', 't')`.execute(db);
    const tables: [string, RegExp][] = [
      ['audit_events', /audit events are append-only/],
      ['audit_leaves', /the audit log is append-only/],
      ['audit_tenants', /the audit log is append-only/],
      ['audit_tenant_entries', /the audit log is append-only/],
      ['audit_nodes', /the audit log is append-only/],
      ['audit_checkpoints', /the audit log is append-only/],
      ['access_reviews', /access reviews are append-only/],
    ];
    for (const [table, message] of tables) {
      const column =
        table === 'audit_nodes' || table === 'audit_leaves' || table === 'audit_tenant_entries'
          ? 'idx'
          : table === 'audit_tenants'
            ? 'ref'
            : table === 'audit_checkpoints'
              ? 'size'
              : table === 'audit_events'
                ? 'seq'
                : 'id';
      await assert.rejects(
        sql.raw(`UPDATE ${table} SET ${column} = ${column}`).execute(db),
        refused(message),
        `${table} UPDATE`,
      );
      await assert.rejects(sql.raw(`DELETE FROM ${table}`).execute(db), refused(message), `${table} DELETE`);
      await assert.rejects(
        sql.raw(`TRUNCATE ${table} CASCADE`).execute(db),
        refused(message),
        `${table} TRUNCATE`,
      );
      const { rows } = await sql.raw<{ n: number }>(`SELECT count(*) AS n FROM ${table}`).execute(db);
      assert.equal(rows[0]?.n, 1, `${table} kept its row`);
    }
    // A tenant's outbox is append-only too.
    const tenant = await tenants.open('parity');
    await tenant.write((trx) =>
      sql`INSERT INTO audit_events (at, tenant, action, event) VALUES ('t', 'parity', 'a', '{}')`.execute(
        trx,
      ),
    );
    await assert.rejects(
      tenant.write((trx) => sql`DELETE FROM audit_events`.execute(trx)),
      refused(/audit events are append-only/),
    );
  });

  it('lets audit cursors only advance, and grants only move forward, never be deleted', async () => {
    const db = control.db as Kysely<unknown>;
    await sql`INSERT INTO audit_cursors (source, seq) VALUES ('control', 5)`.execute(db);
    await sql`UPDATE audit_cursors SET seq = 6 WHERE source = 'control'`.execute(db);
    await assert.rejects(
      sql`UPDATE audit_cursors SET seq = 4 WHERE source = 'control'`.execute(db),
      refused(/audit cursors only advance/),
    );
    await sql`INSERT INTO tenants (id, name, state, contract_start, created_at, updated_at)
        VALUES ('ten_1', 'acme', 'active', '2026-01-01', 't', 't');
      INSERT INTO grants (id, tenant, requester, requester_role, collections, access, reason, ticket, duration_ms,
          policy, state, requested_at)
        VALUES ('grt_1', 'ten_1', 'psn_1', 'security-officer', '"*"', 'read', 'why', 'T-1', 3600000,
          'automatic', 'pending', 't')`.execute(db);
    await assert.rejects(
      sql`UPDATE grants SET reason = 'other' WHERE id = 'grt_1'`.execute(db),
      refused(/a grant request does not change/),
    );
    await assert.rejects(
      sql`UPDATE grants SET state = 'active' WHERE id = 'grt_1'`.execute(db),
      refused(/grant states only move forward/),
    );
    await sql`UPDATE grants SET state = 'denied' WHERE id = 'grt_1'`.execute(db);
    await assert.rejects(sql`DELETE FROM grants`.execute(db), refused(/grants are kept/));
  });
});
