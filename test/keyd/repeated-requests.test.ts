// backends: sqlite postgres
/**
 * Requests keyd does at most once (src/keyd/repeated-requests.ts): rotate, retire and destroy
 * repeated with their request id answer the first outcome and change nothing more; an id is bound
 * to its request; the audit log's copy of keyd's operations shows a repeat as a repeat. On the
 * PostgreSQL pass the key store is keyd's PostgreSQL store (and the control store PostgreSQL too).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKeydOpsMirror, KEYD_REPEATED_REQUEST } from '../../src/audit/keyd-ops.ts';
import type { Caller, OpsLogEntry } from '../../src/keyd/operations.ts';
import { openPgKeyStore } from '../../src/keyd/pg-store.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { onPostgres } from '../helpers/backend.ts';
import { openTestControlStore } from '../helpers/control-store.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';

const SERVER: Caller = { id: 'unix:api-node', role: 'server' };
const OTHER: Caller = { id: 'unix:other-node', role: 'server' };

function refusedWith(code: string) {
  return (error: unknown) => {
    assert.equal((error as { code?: string }).code, code);
    return true;
  };
}

describe('requests keyd does at most once', () => {
  let dir: string;
  let db: FreshPgDatabase | undefined;
  let keyd: KeydService;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keyd-repeated-'));
    initDevFile(dir);
    db = onPostgres ? await freshPgDatabase() : undefined;
    const store = db ? await openPgKeyStore(db.url) : undefined;
    keyd = createKeyService({
      dir,
      ...(store ? { store, ownsStore: true } : {}),
      provider: new DevFileProvider(dir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    await keyd.call('unseal', { secret: '' }, SERVER);
  });

  after(async () => {
    await keyd?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function entries(tenant: string, op: string): Promise<OpsLogEntry[]> {
    const { entries } = await keyd.call('opsLog', { limit: 1000 }, { id: 'test-admin', role: 'admin' });
    return entries.filter((e) => e.tenant === tenant && e.op === op);
  }

  test('a rotation repeated with its request id answers the first outcome and rotates once', async () => {
    await keyd.call('createTenantKey', { tenant: 'rot' }, SERVER);
    const requestId = 'rotate-request-0001';
    const first = await keyd.call('rotateTenantKey', { tenant: 'rot', requestId }, SERVER);
    const again = await keyd.call('rotateTenantKey', { tenant: 'rot', requestId }, SERVER);
    assert.equal(first.version, 2);
    assert.deepEqual(again, first, 'the same answer');
    const status = await keyd.call('tenantKeyStatus', { tenant: 'rot' }, SERVER);
    assert.deepEqual(
      status.versions.map((v) => [v.version, v.state]),
      [
        [1, 'decrypt-only'],
        [2, 'active'],
      ],
      'rotated once',
    );
    const logged = await entries('rot', 'rotateTenantKey');
    assert.equal(logged.length, 2);
    assert.match(logged[0]?.detail ?? '', /^version 2 active/);
    assert.match(logged[1]?.detail ?? '', /^repeated request: the outcome of entry \d+, not done again$/);
    assert.equal(logged[1]?.keyId, first.keyId);
    // A new request (another id) is a new rotation.
    const next = await keyd.call(
      'rotateTenantKey',
      { tenant: 'rot', requestId: 'rotate-request-0002' },
      SERVER,
    );
    assert.equal(next.version, 3);
    assert.equal((await keyd.verifyOpsLog()).ok, true);
  });

  test('the audit log copies a repeated rotation as a repeat of the first, not as a second rotation', async () => {
    await keyd.call('createTenantKey', { tenant: 'aud' }, SERVER);
    const requestId = 'rotate-request-audit';
    const first = await keyd.call('rotateTenantKey', { tenant: 'aud', requestId }, SERVER);
    await keyd.call('rotateTenantKey', { tenant: 'aud', requestId }, SERVER);
    const [made, repeat] = await entries('aud', 'rotateTenantKey');
    assert.ok(made && repeat);
    const store = await openTestControlStore('keyd-repeat-audit');
    try {
      const mirror = createKeydOpsMirror({
        control: store.control,
        opsLog: async (from, limit) =>
          (await keyd.call('opsLog', { from, limit }, { id: 'test-admin', role: 'admin' })).entries,
      });
      assert.ok((await mirror.runOnce()) > 0);
      const rows = await store.control.db
        .selectFrom('audit_events')
        .select(['action', 'event'])
        .where('tenant', '=', 'aud')
        .orderBy('seq')
        .execute();
      const copied = rows.map((r) => ({ action: r.action, ...(JSON.parse(r.event) as { target: object }) }));
      assert.deepEqual(
        copied.map((e) => e.action),
        ['keyd.create-tenant-key', 'keyd.rotate-tenant-key', KEYD_REPEATED_REQUEST],
        'one rotation, then its repeat',
      );
      assert.deepEqual(copied[1]?.target, {
        keydSeq: made.seq,
        caller: SERVER.id,
        keyId: first.keyId,
        keydHash: made.hash,
      });
      assert.deepEqual(copied[2]?.target, {
        keydSeq: repeat.seq,
        caller: SERVER.id,
        keyId: first.keyId,
        keydHash: repeat.hash,
        repeats: 'keyd.rotate-tenant-key',
        repeatOf: made.seq,
      });
      // Copied once: a second pass finds nothing new for the tenant.
      await mirror.runOnce();
      const again = await store.control.db
        .selectFrom('audit_events')
        .select('seq')
        .where('tenant', '=', 'aud')
        .execute();
      assert.equal(again.length, 3);
    } finally {
      await store.close();
    }
  });

  test('a retire repeated answers the retired version instead of "already retired"', async () => {
    await keyd.call('createTenantKey', { tenant: 'ret' }, SERVER);
    await keyd.call('rotateTenantKey', { tenant: 'ret' }, SERVER);
    const requestId = 'retire-request-0001';
    const first = await keyd.call('retireTenantKeyVersion', { tenant: 'ret', version: 1, requestId }, SERVER);
    const again = await keyd.call('retireTenantKeyVersion', { tenant: 'ret', version: 1, requestId }, SERVER);
    assert.equal(first.state, 'retired');
    assert.deepEqual(again, first);
    // Without its id, a second retire is a new request, refused as before.
    await assert.rejects(
      keyd.call('retireTenantKeyVersion', { tenant: 'ret', version: 1 }, SERVER),
      refusedWith('TRESOR_ERR_KEY_VERSION_RETIRED'),
    );
  });

  test('a destroy repeated answers the first outcome: the same key ids and time', async () => {
    await keyd.call('createTenantKey', { tenant: 'des' }, SERVER);
    await keyd.call('rotateTenantKey', { tenant: 'des' }, SERVER);
    const requestId = 'destroy-request-0001';
    const first = await keyd.call('destroyTenantKey', { tenant: 'des', mode: 'now', requestId }, SERVER);
    const again = await keyd.call('destroyTenantKey', { tenant: 'des', mode: 'now', requestId }, SERVER);
    assert.equal(first.state, 'destroyed');
    assert.equal(first.keyIdsDestroyed.length, 2);
    assert.deepEqual(again, first);
    const logged = await entries('des', 'destroyTenantKey');
    assert.deepEqual(
      logged.map((e) => e.outcome),
      ['ok', 'ok'],
    );
    assert.match(logged[1]?.detail ?? '', /^repeated request/);
    await assert.rejects(
      keyd.call('destroyTenantKey', { tenant: 'des', mode: 'now' }, SERVER),
      refusedWith('TRESOR_ERR_TENANT_KEY_DESTROYED'),
    );
  });

  test('a scheduled destroy repeated answers the same schedule', async () => {
    await keyd.call('createTenantKey', { tenant: 'sch' }, SERVER);
    const args = {
      tenant: 'sch',
      mode: 'schedule',
      graceSeconds: 3600,
      requestId: 'schedule-request-01',
    } as const;
    const first = await keyd.call('destroyTenantKey', args, SERVER);
    const again = await keyd.call('destroyTenantKey', args, SERVER);
    assert.equal(first.state, 'pending-destroy');
    assert.deepEqual(again, first);
  });

  test('a request id names one request of one caller: used for another, it is refused and nothing changes', async () => {
    await keyd.call('createTenantKey', { tenant: 'one' }, SERVER);
    await keyd.call('createTenantKey', { tenant: 'two' }, SERVER);
    const requestId = 'bound-request-00001';
    await keyd.call('rotateTenantKey', { tenant: 'one', requestId }, SERVER);
    // One after another: each call starts only when the one before was refused (started together,
    // a refusal that came before its assert.rejects would count as an unhandled rejection).
    for (const [op, caller] of [
      [() => keyd.call('rotateTenantKey', { tenant: 'two', requestId }, SERVER), 'another tenant'],
      [() => keyd.call('destroyTenantKey', { tenant: 'one', mode: 'now', requestId }, SERVER), 'another op'],
      [() => keyd.call('rotateTenantKey', { tenant: 'one', requestId }, OTHER), 'another caller'],
    ] as const) {
      await assert.rejects(op(), refusedWith('TRESOR_ERR_REQUEST_INVALID'), caller);
    }
    const [one, two] = await Promise.all([
      keyd.call('tenantKeyStatus', { tenant: 'one' }, SERVER),
      keyd.call('tenantKeyStatus', { tenant: 'two' }, SERVER),
    ]);
    assert.equal(one.state, 'active');
    assert.equal(one.versions.length, 2);
    assert.equal(two.versions.length, 1);
  });

  test('refuses a malformed request id', async () => {
    await keyd.call('createTenantKey', { tenant: 'bad' }, SERVER);
    for (const requestId of ['short', 'x'.repeat(65), 'with space in it!!', '']) {
      await assert.rejects(
        keyd.call('rotateTenantKey', { tenant: 'bad', requestId }, SERVER),
        refusedWith('TRESOR_ERR_REQUEST_INVALID'),
      );
    }
    assert.equal((await keyd.call('tenantKeyStatus', { tenant: 'bad' }, SERVER)).versions.length, 1);
  });
});
