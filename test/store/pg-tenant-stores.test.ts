/**
 * Tenant stores on PostgreSQL: one schema per tenant (`tenant_<id>`), created with the tenant
 * migrations, dropped at the contract's end, and no query of one tenant — built or raw, read or
 * written — resolving a table of another tenant's schema or of the control store's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Kysely, sql } from 'kysely';
import { appendAuditEvent } from '../../src/audit/event.ts';
import { TresorError } from '../../src/errors.ts';
import { type ControlDB, openPgControlStore } from '../../src/server/control-store.ts';
import type { PgStore } from '../../src/store/pg/store.ts';
import { createPgTenantStores, tenantSchema } from '../../src/store/pg/tenant-stores.ts';
import type { Store, TenantStores } from '../../src/store/types.ts';
import { type TenantDB, tenantStorePgMigrations } from '../../src/vault/tenant-store-schema.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';

function hasCode(code: string) {
  return (error: unknown) => error instanceof TresorError && error.code === code;
}

async function addCollection(store: Store<TenantDB>, name: string): Promise<void> {
  await store.write(async (trx) => {
    await trx
      .insertInto('collections')
      .values({
        name,
        schema_version: 1,
        schema: '{}',
        blind_index_key_id: 'k',
        retention_days: null,
        created_at: 1,
        updated_at: 1,
      })
      .execute();
    await appendAuditEvent(trx, {
      at: '2026-01-01T00:00:00.000Z',
      actor: { kind: 'system', id: 'test' },
      tenant: name,
      action: 'collection.put',
      outcome: 'success',
    });
  });
}

async function schemaExists(db: Kysely<unknown>, schema: string): Promise<boolean> {
  const { rows } = await sql`SELECT 1 FROM pg_namespace WHERE nspname = ${schema}`.execute(db);
  return rows.length > 0;
}

describe('PostgreSQL tenant stores', () => {
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

  it('creates a schema per tenant with the tenant migrations, refuses a second create, opens it again', async () => {
    const acme = await tenants.create('acme');
    assert.match(acme.location, /^postgresql:\/\/127\.0\.0\.1:5432\/[a-z0-9_]+_[0-9a-f]+#tenant_acme$/);
    assert.equal(await schemaExists(control.db as Kysely<unknown>, 'tenant_acme'), true);
    await addCollection(acme, 'people');
    await assert.rejects(tenants.create('acme'), hasCode('TRESOR_ERR_CONFLICT'));
    const again = await tenants.open('acme');
    assert.deepEqual(
      (await again.db.selectFrom('collections').select('name').execute()).map((r) => r.name),
      ['people'],
    );
    assert.equal(await tenants.exists('acme'), true);
    assert.equal(await again.healthy(), true);
    const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM tenant_acme.kysely_migration`.execute(
      control.db as Kysely<unknown>,
    );
    assert.equal(rows[0]?.n, Object.keys(tenantStorePgMigrations).length);
  });

  it('refuses ids that are not tenant ids, and ids too long for a schema name, before any SQL', async () => {
    await assert.rejects(
      tenants.create('a"; DROP SCHEMA tresor CASCADE; --'),
      hasCode('TRESOR_ERR_BAD_REQUEST'),
    );
    await assert.rejects(tenants.open('../x'), hasCode('TRESOR_ERR_BAD_REQUEST'));
    await assert.rejects(tenants.create('x'.repeat(57)), hasCode('TRESOR_ERR_BAD_REQUEST'));
    assert.equal(tenantSchema('x'.repeat(56)), `tenant_${'x'.repeat(56)}`);
    await assert.rejects(tenants.open('never-made'), hasCode('TRESOR_ERR_NOT_FOUND'));
    assert.equal(await tenants.exists('never-made'), false);
  });

  it('keeps each tenant to its own schema: builders, raw sql, reads and writes, in one shared batch', async () => {
    const a = await tenants.create('iso-a');
    const b = await tenants.create('iso-b');
    // Both writes are queued in one turn: one batch of the shared writer runs both.
    await Promise.all([addCollection(a, 'only-a'), addCollection(b, 'only-b')]);
    const names = async (store: Store<TenantDB>) =>
      (await store.db.selectFrom('collections').select('name').execute()).map((r) => r.name);
    assert.deepEqual(await names(a), ['only-a']);
    assert.deepEqual(await names(b), ['only-b']);
    // A raw query with no schema reads its own tenant's table, on the reader and in a write.
    const raw = await sql<{ name: string }>`SELECT name FROM collections`.execute(a.db);
    assert.deepEqual(
      raw.rows.map((r) => r.name),
      ['only-a'],
    );
    const inWrite = await b.write(
      async (trx) => (await sql<{ name: string }>`SELECT name FROM collections`.execute(trx)).rows,
    );
    assert.deepEqual(
      inWrite.map((r) => r.name),
      ['only-b'],
    );
    // The tenant's search_path is its schema alone: the control store's tables are not there.
    await assert.rejects(sql`SELECT id FROM tenants`.execute(a.db), /relation "tenants" does not exist/);
    await assert.rejects(
      a.write((trx) => sql`SELECT id FROM tenants`.execute(trx)),
      /relation "tenants" does not exist/,
    );
    const path = await sql<{ p: string }>`SELECT current_setting('search_path') AS p`.execute(a.db);
    assert.equal(path.rows[0]?.p, '"tenant_iso-a"');
    // The writer's connection has no schema of its own between tenants' jobs.
    const between = await b.write(async (trx) => {
      const { rows } = await sql<{ p: string }>`SELECT current_setting('search_path') AS p`.execute(trx);
      return rows[0]?.p;
    });
    assert.equal(between, '"tenant_iso-b"');
    // Audit events went to each tenant's own outbox.
    const events = await sql<{ tenant: string }>`SELECT tenant FROM audit_events`.execute(a.db);
    assert.deepEqual(
      events.rows.map((r) => r.tenant),
      ['only-a'],
    );
  });

  it('interleaves many tenants in one batch and still lands every write in its own schema', async () => {
    const stores = await Promise.all(['m1', 'm2', 'm3', 'm4'].map((t) => tenants.create(t)));
    await Promise.all(
      stores.flatMap((store, i) => [0, 1, 2].map((j) => addCollection(store, `m${i + 1}-${j}`))),
    );
    for (const [i, store] of stores.entries()) {
      const rows = await store.db.selectFrom('collections').select('name').orderBy('name').execute();
      assert.deepEqual(
        rows.map((r) => r.name),
        [`m${i + 1}-0`, `m${i + 1}-1`, `m${i + 1}-2`],
      );
    }
  });

  it('destroys a tenant: waits for a read in flight, drops the schema, is idempotent, and refuses the tenant afterwards', async () => {
    const doomed = await tenants.create('doomed');
    await addCollection(doomed, 'c');
    let reading!: () => void;
    const readStarted = new Promise<void>((resolve) => {
      reading = resolve;
    });
    let finishRead!: () => void;
    const readMayEnd = new Promise<void>((resolve) => {
      finishRead = resolve;
    });
    const read = doomed.db.transaction().execute(async (trx) => {
      const rows = await trx.selectFrom('collections').select('name').execute();
      reading();
      await readMayEnd;
      return rows.map((r) => r.name);
    });
    await readStarted;
    let destroyed = false;
    const destroying = tenants.destroy('doomed').then(() => {
      destroyed = true;
    });
    // While the read holds its connection, the schema stays and new work is refused.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(destroyed, false);
    assert.equal(await tenants.exists('doomed'), false);
    await assert.rejects(
      doomed.write(async () => 'late'),
      hasCode('TRESOR_ERR_GONE'),
    );
    finishRead();
    assert.deepEqual(await read, ['c']);
    await destroying;
    assert.equal(await schemaExists(control.db as Kysely<unknown>, 'tenant_doomed'), false);
    await tenants.destroy('doomed'); // idempotent
    await assert.rejects(tenants.open('doomed'), hasCode('TRESOR_ERR_NOT_FOUND'));
    assert.equal(await tenants.exists('doomed'), false);
    // A new contract under the same id starts empty.
    const reborn = await tenants.create('doomed');
    assert.deepEqual(await reborn.db.selectFrom('collections').selectAll().execute(), []);
  });

  it('an in-place restore: scratch names no tenant id can make, replace() refuses any other name or a missing store', async () => {
    // (The restore itself: test/backup/tenant-restore-pg.test.ts and test/e2e/tenant-restore.test.ts.)
    const scratch = await tenants.scratchPath('acme');
    assert.match(scratch, /^tresor_restore_[0-9a-f]{16}$/);
    assert.notEqual(await tenants.scratchPath('acme'), scratch);
    await assert.rejects(
      tenants.replace('acme', 'tenant_other', async () => {}),
      RangeError,
    );
    await assert.rejects(
      tenants.replace('nobody', scratch, async () => {}),
      hasCode('TRESOR_ERR_NOT_FOUND'),
    );
    assert.equal(await tenants.removeScratch(), 0);
  });

  it('keeps the control store and the tenant stores apart when they share one pool', async () => {
    const { createPgPool } = await import('../../src/store/pg/pool.ts');
    // Two writers hold a connection each; the reads alternate over the other two.
    const pool = createPgPool(database.url, { max: 4 });
    const sharedControl = await openPgControlStore(pool);
    const shared = await createPgTenantStores<TenantDB>({ pool, migrations: tenantStorePgMigrations });
    try {
      const t = await shared.open('acme');
      // Alternate reads over the same connections: each use resets the search_path it needs.
      for (let i = 0; i < 4; i += 1) {
        const names = await sql<{ name: string }>`SELECT name FROM collections`.execute(t.db);
        assert.deepEqual(
          names.rows.map((r) => r.name),
          ['people'],
        );
        const count = await sql<{ n: number }>`SELECT count(*) AS n FROM tenants`.execute(sharedControl.db);
        assert.equal(count.rows[0]?.n, 0);
      }
    } finally {
      await shared.close();
      await sharedControl.close();
      await pool.end();
    }
  });
});
