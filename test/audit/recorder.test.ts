/** Where the pipeline's audit events are written: all to the control store's outbox, each naming its tenant. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AuditEvent, auditEventsMigration, type WithAuditEvents } from '../../src/audit/event.ts';
import { createAuditRecorder } from '../../src/audit/recorder.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/store.ts';

const event = (kind: AuditEvent['actor']['kind'], tenant: string | null): AuditEvent => ({
  at: '2030-01-01T00:00:00.000Z',
  actor: { kind, id: `${kind}-1` },
  tenant,
  action: 'record.read',
  outcome: 'success',
});

describe('audit recorder', () => {
  let dir: string;
  let control: SqliteStore<WithAuditEvents>;
  let tenant: SqliteStore<WithAuditEvents>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-recorder-'));
    const migrations = { '0001_audit_events': auditEventsMigration };
    control = await openSqliteStore(join(dir, 'control.sqlite'), migrations);
    tenant = await openSqliteStore(join(dir, 'ten_a.sqlite'), migrations);
  });
  after(async () => {
    await control.close();
    await tenant.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const actions = async (store: SqliteStore<WithAuditEvents>) =>
    (await store.db.selectFrom('audit_events').select('event').orderBy('seq').execute()).map((r) => {
      const e = JSON.parse(r.event) as AuditEvent;
      return `${e.actor.kind} ${e.tenant}`;
    });

  it('writes every event to the control store, a tenant API key’s too, with its tenant named, and opens no tenant store', async () => {
    const recorder = createAuditRecorder({ control });
    await recorder.record(event('api-key', 'ten_a'), 'ten_a');
    await recorder.record(event('operator-admin', 'ten_a'), 'ten_a');
    await recorder.record(event('customer', 'ten_a'), 'ten_a');
    await recorder.record(event('api-key', null), null);
    await recorder.record(event('anonymous', null), null);
    assert.deepEqual(await actions(tenant), [], 'nothing in the tenant store');
    assert.deepEqual(await actions(control), [
      'api-key ten_a',
      'operator-admin ten_a',
      'customer ten_a',
      'api-key null',
      'anonymous null',
    ]);
    const tenants = await control.db.selectFrom('audit_events').select('tenant').orderBy('seq').execute();
    assert.deepEqual(
      tenants.map((r) => r.tenant),
      ['ten_a', 'ten_a', 'ten_a', null, null],
      'the outbox row names the tenant (the log’s tenant column is copied from it)',
    );
  });
});
