// backends: postgres (a tenant's schema restored in place: PostgreSQL's own path; the SQLite file's is tenant-restore-file.test.ts)
/**
 * The PostgreSQL half of restoring one tenant in place (src/backup/tenant-restore-pg.ts and
 * PgTenantStores.replace), on the machine's PostgreSQL, without keyd or a server: a tenant's schema
 * snapshotted as a backup does (pg-snapshot.ts), written to after it, the snapshot's file loaded
 * into a scratch schema and swapped in. What must hold: the records are the snapshot's, the outbox
 * is the live one plus the restore's event (seqs kept, the identity past the live ones), each data
 * key keeps the larger reservation and the live key ring; a read that comes during the swap waits and
 * then reads the new schema; another registry's removeScratch leaves a scratch whose preparer is
 * alive, and drops one nobody holds; a failure before the commit leaves the live schema as it was;
 * no scratch schema remains.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import type { AuditEvent } from '../../src/audit/event.ts';
import { createPgSnapshotter } from '../../src/backup/pg-snapshot.ts';
import type { SnapshotFile } from '../../src/backup/snapshot.ts';
import { carryForwardPg, prepareScratchSchema } from '../../src/backup/tenant-restore-pg.ts';
import { openPgControlStore } from '../../src/server/control-store.ts';
import { createPgTenantStores } from '../../src/store/pg/tenant-stores.ts';
import type { TenantStores } from '../../src/store/types.ts';
import { type TenantDB, tenantStorePgMigrations } from '../../src/vault/tenant-store-schema.ts';
import { type FreshPgDatabase, freshPgDatabase, testPgPrefix } from '../helpers/pg.ts';

const TENANT = 'acme_restore-1';

describe('a tenant schema restored in place (PostgreSQL)', () => {
  let database: FreshPgDatabase;
  let stores: TenantStores<TenantDB>;
  let folder: string;
  let backup: SnapshotFile;

  const query = async <R extends object>(text: string, params: unknown[] = []): Promise<R[]> => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as R[];
    } finally {
      await client.end();
    }
  };
  const scratchSchemas = async () =>
    (
      await query<{ nspname: string }>(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tresor\\_restore\\_%' ORDER BY nspname",
      )
    ).map((r) => r.nspname);
  const live = `"tenant_${TENANT}"`;
  const event = (action: string): AuditEvent =>
    ({
      at: new Date().toISOString(),
      tenant: TENANT,
      action,
      outcome: 'success',
      actor: { kind: 'system', job: 'test' },
    }) as unknown as AuditEvent;

  before(async () => {
    database = await freshPgDatabase({ prefix: testPgPrefix('tresor_test') });
    folder = mkdtempSync(join(tmpdir(), 'tenant-restore-pg-'));
    stores = await createPgTenantStores<TenantDB>({ url: database.url, migrations: tenantStorePgMigrations });
    const store = await stores.create(TENANT);
    await store.write(async (trx) => {
      await sql`INSERT INTO data_keys (key_id, tenant, purpose, wrapped, state, created_at, reserved)
                VALUES ('k1', ${TENANT}, 'field', ${Buffer.from('wrapped-1')}, 'active', '2026-01-01', 100)`.execute(
        trx,
      );
      await sql`INSERT INTO collections (name, schema_version, schema, blind_index_key_id, retention_days, created_at, updated_at)
                VALUES ('people', 1, '{}', 'k1', NULL, 1, 1)`.execute(trx);
      for (const id of ['r1', 'r2', 'r3'])
        await sql`INSERT INTO records (id, collection, version, created_at, updated_at, expires_at, fields)
                  VALUES (${id}, 'people', 1, 1, 1, NULL, ${Buffer.from(`fields of ${id}`)})`.execute(trx);
      for (let i = 0; i < 3; i++)
        await sql`INSERT INTO audit_events (at, tenant, action, event) VALUES ('t', ${TENANT}, 'record.create', '{}')`.execute(
          trx,
        );
    });
    // The control store's schema is part of every snapshot.
    await (await openPgControlStore(database.url)).close();
    const files = await createPgSnapshotter({ url: database.url, controlSchema: 'tresor' }).snapshot(folder, [
      TENANT,
    ]);
    const file = files.find((f) => f.tenant === TENANT);
    assert.ok(file);
    backup = file;
    // After the backup: a record changed, one added, events, a key's reservation raised, a new active key.
    await store.write(async (trx) => {
      await sql`UPDATE records SET version = 2, fields = ${Buffer.from('changed')} WHERE id = 'r1'`.execute(
        trx,
      );
      await sql`INSERT INTO records (id, collection, version, created_at, updated_at, expires_at, fields)
                VALUES ('late', 'people', 1, 2, 2, NULL, ${Buffer.from('late')})`.execute(trx);
      for (let i = 0; i < 2; i++)
        await sql`INSERT INTO audit_events (at, tenant, action, event) VALUES ('t', ${TENANT}, 'record.update', '{}')`.execute(
          trx,
        );
      await sql`UPDATE data_keys SET reserved = 500, state = 'decrypt-only' WHERE key_id = 'k1'`.execute(trx);
      await sql`INSERT INTO data_keys (key_id, tenant, purpose, wrapped, state, created_at, reserved)
                VALUES ('k2', ${TENANT}, 'field', ${Buffer.from('wrapped-2')}, 'active', '2026-02-01', 7)`.execute(
        trx,
      );
    });
  });

  after(async () => {
    await stores?.close();
    await database?.drop();
    if (folder) rmSync(folder, { recursive: true, force: true });
  });

  it('a failure before the commit drops nothing of the live schema; the scratch is dropped', async () => {
    const name = await stores.scratchPath(TENANT);
    const scratch = await prepareScratchSchema({
      url: database.url,
      schema: name,
      path: backup.path,
      file: backup,
    });
    await assert.rejects(
      stores.replace(TENANT, name, async (liveSchema, swap) => {
        assert.ok(swap);
        await carryForwardPg(swap, name, liveSchema, event('tenant.restore'));
        throw new Error('the close won the race');
      }),
      /the close won the race/,
    );
    await scratch.drop();
    assert.deepEqual(await scratchSchemas(), []);
    const ids = await query<{ id: string }>(`SELECT id FROM ${live}.records ORDER BY id`);
    assert.deepEqual(
      ids.map((r) => r.id),
      ['late', 'r1', 'r2', 'r3'],
    );
    const outbox = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${live}.audit_events`);
    assert.equal(outbox[0]?.n, 5, 'the restore event went with the rolled-back transaction');
  });

  it('loads the backup into a scratch schema, carries the live outbox and keys forward and swaps it in; a read during the swap waits', async () => {
    const name = await stores.scratchPath(TENANT);
    assert.match(name, /^tresor_restore_[0-9a-f]{16}$/);
    const scratch = await prepareScratchSchema({
      url: database.url,
      schema: name,
      path: backup.path,
      file: backup,
    });
    // Another process starting now (another registry on the database) leaves the held scratch alone.
    const other = await createPgTenantStores<TenantDB>({
      url: database.url,
      migrations: tenantStorePgMigrations,
    });
    try {
      assert.equal(await other.removeScratch(), 0);
    } finally {
      await other.close();
    }
    assert.deepEqual(await scratchSchemas(), [name]);

    const handle = await stores.open(TENANT);
    let during: Promise<{ id: string }[]> | undefined;
    await stores.replace(TENANT, name, async (liveSchema, swap) => {
      assert.ok(swap);
      assert.equal(liveSchema, `tenant_${TENANT}`);
      // A read of the tenant that comes now waits for the swap (it is not refused).
      during = handle.db.selectFrom('records').select('id').orderBy('id').execute();
      await carryForwardPg(swap, name, liveSchema, event('tenant.restore'));
    });
    await scratch.close();
    assert.ok(during);
    assert.deepEqual(
      (await during).map((r) => r.id),
      ['r1', 'r2', 'r3'],
      'the waiting read saw the restored schema',
    );
    assert.deepEqual(await scratchSchemas(), []);

    // The records are the backup's.
    const records = await query<{ id: string; version: number; fields: Buffer }>(
      `SELECT id, version, fields FROM ${live}.records ORDER BY id`,
    );
    assert.deepEqual(
      records.map((r) => [r.id, Number(r.version), r.fields.toString()]),
      [
        ['r1', 1, 'fields of r1'],
        ['r2', 1, 'fields of r2'],
        ['r3', 1, 'fields of r3'],
      ],
    );
    // The outbox is the live one (seqs 1..5) plus the restore's event after it.
    const outbox = await query<{ seq: string; action: string }>(
      `SELECT seq, action FROM ${live}.audit_events ORDER BY seq`,
    );
    assert.deepEqual(
      outbox.map((r) => [Number(r.seq), r.action]),
      [
        [1, 'record.create'],
        [2, 'record.create'],
        [3, 'record.create'],
        [4, 'record.update'],
        [5, 'record.update'],
        [6, 'tenant.restore'],
      ].map(([seq, action]) => [seq, action]),
    );
    // The live key ring, each key with the larger reservation.
    const keys = await query<{ key_id: string; state: string; reserved: string; wrapped: Buffer }>(
      `SELECT key_id, state, reserved, wrapped FROM ${live}.data_keys ORDER BY key_id`,
    );
    assert.deepEqual(
      keys.map((k) => [k.key_id, k.state, Number(k.reserved), k.wrapped.toString()]),
      [
        ['k1', 'decrypt-only', 500, 'wrapped-1'],
        ['k2', 'active', 7, 'wrapped-2'],
      ],
    );
    // Writes after the swap go to the new schema through the registry, the outbox going on.
    const store = await stores.open(TENANT);
    await store.write(async (trx) => {
      await sql`INSERT INTO audit_events (at, tenant, action, event) VALUES ('t', ${TENANT}, 'record.create', '{}')`.execute(
        trx,
      );
    });
    const last = await query<{ seq: string }>(`SELECT max(seq) AS seq FROM ${live}.audit_events`);
    assert.ok(Number(last[0]?.seq) > 6, 'the next event follows the live ones');
  });

  it('removeScratch drops a scratch schema no session holds (a restore killed half-way)', async () => {
    await query('CREATE SCHEMA tresor_restore_0123456789abcdef');
    await query('CREATE TABLE tresor_restore_0123456789abcdef.records (id text)');
    assert.equal(await stores.removeScratch(), 1);
    assert.deepEqual(await scratchSchemas(), []);
  });
});
