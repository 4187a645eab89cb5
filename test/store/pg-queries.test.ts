/**
 * The queries that once were SQLite-only, run on PostgreSQL: precompiled statements ($n
 * placeholders), JSON fields of audit leaves (#>> instead of json_extract), the record page query
 * (no unary + on text), the schema-version check in every record write.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import { CompiledQuery } from 'kysely';
import type { AccessDB } from '../../src/access/access-store-schema.ts';
import { reviewEvidence } from '../../src/access/review-evidence.ts';
import { leafStatements } from '../../src/audit/leaf-store.ts';
import { numbered } from '../../src/audit/log-append.ts';
import { type ControlDB, openPgControlStore } from '../../src/server/control-store.ts';
import { dialectOf, FixedStatement, jsonText } from '../../src/store/dialect.ts';
import type { PgStore } from '../../src/store/pg/store.ts';
import { createPgTenantStores } from '../../src/store/pg/tenant-stores.ts';
import type { Store, TenantStores } from '../../src/store/types.ts';
import { recordPageQuery } from '../../src/vault/record-search.ts';
import { assertSchemaVersion, StaleSchema } from '../../src/vault/stale-schema.ts';
import { type TenantDB, tenantStorePgMigrations } from '../../src/vault/tenant-store-schema.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';

describe('formerly SQLite-only queries on PostgreSQL', () => {
  let database: FreshPgDatabase;
  let control: PgStore<ControlDB>;
  let tenants: TenantStores<TenantDB>;
  let tenant: Store<TenantDB>;

  before(async () => {
    database = await freshPgDatabase();
    control = await openPgControlStore(database.url);
    tenants = await createPgTenantStores<TenantDB>({
      url: database.url,
      migrations: tenantStorePgMigrations,
    });
    tenant = await tenants.create('queries');
  });

  after(async () => {
    await tenants?.close();
    await control?.close();
    await database?.drop();
  });

  it('compiles a fixed statement with $n placeholders on PostgreSQL and ? on SQLite', () => {
    const statement = new FixedStatement('SELECT a FROM t WHERE b = ? AND c = ?');
    assert.equal(dialectOf(control.db), 'postgres');
    assert.equal(statement.compile(control.db, [1, 2]).sql, 'SELECT a FROM t WHERE b = $1 AND c = $2');
    assert.throws(() => new FixedStatement("SELECT '?' FROM t WHERE b = ?"), /literal/);
    assert.equal(
      jsonText('postgres', 'leaf', ['actor', 'id']).compile(control.db).sql,
      `(leaf::jsonb #>> '{actor,id}')`,
    );
  });

  it('reads staff accesses out of audit leaves (the access review evidence)', async () => {
    const leaf = (idx: number, fields: object) => ({
      idx,
      tenant: 'ten_1',
      leaf: JSON.stringify({ index: idx, tenant: 'ten_1', ...fields }),
    });
    await control.write(async (trx) => {
      const entries = [
        leaf(0, {
          at: '2026-03-02T00:00:00.000Z',
          actor: { kind: 'staff', id: 'psn_a', grantId: 'grt_1' },
          action: 'record.read',
          outcome: 'success',
        }),
        leaf(1, {
          at: '2026-03-02T00:00:01.000Z',
          actor: { kind: 'customer', id: 'psn_b' },
          action: 'record.read',
          outcome: 'success',
        }),
        leaf(2, {
          at: '2026-03-03T00:00:00.000Z',
          actor: { kind: 'staff', id: 'psn_c' },
          action: 'grant.break-glass',
          target: { grantId: 'grt_2' },
          outcome: 'success',
        }),
        leaf(3, {
          at: '2026-05-01T00:00:00.000Z',
          actor: { kind: 'staff', id: 'psn_a', grantId: 'grt_1' },
          action: 'record.read',
          outcome: 'success',
        }),
      ].map((e) => [e.idx, e.tenant, e.leaf] as const);
      // As the sequencer stores them (src/audit/leaf-store.ts).
      for (const st of leafStatements(entries, null))
        await trx.executeQuery(CompiledQuery.raw(numbered(st.sql), st.parameters));
    });
    const evidence = reviewEvidence({
      db: control.db as unknown as Kysely<AccessDB>,
      now: () => new Date(),
      requestTtlMs: 1,
    });
    const march = { from: Date.parse('2026-03-01T00:00:00Z'), to: Date.parse('2026-04-01T00:00:00Z') };
    const all = await evidence.accessesIn(march, {});
    assert.deepEqual(
      all.map((a) => [a.index, a.person, a.grantId, a.action]),
      [
        [0, 'psn_a', 'grt_1', 'record.read'],
        [2, 'psn_c', 'grt_2', 'grant.break-glass'],
      ],
    );
    assert.deepEqual(
      (await evidence.accessesIn(march, { tenant: 'ten_1' }, 'psn_c')).map((a) => a.index),
      [2],
    );
  });

  it('pages a collection and searches it by blind index, and checks the schema version in a write', async () => {
    const mac = Buffer.from('00ff10', 'hex');
    await tenant.write(async (trx) => {
      await trx
        .insertInto('collections')
        .values({
          name: 'c',
          schema_version: 3,
          schema: '{}',
          blind_index_key_id: 'k',
          retention_days: null,
          created_at: 1,
          updated_at: 1,
        })
        .execute();
      for (const id of ['r1', 'r2', 'r3']) {
        await trx
          .insertInto('records')
          .values({
            id,
            collection: 'c',
            version: 1,
            created_at: 1,
            updated_at: 1,
            expires_at: null,
            fields: Buffer.from([1]),
          })
          .execute();
      }
      await trx
        .insertInto('blind_index')
        .values({ collection: 'c', field: 'email', mac, record_id: 'r2' })
        .execute();
    });
    const page = await recordPageQuery(tenant.db, 'c', [], 0, 10).execute();
    assert.deepEqual(
      page.map((r) => r.id),
      ['r1', 'r2', 'r3'],
    );
    const found = await recordPageQuery(tenant.db, 'c', [{ field: 'email', mac }], 0, 10).execute();
    assert.deepEqual(
      found.map((r) => r.id),
      ['r2'],
    );
    const collection = { name: 'c', version: 3 } as Parameters<typeof assertSchemaVersion>[1];
    await tenant.write((trx) => assertSchemaVersion(trx, collection));
    await assert.rejects(
      tenant.write((trx) => assertSchemaVersion(trx, { ...collection, version: 2 })),
      (error: unknown) => error instanceof StaleSchema,
    );
  });
});
