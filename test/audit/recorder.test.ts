/** Where the pipeline's audit events are written: a tenant's API keys' to its store, the rest to control. */
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
  const opened: string[] = [];

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

  it("writes an API key's event of a tenant to that tenant's store, everything else to control", async () => {
    const recorder = createAuditRecorder({
      control,
      openTenant: async (id) => {
        opened.push(id);
        return tenant;
      },
    });
    await recorder.record(event('api-key', 'ten_a'), 'ten_a');
    await recorder.record(event('operator-admin', 'ten_a'), 'ten_a');
    await recorder.record(event('customer', 'ten_a'), 'ten_a');
    await recorder.record(event('api-key', null), null);
    await recorder.record(event('anonymous', null), null);
    assert.deepEqual(opened, ['ten_a']);
    assert.deepEqual(await actions(tenant), ['api-key ten_a']);
    assert.deepEqual(await actions(control), [
      'operator-admin ten_a',
      'customer ten_a',
      'api-key null',
      'anonymous null',
    ]);
  });
});
