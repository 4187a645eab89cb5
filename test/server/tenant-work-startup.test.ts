// backends: sqlite postgres
/**
 * Start-up and jobs independent of the tenant count: with thousands of tenants, a server start opens
 * no tenant store before it listens (the sequencer opens only tenants marked as having pending
 * outbox events: src/audit/pending-sources.ts); an audited write whose events were committed to its
 * tenant's outbox but never moved (a crash between the tenant's commit and the sequencer) is moved
 * into the log after the restart; the retention job deletes a tenant's expired records after a
 * restart and opens no other tenant's store (src/vault/retention-due.ts).
 *
 * The many tenants are made directly in the stores, not through HTTP (too slow for thousands):
 * control-store rows as the tenant service writes them, and store files copied from one migrated
 * store (SQLite: 2,000) or schemas made by the registry (PostgreSQL: 200, each a CREATE SCHEMA and
 * its migrations).
 */

import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { appendAuditEvent } from '../../src/audit/event.ts';
import { leafTexts } from '../../src/audit/leaf-codec.ts';
import { createPgPendingSources, createSqlitePendingSources } from '../../src/audit/pending-sources.ts';
import { systemEvent } from '../../src/audit/system-event.ts';
import { openDataBackend } from '../../src/server/backend.ts';
import { CONTROL_SCHEMA } from '../../src/server/control-store.ts';
import { tenantSchema } from '../../src/store/pg/tenant-stores.ts';
import { onPostgres } from '../helpers/backend.ts';
import { operatorToken } from '../helpers/console.ts';
import { insertTenant } from '../helpers/control-store.ts';
import { controlRows, tenantRows } from '../helpers/stack-sql.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { caller, PEOPLE } from '../vault/helpers.ts';

const MANY = onPostgres ? 200 : 2_000;
const SCHEMAS_AT_ONCE = 8;
const DAY = 86_400_000;

describe('start-up and jobs open only the tenants with work', () => {
  let s: TresorStack;
  let acme: string;
  let expiredId: string;
  let keptId: string;

  before(async () => {
    s = await startTresorStack({ server: 'in-process' });
    const server = s.server;
    assert.ok(server);
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Acme' },
    });
    assert.equal(created.status, 201, created.text);
    acme = created.json<{ id: string }>().id;
    await server.vault.putCollection(acme, 'people', { ...PEOPLE, retentionDays: 1 }, caller());
    expiredId = (await server.vault.createRecord(acme, 'people', { email: 'old@example.com' }, caller())).id;
    keptId = (await server.vault.createRecord(acme, 'people', { email: 'new@example.com' }, caller())).id;

    // The many tenants, straight into the stores.
    const at = new Date().toISOString();
    const ids = Array.from({ length: MANY }, (_, i) => `many${String(i).padStart(4, '0')}`);
    // All at once: the control store's group commit makes them a few transactions, not one each.
    await Promise.all(ids.map((id) => insertTenant(server.control, id, { at })));
    if (onPostgres) {
      // A few at a time: each is a CREATE SCHEMA and its migrations, mostly waiting on commits.
      for (let i = 0; i < ids.length; i += SCHEMAS_AT_ONCE)
        await Promise.all(ids.slice(i, i + SCHEMAS_AT_ONCE).map((id) => server.tenantStores.create(id)));
    } else {
      await server.tenantStores.create('template');
      await server.tenantStores.destroy('template').catch(() => undefined);
    }
    await s.stopServer();
    if (!onPostgres) {
      // One migrated, closed store file (no WAL beside it), copied for every tenant.
      const backend = await openDataBackend({ dataDir: s.dataDir, database: s.database });
      await backend.tenantStores.create(ids[0] as string);
      await backend.tenantStores.close();
      await backend.control.close();
      const tenants = join(s.dataDir, 'tenants');
      for (const id of ids.slice(1))
        copyFileSync(join(tenants, `${ids[0]}.sqlite`), join(tenants, `${id}.sqlite`));
    }
  });

  after(async () => {
    await s?.stop();
  });

  it(`starts with ${MANY + 1} tenants without opening a tenant store that has no work`, async () => {
    // The first start after the writes above may still find acme marked (its mark is kept a while
    // after a write): it opens that one store at most, and clears the mark.
    await s.startServer();
    assert.ok((s.server?.tenantStores.stats().opened ?? Infinity) <= 1);
    await s.stopServer();
    await s.startServer();
    const stats = s.server?.tenantStores.stats();
    assert.equal(stats?.opened, 0, 'no tenant store opened before listening');
    const marks = await controlRows<{ source: string }>(s, 'SELECT source FROM audit_pending_sources');
    assert.deepEqual(marks, []);
    await s.stopServer();
  });

  it('moves an event committed to a tenant outbox but never sequenced, after a restart, opening only that tenant', async () => {
    // The writer's side of a crash: the mark and the tenant's commit, then no sequencer at all.
    const marker = `crash-${process.pid}-${Date.now()}`;
    const backend = await openDataBackend({ dataDir: s.dataDir, database: s.database });
    const pending =
      backend.kind === 'postgres'
        ? createPgPendingSources({ control: backend.control, controlSchema: CONTROL_SCHEMA, tenantSchema })
        : createSqlitePendingSources(backend.control);
    const store = await backend.tenantStores.open(acme);
    await pending.write(acme, store, (trx) =>
      appendAuditEvent(
        trx,
        systemEvent({ id: 'crash-test', action: 'system.job', target: { marker } }, new Date()),
      ),
    );
    pending.close();
    await backend.tenantStores.close();
    await backend.control.close();

    await s.startServer();
    const server = s.server;
    assert.ok(server);
    assert.equal(server.tenantStores.stats().opened, 1, 'only the marked tenant is opened');
    assert.deepEqual(server.tenantStores.openTenants(), [acme]);
    await server.audit.sequencer.drain();
    const moved = (
      await controlRows<{ block: Buffer }>(s, 'SELECT block FROM audit_leaves ORDER BY idx')
    ).flatMap((r) => leafTexts(r.block).map((leaf) => ({ leaf })));
    assert.equal(moved.filter((r) => r.leaf.includes(marker)).length, 1, 'moved exactly once');
    await s.stopServer();
  });

  it('runs retention after a restart for the tenant whose records expired, and opens no other', async () => {
    // A day passes for one record (its expiry moved into the past, straight in the store).
    const past = Date.now() - DAY;
    const backend = await openDataBackend({ dataDir: s.dataDir, database: s.database });
    const store = await backend.tenantStores.open(acme);
    await store.write((trx) =>
      trx.updateTable('records').set({ expires_at: past }).where('id', '=', expiredId).execute(),
    );
    await backend.tenantStores.close();
    await backend.control.close();
    await s.startServer();
    const server = s.server;
    assert.ok(server);
    const openedAtStart = server.tenantStores.stats().opened;
    await server.runJobs();
    assert.equal(server.jobs.status()['vault.retention']?.failures, 0);
    assert.deepEqual(server.tenantStores.openTenants(), [acme], 'only acme was opened');
    assert.ok(server.tenantStores.stats().opened - openedAtStart <= 1);
    const left = await tenantRows<{ id: string }>(s, acme, 'SELECT id FROM records ORDER BY id');
    assert.deepEqual(
      left.map((r) => r.id),
      [keptId],
    );
    // Next due: the kept record's expiry at the latest (a day from its creation), not now.
    const due = await controlRows<{ tenant: string; due_at: number | string }>(
      s,
      'SELECT tenant, due_at FROM vault_retention_due',
    );
    assert.equal(due.length, 1);
    assert.equal(due[0]?.tenant, acme);
    assert.ok(Number(due[0]?.due_at) > Date.now());
    // A second pass opens nothing new: nothing is due.
    const before = server.tenantStores.stats().opened;
    await server.runJobs();
    assert.equal(server.tenantStores.stats().opened, before);
  });
});
