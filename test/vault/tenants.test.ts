/**
 * The tenant lifecycle against the real key service (dev root key file, SQLite key store), a real
 * SQLite control store and real SQLite tenant store files: provisioning and closing, crypto-
 * shredding, the signed deletion certificate, resuming after a failure at every step, and the
 * automatic close at contract end.
 * Most tests close with a zero grace, so a close finishes at once; the grace tests set one.
 * The tenant store registry is the real one (src/store/sqlite/tenant-stores.ts), wrapped to inject
 * faults; keyd calls and control-store writes are wrapped the same way.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createApiKeyService, tenantApiKeys } from '../../src/identity/api-keys.ts';
import { createAuthenticator } from '../../src/identity/authenticate.ts';
import { KeydError } from '../../src/keyd/errors.ts';
import type { Caller, KeydOperationName, KeyService } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import { createTenantStores, type TenantStores } from '../../src/store/sqlite/tenant-stores.ts';
import type { Store } from '../../src/store/types.ts';
import { verifyDeletionCertificate } from '../../src/vault/deletion-certificate.ts';
import { idempotencyRequestHash } from '../../src/vault/idempotency.ts';
import { tenantStoreMigrations } from '../../src/vault/tenant-store-schema.ts';
import {
  autoCloseDueAt,
  type ClosedTenant,
  type CloseOutcome,
  createTenantService,
  type TenantService,
  type TenantServiceOptions,
  type TenantStoreRegistry,
} from '../../src/vault/tenants.ts';

const ADMIN: Caller = { id: 'test', role: 'admin' };
const SERVER: Caller = { id: 'unix:tresor-server', role: 'server' };
const OPERATOR = { actor: { kind: 'operator-admin' as const, id: 'opr_test' }, requestId: 'req-1' };
const CONFIG = { closeGraceDays: 30, backupRetentionDays: 35 };
const quiet = { warn: () => {} };

/** `unavailable-*`: as the keyd client reports a call lost with a keyd instance (TRESOR_ERR_KEYD_UNAVAILABLE). */
type When = 'before' | 'after' | 'unavailable-before' | 'unavailable-after';

/** One-shot faults: the next matching call throws, before or after doing its work. */
interface Faults {
  keys?: { op: KeydOperationName; when: When };
  registry?: { method: 'create' | 'destroy'; when: When };
  /** Fails the n-th control-store write from now (1 = the next one), before it runs. */
  controlWrite?: number;
  export?: boolean;
}

class InjectedFault extends Error {
  readonly code = 'TEST_INJECTED_FAULT';
}

/** The real tenant store registry, with fault hooks on create and destroy. */
function faultyRegistry(
  real: TenantStores<unknown>,
  faults: () => Faults,
): TenantStoreRegistry & { close(): Promise<void> } {
  const fault = (method: 'create' | 'destroy', when: When) => {
    const f = faults();
    if (f.registry?.method === method && f.registry.when === when) {
      delete f.registry;
      throw new InjectedFault(`registry ${method} fails ${when}`);
    }
  };
  return {
    async create(tenant) {
      fault('create', 'before');
      const store = await real.create(tenant);
      fault('create', 'after');
      return store;
    },
    open: (tenant) => real.open(tenant),
    exists: (tenant) => real.exists(tenant),
    async destroy(tenant) {
      fault('destroy', 'before');
      await real.destroy(tenant);
      fault('destroy', 'after');
    },
    close: () => real.close(),
  };
}

/** The control store, with a fault hook on write(). */
function faultyControl(store: Store<ControlDB>, faults: () => Faults): Store<ControlDB> {
  return {
    location: store.location,
    db: store.db,
    write(work) {
      const f = faults();
      if (f.controlWrite !== undefined) {
        f.controlWrite -= 1;
        if (f.controlWrite === 0) {
          delete f.controlWrite;
          return Promise.reject(new InjectedFault('control write fails'));
        }
      }
      return store.write(work);
    },
    healthy: () => store.healthy(),
    close: () => store.close(),
  };
}

/** The key service as the server sees it (role server), with a fault hook. */
function faultyKeys(service: KeydService, faults: () => Faults): KeyService {
  return {
    async call(op, args) {
      const f = faults();
      const hit = f.keys?.op === op ? f.keys.when : undefined;
      if (hit === 'before') {
        delete f.keys;
        throw new InjectedFault(`keyd ${op} fails before`);
      }
      if (hit === 'unavailable-before') {
        delete f.keys;
        throw new KeydError('TRESOR_ERR_KEYD_UNAVAILABLE', 'keyd cannot be reached');
      }
      const result = await service.call(op, args, SERVER);
      if (hit === 'after') {
        delete f.keys;
        throw new InjectedFault(`keyd ${op} answer lost`);
      }
      if (hit === 'unavailable-after') {
        delete f.keys;
        throw new KeydError('TRESOR_ERR_KEYD_UNAVAILABLE', 'keyd cannot be reached');
      }
      return result;
    },
  };
}

interface Rig {
  dir: string;
  keyd: KeydService;
  control: Store<ControlDB>;
  registry: ReturnType<typeof faultyRegistry>;
  storesDir: string;
  faults: Faults;
  now: Date;
  exported: string[];
  /** A tenant service as a fresh server process would build it. */
  service(options?: Partial<TenantServiceOptions<ControlDB>>): TenantService;
  close(): Promise<void>;
}

async function rig(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-tenants-'));
  const keydDir = join(dir, 'keyd');
  mkdirSync(keydDir, { mode: 0o700 });
  initDevFile(keydDir);
  // keyd and the tenant service share the test's clock, so a grace period ends when the test says.
  const keyd = createKeyService({
    dir: keydDir,
    provider: new DevFileProvider(keydDir),
    config: { maintenanceIntervalSeconds: 0 },
    clock: () => now(),
  });
  const start = new Date('2030-03-01T10:00:00.000Z');
  let now = () => start;
  await keyd.call('unseal', { secret: '' }, ADMIN);
  const control = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
  const storesDir = join(dir, 'tenants');
  const r: Rig = {
    dir,
    keyd,
    control,
    storesDir,
    faults: {},
    now: start,
    exported: [],
    registry: faultyRegistry(createTenantStores({ dir, migrations: tenantStoreMigrations }), () => r.faults),
    service(options = {}) {
      return createTenantService<ControlDB>({
        control: faultyControl(control, () => r.faults),
        apiKeys: tenantApiKeys,
        tenantStores: r.registry,
        keys: faultyKeys(keyd, () => r.faults),
        clock: () => r.now,
        config: CONFIG,
        logger: quiet,
        keyDestroyGraceSeconds: 0,
        exporter: async (tenant, target) => {
          if (r.faults.export) {
            delete r.faults.export;
            throw new InjectedFault('export fails');
          }
          // The export runs while the tenant key and store still exist.
          await keyd.call('generateDataKey', { tenant, purpose: 'backup' }, SERVER);
          assert.ok(existsSync(join(storesDir, `${tenant}.sqlite`)));
          r.exported.push(tenant);
          return new TextEncoder().encode(
            `export of ${tenant} for ${'recipient' in target ? 'recipient' : 'passphrase'}`,
          );
        },
        ...options,
      });
    },
    async close() {
      await r.registry.close();
      await control.close();
      await keyd.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  now = () => r.now;
  return r;
}

/** The outcome of a close that finished at once (zero grace). */
function closedOf(outcome: CloseOutcome): ClosedTenant {
  assert.equal(outcome.state, 'closed');
  return outcome as ClosedTenant;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return String((error as { code?: unknown }).code);
  }
  return 'no error';
}

async function tenantRow(r: Rig, id: string) {
  return r.control.db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

/** Fully active: state, keyd key active, store present, a live admin API key. */
async function assertFullyActive(r: Rig, id: string): Promise<void> {
  assert.equal((await tenantRow(r, id)).state, 'active');
  assert.equal((await r.keyd.call('tenantKeyStatus', { tenant: id }, ADMIN)).state, 'active');
  assert.ok(existsSync(join(r.storesDir, `${id}.sqlite`)), 'store file exists');
  const keys = await r.control.db
    .selectFrom('api_keys')
    .selectAll()
    .where('tenant', '=', id)
    .where('revoked_at', 'is', null)
    .execute();
  assert.equal(keys.length, 1);
  assert.deepEqual(JSON.parse(keys[0]?.access ?? ''), ['read', 'write', 'admin']);
  assert.equal(JSON.parse(keys[0]?.collections ?? ''), '*');
}

/** Fully closed: state, keyd key destroyed, no store file, every key revoked, a certificate that verifies. */
async function assertFullyClosed(r: Rig, id: string, service: TenantService): Promise<void> {
  const row = await tenantRow(r, id);
  assert.equal(row.state, 'closed');
  const status = await r.keyd.call('tenantKeyStatus', { tenant: id }, ADMIN);
  assert.equal(status.state, 'destroyed');
  assert.deepEqual(
    readdirSync(r.storesDir).filter((f) => f.includes(id)),
    [],
    'no file of the tenant store remains',
  );
  const live = await r.control.db
    .selectFrom('api_keys')
    .select('id')
    .where('tenant', '=', id)
    .where('revoked_at', 'is', null)
    .execute();
  assert.deepEqual(live, []);
  const stored = await service.getDeletionCertificate(id);
  const { publicKey } = await r.keyd.call('publicKey', { purpose: 'deletion-certificate' }, ADMIN);
  assert.ok(verifyDeletionCertificate(stored.body, stored.signature, publicKey));
  assert.deepEqual(
    stored.certificate.keyIdsDestroyed,
    status.versions.map((v) => v.keyId),
  );
  assert.equal(stored.certificate.keydDestroyedAt, status.destroyedAt);
}

describe('tenant lifecycle', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await rig();
  });
  afterEach(async () => {
    await r.close();
  });

  it('creates a tenant: active, with its tenant key in keyd, its own store and a working admin API key', async () => {
    const tenants = r.service();
    const created = await tenants.createTenant(
      { name: 'Acme GmbH', contractStart: '2030-01-01', contractEnd: '2031-12-31' },
      OPERATOR,
    );
    assert.match(created.id, /^ten_[0-9a-f]{24}$/);
    assert.equal(created.state, 'active');
    assert.equal(created.contractStart, '2030-01-01');
    assert.equal(created.contractEnd, '2031-12-31');
    await assertFullyActive(r, created.id);

    const authenticate = createAuthenticator({ control: r.control, clock: () => r.now });
    const principal = await authenticate(created.apiKey);
    assert.equal(principal.kind, 'api-key');
    assert.ok(principal.kind === 'api-key');
    assert.equal(principal.tenant, created.id);
    assert.equal(principal.keyId, created.apiKeyId);
    assert.equal(principal.collections, '*');
    assert.deepEqual([...principal.access].sort(), ['admin', 'read', 'write']);
    await authenticate.flush();

    const actions = (
      await r.control.db.selectFrom('audit_events').select(['action', 'tenant', 'event']).execute()
    ).map((e) => [e.action, e.tenant]);
    assert.deepEqual(actions, [
      ['tenant.create', created.id],
      ['tenant.activate', created.id],
    ]);
    const info = await tenants.getTenant(created.id);
    assert.equal(info.state, 'active');
    assert.equal(info.name, 'Acme GmbH');
  });

  it('defaults the contract start to today and leaves the end open', async () => {
    const created = await r.service().createTenant({ name: 'Open-ended' }, OPERATOR);
    assert.equal(created.contractStart, '2030-03-01');
    assert.equal(created.contractEnd, null);
  });

  it('refuses bad input with a validation error and creates nothing', async () => {
    const tenants = r.service();
    for (const input of [
      { name: '' },
      { name: 'x'.repeat(201) },
      { name: 'tab\there' },
      { name: 'A', contractStart: '2030-02-30' },
      { name: 'A', contractStart: '1.1.2030' },
      { name: 'A', contractStart: '2030-01-02', contractEnd: '2030-01-01' },
    ]) {
      assert.equal(
        await codeOf(tenants.createTenant(input, OPERATOR)),
        'TRESOR_ERR_VALIDATION',
        JSON.stringify(input),
      );
    }
    assert.deepEqual(await tenants.listTenants(), []);
  });

  it('lists tenants for operators without any key, secret or hash', async () => {
    const tenants = r.service();
    const a = await tenants.createTenant({ name: 'A' }, OPERATOR);
    await tenants.createTenant({ name: 'B' }, OPERATOR);
    const list = await tenants.listTenants();
    assert.deepEqual(list.map((t) => t.name).sort(), ['A', 'B']);
    const text = JSON.stringify(list);
    const hash = (await r.control.db.selectFrom('api_keys').select('secret_hash').execute()).map(
      (k) => k.secret_hash,
    );
    assert.ok(!text.includes(a.apiKey.slice(-43)));
    for (const h of hash) assert.ok(!text.includes(h));
    assert.deepEqual(Object.keys(list[0] ?? {}).sort(), [
      'closeReason',
      'closedAt',
      'contractEnd',
      'contractStart',
      'createdAt',
      'id',
      'name',
      'state',
      'updatedAt',
    ]);
    assert.deepEqual(await tenants.listTenants({ state: 'closed' }), []);
  });

  it('refuses a second live tenant with the same name; a retried create resumes the one left provisioning', async () => {
    const tenants = r.service();
    await tenants.createTenant({ name: 'Twin' }, OPERATOR);
    assert.equal(await codeOf(tenants.createTenant({ name: 'Twin' }, OPERATOR)), 'TRESOR_ERR_CONFLICT');

    r.faults.keys = { op: 'createTenantKey', when: 'after' };
    assert.equal(await codeOf(tenants.createTenant({ name: 'Retry' }, OPERATOR)), 'TEST_INJECTED_FAULT');
    const [left] = await tenants.listTenants({ state: 'provisioning' });
    assert.ok(left);
    const again = await tenants.createTenant({ name: 'Retry' }, OPERATOR);
    assert.equal(again.id, left.id, 'the retry finished the tenant it started');
    await assertFullyActive(r, again.id);
    assert.equal((await tenants.listTenants()).length, 2);
  });

  it('asks keyd once more for a tenant key whose create was lost with a keyd instance (reached it or not)', async () => {
    for (const when of ['unavailable-before', 'unavailable-after'] as const) {
      r.faults.keys = { op: 'createTenantKey', when };
      const made = await r.service().createTenant({ name: `Lost ${when}` }, OPERATOR);
      assert.equal(r.faults.keys, undefined, 'the fault was met');
      await assertFullyActive(r, made.id);
    }
  });

  it('creates a tenant once per Idempotency-Key: a retry gets the first tenant and its key id but no key; another request with the key is refused', async () => {
    const tenants = r.service();
    const request = (body: unknown) => ({
      scope: 'operator-token:opt_test',
      key: 'create-acme-1',
      requestHash: idempotencyRequestHash('POST', '/v1/tenants', body),
    });
    const first = await tenants.createTenant({ name: 'Acme' }, OPERATOR, request({ name: 'Acme' }));
    assert.ok(!('replayed' in first) && typeof first.apiKey === 'string');
    const retry = await tenants.createTenant({ name: 'Acme' }, OPERATOR, request({ name: 'Acme' }));
    assert.deepEqual(retry, { ...first, apiKey: null, replayed: true });
    assert.equal((await tenants.listTenants()).length, 1, 'created once');
    assert.equal(
      await codeOf(tenants.createTenant({ name: 'Other' }, OPERATOR, request({ name: 'Other' }))),
      'TRESOR_ERR_IDEMPOTENCY_KEY_REUSED',
    );
    assert.equal((await tenants.listTenants()).length, 1, 'the reused key created nothing');
    // The stored answer holds the tenant's id and its key's id: never the key itself.
    const rows = await r.control.db.selectFrom('idempotency_keys').selectAll().execute();
    assert.equal(rows.length, 1);
    assert.deepEqual(JSON.parse(rows[0]?.response ?? '{}'), { id: first.id, apiKeyId: first.apiKeyId });
    assert.ok(!JSON.stringify(rows).includes(first.apiKey));
  });

  it('frees the Idempotency-Key of a create that failed, so its retry runs and finishes the tenant', async () => {
    const tenants = r.service();
    const request = {
      scope: 'person:per_test',
      key: 'create-retry-1',
      requestHash: idempotencyRequestHash('POST', '/v1/tenants', { name: 'Retry' }),
    };
    r.faults.keys = { op: 'createTenantKey', when: 'after' };
    assert.equal(
      await codeOf(tenants.createTenant({ name: 'Retry' }, OPERATOR, request)),
      'TEST_INJECTED_FAULT',
    );
    const again = await tenants.createTenant({ name: 'Retry' }, OPERATOR, request);
    assert.ok(!('replayed' in again));
    await assertFullyActive(r, again.id);
    assert.equal((await tenants.listTenants()).length, 1);
  });

  it('closes a tenant: key destroyed in keyd, store files gone, API keys refused, signed certificate', async () => {
    const tenants = r.service();
    const created = await tenants.createTenant({ name: 'Doomed' }, OPERATOR);
    const dataKey = await r.keyd.call('generateDataKey', { tenant: created.id, purpose: 'data' }, SERVER);
    const authenticate = createAuthenticator({ control: r.control, clock: () => r.now });
    await authenticate(created.apiKey);
    await authenticate.flush();

    r.now = new Date('2030-03-02T12:00:00.000Z');
    const closed = closedOf(await tenants.closeTenant(created.id, { reason: 'customer request' }, OPERATOR));

    assert.equal(
      await codeOf(
        r.keyd.call(
          'unwrapDataKey',
          { tenant: created.id, purpose: 'data', keyId: dataKey.keyId, wrapped: dataKey.wrapped },
          SERVER,
        ),
      ),
      'TRESOR_ERR_TENANT_KEY_DESTROYED',
    );
    assert.equal(await codeOf(authenticate(created.apiKey)), 'TRESOR_ERR_UNAUTHENTICATED');
    await assertFullyClosed(r, created.id, tenants);

    assert.deepEqual(closed.certificate, {
      type: 'tresor-deletion-certificate/v1',
      tenant: created.id,
      tenantName: 'Doomed',
      keyIdsDestroyed: closed.certificate.keyIdsDestroyed,
      keydDestroyedAt: closed.certificate.keydDestroyedAt,
      closedAt: '2030-03-02T12:00:00.000Z',
      backupsAgedOutBy: '2030-04-06',
      reason: 'customer request',
    });
    assert.equal(closed.certificate.keyIdsDestroyed.length, 1);
    assert.equal(closed.keyName, 'tresor-keyd/deletion-certificate');
    assert.equal(closed.export, undefined);

    const { publicKey } = await r.keyd.call('publicKey', { purpose: 'deletion-certificate' }, ADMIN);
    assert.ok(verifyDeletionCertificate(closed.body, closed.signature, publicKey));
    const body = Buffer.from(closed.body, 'utf8');
    for (let i = 0; i < body.length; i++) {
      const changed = Buffer.from(body);
      changed[i] = (changed[i] ?? 0) ^ 0x01;
      assert.equal(
        verifyDeletionCertificate(changed, closed.signature, publicKey),
        false,
        `byte ${i} changed`,
      );
    }

    const info = await tenants.getTenant(created.id);
    assert.equal(info.state, 'closed');
    assert.equal(info.closedAt, '2030-03-02T12:00:00.000Z');
    assert.equal(info.closeReason, 'customer request');
    const stored = await tenants.getDeletionCertificate(created.id);
    assert.equal(stored.body, closed.body);
    assert.equal(stored.signature, closed.signature);

    // The name is free again; the closed tenant takes no more lifecycle operations.
    await tenants.createTenant({ name: 'Doomed' }, OPERATOR);
    assert.equal(
      await codeOf(tenants.closeTenant(created.id, { reason: 'again' }, OPERATOR)),
      'TRESOR_ERR_TENANT_STATE',
    );
    assert.equal(await codeOf(tenants.requireActive(created.id)), 'TRESOR_ERR_TENANT_STATE');
    assert.equal(
      await codeOf(tenants.closeTenant('ten_unknown', { reason: 'x' }, OPERATOR)),
      'TRESOR_ERR_NOT_FOUND',
    );
    assert.equal(await codeOf(tenants.getTenant('ten_unknown')), 'TRESOR_ERR_NOT_FOUND');
    assert.equal(await codeOf(tenants.getDeletionCertificate('ten_unknown')), 'TRESOR_ERR_NOT_FOUND');

    const actions = (
      await r.control.db
        .selectFrom('audit_events')
        .select('action')
        .where('tenant', '=', created.id)
        .execute()
    ).map((e) => e.action);
    assert.deepEqual(actions, [
      'tenant.create',
      'tenant.activate',
      'tenant.close',
      'tenant.key.destroy-scheduled',
      'tenant.key.destroy',
      'tenant.store.destroy',
      'tenant.closed',
    ]);
  });

  it('hands over a final export made before anything is destroyed, and never records the passphrase', async () => {
    const tenants = r.service();
    const created = await tenants.createTenant({ name: 'Leaving' }, OPERATOR);
    const passphrase = 'correct horse battery staple 12345';
    const closed = closedOf(
      await tenants.closeTenant(created.id, { reason: 'contract end', export: { passphrase } }, OPERATOR),
    );
    assert.deepEqual(r.exported, [created.id]);
    assert.equal(new TextDecoder().decode(closed.export), `export of ${created.id} for passphrase`);
    await assertFullyClosed(r, created.id, tenants);
    const events = await r.control.db.selectFrom('audit_events').select(['action', 'event']).execute();
    assert.ok(events.some((e) => e.action === 'tenant.export'));
    assert.ok(!JSON.stringify(events).includes(passphrase));
  });

  it('refuses an export when the server has no exporter, before changing anything', async () => {
    const tenants = r.service({ exporter: undefined });
    const created = await tenants.createTenant({ name: 'NoExport' }, OPERATOR);
    assert.equal(
      await codeOf(
        tenants.closeTenant(created.id, { reason: 'x', export: { recipient: 'age1xyz' } }, OPERATOR),
      ),
      'TRESOR_ERR_BAD_REQUEST',
    );
    await assertFullyActive(r, created.id);
  });

  it('has cached API key principals of a closing tenant dropped at once (onApiKeysRevoked)', async () => {
    const apiKeys = createApiKeyService({ control: r.control, clock: () => r.now, logger: quiet });
    const told: string[] = [];
    const tenants = r.service({
      onApiKeysRevoked: (tenant) => {
        told.push(tenant);
        apiKeys.forgetTenant(tenant);
      },
    });
    const created = await tenants.createTenant({ name: 'Cached' }, OPERATOR);
    const authenticate = createAuthenticator({ control: r.control, clock: () => r.now, apiKeys });
    await authenticate(created.apiKey); // now cached for 5 s; the clock does not move below
    r.faults.export = true; // the close stops after its first commit (active -> closing, keys revoked)
    assert.equal(
      await codeOf(
        tenants.closeTenant(created.id, { reason: 'x', export: { recipient: 'age1xyz' } }, OPERATOR),
      ),
      'TEST_INJECTED_FAULT',
    );
    assert.deepEqual(told, [created.id]);
    assert.equal(await codeOf(authenticate(created.apiKey)), 'TRESOR_ERR_UNAUTHENTICATED');
    await authenticate.flush();
  });

  it('keeps a tenant whose final export failed closing, intact, until an operator decides', async () => {
    const tenants = r.service();
    const created = await tenants.createTenant({ name: 'ExportFails' }, OPERATOR);
    r.faults.export = true;
    assert.equal(
      await codeOf(
        tenants.closeTenant(created.id, { reason: 'x', export: { recipient: 'age1xyz' } }, OPERATOR),
      ),
      'TEST_INJECTED_FAULT',
    );
    const report = await r.service().resume();
    assert.deepEqual(report.awaitingExport, [created.id]);
    assert.equal((await tenantRow(r, created.id)).state, 'closing');
    assert.equal((await r.keyd.call('tenantKeyStatus', { tenant: created.id }, ADMIN)).state, 'active');
    assert.ok(existsSync(join(r.storesDir, `${created.id}.sqlite`)));
    const authenticate = createAuthenticator({ control: r.control, clock: () => r.now });
    assert.equal(
      await codeOf(authenticate(created.apiKey)),
      'TRESOR_ERR_UNAUTHENTICATED',
      'closing serves nothing',
    );

    // The operator retries with the export: it is made, then the close completes.
    const closed = closedOf(
      await r
        .service()
        .closeTenant(created.id, { reason: 'ignored', export: { recipient: 'age1xyz' } }, OPERATOR),
    );
    assert.ok(closed.export);
    assert.equal(closed.certificate.reason, 'x', 'the first reason stands');
    await assertFullyClosed(r, created.id, tenants);
  });

  describe('resumes provisioning after a failure at every step', () => {
    const cases: [string, Faults][] = [
      ['keyd createTenantKey fails', { keys: { op: 'createTenantKey', when: 'before' } }],
      ['keyd createTenantKey answer lost', { keys: { op: 'createTenantKey', when: 'after' } }],
      ['store create fails', { registry: { method: 'create', when: 'before' } }],
      ['store create answer lost', { registry: { method: 'create', when: 'after' } }],
      ['activation commit fails', { controlWrite: 2 }],
    ];
    for (const [name, faults] of cases) {
      it(name, async () => {
        r.faults = structuredClone(faults);
        const first = r.service();
        assert.equal(await codeOf(first.createTenant({ name: 'Half' }, OPERATOR)), 'TEST_INJECTED_FAULT');
        const [left] = await first.listTenants();
        assert.equal(left?.state, 'provisioning');
        const restarted = r.service();
        const report = await restarted.resume();
        assert.deepEqual(report, {
          activated: [left.id],
          closed: [],
          inGrace: [],
          awaitingExport: [],
          failed: [],
        });
        await assertFullyActive(r, left.id);
        const resumed = (await r.control.db.selectFrom('audit_events').selectAll().execute()).find(
          (e) => e.action === 'tenant.activate',
        );
        assert.deepEqual(JSON.parse(resumed?.event ?? '{}').actor, { kind: 'system', id: 'resume' });
      });
    }

    it('the first commit fails: nothing exists, nothing to resume', async () => {
      r.faults = { controlWrite: 1 };
      const tenants = r.service();
      assert.equal(await codeOf(tenants.createTenant({ name: 'Never' }, OPERATOR)), 'TEST_INJECTED_FAULT');
      assert.deepEqual(await tenants.listTenants(), []);
      assert.deepEqual(await tenants.resume(), {
        activated: [],
        closed: [],
        inGrace: [],
        awaitingExport: [],
        failed: [],
      });
    });

    it('reports a tenant it cannot resume yet and resumes it on a later start', async () => {
      r.faults = { keys: { op: 'createTenantKey', when: 'before' } };
      const tenants = r.service();
      await codeOf(tenants.createTenant({ name: 'Later' }, OPERATOR));
      const [left] = await tenants.listTenants();
      assert.ok(left);
      r.faults = { keys: { op: 'createTenantKey', when: 'before' } };
      assert.deepEqual((await r.service().resume()).failed, [
        { tenant: left.id, code: 'TEST_INJECTED_FAULT' },
      ]);
      assert.deepEqual((await r.service().resume()).activated, [left.id]);
      await assertFullyActive(r, left.id);
    });
  });

  describe('resumes closing after a failure at every step', () => {
    const cases: [string, Faults][] = [
      ['keyd scheduling the destruction fails', { keys: { op: 'destroyTenantKey', when: 'before' } }],
      ['keyd scheduling answer lost', { keys: { op: 'destroyTenantKey', when: 'after' } }],
      ['recording the schedule fails', { controlWrite: 2 }],
      ['recording the destroyed key fails', { controlWrite: 3 }],
      ['store destroy fails', { registry: { method: 'destroy', when: 'before' } }],
      ['store destroy answer lost', { registry: { method: 'destroy', when: 'after' } }],
      ['recording the destroyed store fails', { controlWrite: 4 }],
      ['keyd certificate signing fails', { keys: { op: 'signDeletionCertificate', when: 'before' } }],
      ['keyd certificate answer lost', { keys: { op: 'signDeletionCertificate', when: 'after' } }],
      ['the closing commit fails', { controlWrite: 5 }],
    ];
    for (const [name, faults] of cases) {
      it(name, async () => {
        const first = r.service();
        const created = await first.createTenant({ name: 'Closing' }, OPERATOR);
        const dataKey = await r.keyd.call('generateDataKey', { tenant: created.id, purpose: 'data' }, SERVER);
        r.faults = structuredClone(faults);
        assert.equal(
          await codeOf(first.closeTenant(created.id, { reason: 'end' }, OPERATOR)),
          'TEST_INJECTED_FAULT',
        );
        assert.equal((await tenantRow(r, created.id)).state, 'closing');
        const authenticate = createAuthenticator({ control: r.control, clock: () => r.now });
        assert.equal(await codeOf(authenticate(created.apiKey)), 'TRESOR_ERR_UNAUTHENTICATED');

        const restarted = r.service();
        const report = await restarted.resume();
        assert.deepEqual(report, {
          activated: [],
          closed: [created.id],
          inGrace: [],
          awaitingExport: [],
          failed: [],
        });
        await assertFullyClosed(r, created.id, restarted);
        assert.equal(
          await codeOf(
            r.keyd.call(
              'unwrapDataKey',
              { tenant: created.id, purpose: 'data', keyId: dataKey.keyId, wrapped: dataKey.wrapped },
              SERVER,
            ),
          ),
          'TRESOR_ERR_TENANT_KEY_DESTROYED',
        );
        assert.equal((await restarted.resume()).closed.length, 0, 'nothing left to resume');
      });
    }

    it('the first commit fails: the tenant stays fully active', async () => {
      const tenants = r.service();
      const created = await tenants.createTenant({ name: 'Stays' }, OPERATOR);
      r.faults = { controlWrite: 1 };
      assert.equal(
        await codeOf(tenants.closeTenant(created.id, { reason: 'end' }, OPERATOR)),
        'TEST_INJECTED_FAULT',
      );
      await assertFullyActive(r, created.id);
    });

    it('an operator retry finishes a close left half-way, like resume()', async () => {
      const tenants = r.service();
      const created = await tenants.createTenant({ name: 'Retry close' }, OPERATOR);
      r.faults = { registry: { method: 'destroy', when: 'before' } };
      await codeOf(tenants.closeTenant(created.id, { reason: 'end' }, OPERATOR));
      assert.equal(
        await codeOf(
          tenants.closeTenant(created.id, { reason: 'end', export: { recipient: 'age1x' } }, OPERATOR),
        ),
        'TRESOR_ERR_GONE',
        'no export once the key is destroyed',
      );
      await tenants.closeTenant(created.id, { reason: 'end' }, OPERATOR);
      await assertFullyClosed(r, created.id, tenants);
    });
  });

  it('closes concurrent requests for one tenant once', async () => {
    const tenants = r.service();
    const created = await tenants.createTenant({ name: 'Race' }, OPERATOR);
    const results = await Promise.allSettled([
      tenants.closeTenant(created.id, { reason: 'a' }, OPERATOR),
      tenants.closeTenant(created.id, { reason: 'b' }, OPERATOR),
      tenants.resume(),
    ]);
    assert.equal(results[0]?.status, 'fulfilled');
    assert.equal(results[1]?.status, 'rejected');
    await assertFullyClosed(r, created.id, tenants);
  });

  it('closes a tenant automatically once its contract ended more than the grace period ago', async () => {
    const tenants = r.service();
    const ended = await tenants.createTenant(
      { name: 'Ended', contractStart: '2029-01-01', contractEnd: '2030-01-31' },
      OPERATOR,
    );
    const running = await tenants.createTenant({ name: 'Running', contractEnd: '2031-01-31' }, OPERATOR);
    await tenants.createTenant({ name: 'Open' }, OPERATOR);
    // Last day 2030-01-31, so the contract is over at 2030-02-01T00:00Z; 30 grace days → 2030-03-03T00:00Z.
    assert.equal(autoCloseDueAt('2030-01-31', 30).toISOString(), '2030-03-03T00:00:00.000Z');

    assert.deepEqual(await tenants.autoClose(new Date('2030-03-02T23:59:59.999Z')), {
      closed: [],
      failed: [],
    });
    assert.equal((await tenants.getTenant(ended.id)).state, 'active');

    const report = await tenants.autoClose(new Date('2030-03-03T00:00:00.000Z'));
    assert.deepEqual(report, { closed: [ended.id], failed: [] });
    await assertFullyClosed(r, ended.id, tenants);
    const cert = await tenants.getDeletionCertificate(ended.id);
    assert.equal(cert.certificate.reason, 'contract-end');
    const event = await r.control.db
      .selectFrom('audit_events')
      .select('event')
      .where('tenant', '=', ended.id)
      .where('action', '=', 'tenant.close')
      .executeTakeFirstOrThrow();
    assert.deepEqual(JSON.parse(event.event).actor, { kind: 'system', id: 'contract-end' });
    assert.equal((await tenants.getTenant(running.id)).state, 'active');
  });

  describe("forgets a closing tenant's keys in this process (forgetKeys)", () => {
    // Each tenant once, however often it was told (forgetting twice is harmless).
    const forgetting = () => {
      const forgotten: string[] = [];
      const forget = (tenant: string) => {
        if (!forgotten.includes(tenant)) forgotten.push(tenant);
      };
      return { forgotten, tenants: r.service({ forgetKeys: forget }) };
    };

    it('after a close, for the closed tenant only', async () => {
      const { forgotten, tenants } = forgetting();
      const doomed = await tenants.createTenant({ name: 'Doomed' }, OPERATOR);
      await tenants.createTenant({ name: 'Stays' }, OPERATOR);
      assert.deepEqual(forgotten, []);
      await tenants.closeTenant(doomed.id, { reason: 'end' }, OPERATOR);
      assert.deepEqual(forgotten, [doomed.id]);
    });

    it('as soon as the close starts, even when a later step fails; not for a close refused', async () => {
      const { forgotten, tenants } = forgetting();
      const created = await tenants.createTenant({ name: 'Half' }, OPERATOR);
      r.faults = { keys: { op: 'signDeletionCertificate', when: 'before' } };
      assert.equal(
        await codeOf(tenants.closeTenant(created.id, { reason: 'end' }, OPERATOR)),
        'TEST_INJECTED_FAULT',
      );
      assert.equal((await tenants.getTenant(created.id)).state, 'closing');
      assert.ok(forgotten.includes(created.id));
      forgotten.length = 0;
      assert.equal(
        await codeOf(tenants.closeTenant('ten_nope', { reason: 'end' }, OPERATOR)),
        'TRESOR_ERR_NOT_FOUND',
      );
      const active = await tenants.createTenant({ name: 'Active' }, OPERATOR);
      assert.equal(
        await codeOf(tenants.closeTenant(active.id, { reason: '' }, OPERATOR)),
        'TRESOR_ERR_VALIDATION',
      );
      assert.deepEqual(forgotten, []);
    });

    it('when a close failed after the tenant was closed (checked, not assumed)', async () => {
      const forgotten: string[] = [];
      const tenants = r.service({
        forgetKeys: (tenant) => forgotten.push(tenant),
        onApiKeysRevoked: () => {
          throw new InjectedFault('after the commit');
        },
      });
      const created = await tenants.createTenant({ name: 'Late fault' }, OPERATOR);
      const state = async () => (await tenants.getTenant(created.id)).state;
      // The first hook (after active → closing) throws: the tenant is closing, its keys forgotten.
      assert.equal(
        await codeOf(tenants.closeTenant(created.id, { reason: 'end' }, OPERATOR)),
        'TEST_INJECTED_FAULT',
      );
      assert.equal(await state(), 'closing');
      assert.deepEqual(forgotten, [created.id]);
      forgotten.length = 0;
      // The retry's revocation after the closing commit throws too: closed, so forgotten.
      assert.equal(
        await codeOf(tenants.closeTenant(created.id, { reason: 'end' }, OPERATOR)),
        'TEST_INJECTED_FAULT',
      );
      assert.equal(await state(), 'closed');
      assert.deepEqual(forgotten, [created.id]);
    });

    it('after resume() finishes a close, for the tenants it closed', async () => {
      const first = r.service();
      const closing = await first.createTenant({ name: 'Closing' }, OPERATOR);
      r.faults = { keys: { op: 'signDeletionCertificate', when: 'before' } };
      await codeOf(first.closeTenant(closing.id, { reason: 'end' }, OPERATOR));
      r.faults = { keys: { op: 'createTenantKey', when: 'before' } };
      await codeOf(first.createTenant({ name: 'Provisioning' }, OPERATOR));

      const { forgotten, tenants } = forgetting();
      const report = await tenants.resume();
      assert.deepEqual(report.closed, [closing.id]);
      assert.equal(report.activated.length, 1);
      assert.deepEqual(forgotten, [closing.id]);
    });

    it('after autoClose(), for the tenants whose contract ended', async () => {
      const { forgotten, tenants } = forgetting();
      const ended = await tenants.createTenant(
        { name: 'Ended', contractStart: '2029-01-01', contractEnd: '2030-01-31' },
        OPERATOR,
      );
      await tenants.createTenant({ name: 'Running', contractEnd: '2031-01-31' }, OPERATOR);
      assert.deepEqual((await tenants.autoClose(new Date('2030-03-03T00:00:00.000Z'))).closed, [ended.id]);
      assert.deepEqual(forgotten, [ended.id]);
    });
  });

  it('stores the first API key only as a hash: its text is nowhere in the control store files', async () => {
    const tenants = r.service();
    const created = await tenants.createTenant({ name: 'Hashed' }, OPERATOR);
    const secret = created.apiKey.split('_').slice(3).join('_');
    assert.equal(secret.length, 43);
    const files = readdirSync(r.dir).filter((f) => f.startsWith('control.sqlite'));
    assert.ok(files.length > 0);
    for (const file of files) {
      const bytes = readFileSync(join(r.dir, file));
      assert.equal(bytes.indexOf(secret), -1, `${file} holds the secret`);
      assert.equal(bytes.indexOf(created.apiKey), -1, `${file} holds the token`);
    }
    const events = JSON.stringify(await r.control.db.selectFrom('audit_events').selectAll().execute());
    assert.ok(!events.includes(secret));
  });
});

describe('the grace between a close and the destruction of the tenant key', () => {
  let r: Rig;
  const HOUR = 3600;
  beforeEach(async () => {
    r = await rig();
  });
  afterEach(async () => {
    await r.close();
  });

  const later = (seconds: number) => new Date(r.now.getTime() + seconds * 1000);

  it('serves nothing during the grace while keyd keeps the key; the grace job then shreds and certifies', async () => {
    const forgotten: string[] = [];
    const tenants = r.service({ keyDestroyGraceSeconds: HOUR, forgetKeys: (t) => forgotten.push(t) });
    const created = await tenants.createTenant({ name: 'Graceful' }, OPERATOR);
    const dataKey = await r.keyd.call('generateDataKey', { tenant: created.id, purpose: 'data' }, SERVER);
    const closedAt = r.now;

    const outcome = await tenants.closeTenant(created.id, { reason: 'customer request' }, OPERATOR);
    assert.deepEqual(outcome, {
      state: 'closing',
      tenant: created.id,
      keyDestroyAfter: later(HOUR).toISOString(),
    });
    // Invariant 9 holds during the grace: nothing served, no key cached here, keyd unwraps nothing.
    assert.ok(forgotten.includes(created.id));
    assert.equal(await codeOf(tenants.requireActive(created.id)), 'TRESOR_ERR_TENANT_STATE');
    const authenticate = createAuthenticator({ control: r.control, clock: () => r.now });
    assert.equal(await codeOf(authenticate(created.apiKey)), 'TRESOR_ERR_UNAUTHENTICATED');
    const unwrap = () =>
      r.keyd.call(
        'unwrapDataKey',
        { tenant: created.id, purpose: 'data', keyId: dataKey.keyId, wrapped: dataKey.wrapped },
        SERVER,
      );
    assert.equal(await codeOf(unwrap()), 'TRESOR_ERR_TENANT_KEY_PENDING_DESTROY');
    const pending = await r.keyd.call('tenantKeyStatus', { tenant: created.id }, ADMIN);
    assert.equal(pending.state, 'pending-destroy');
    assert.equal(pending.destroyAfter, later(HOUR).toISOString());
    assert.ok(existsSync(join(r.storesDir, `${created.id}.sqlite`)), 'the store waits for the key');
    assert.equal(await codeOf(tenants.getDeletionCertificate(created.id)), 'TRESOR_ERR_NOT_FOUND');

    // A pass before the grace ends changes nothing; a second close is a retry, not a new schedule.
    r.now = later(HOUR - 1);
    assert.deepEqual(await tenants.completeCloses(), {
      closed: [],
      inGrace: [created.id],
      awaitingExport: [],
      failed: [],
    });
    const retry = await tenants.closeTenant(created.id, { reason: 'again' }, OPERATOR);
    assert.equal(retry.state, 'closing');
    assert.equal(
      await codeOf(
        tenants.closeTenant(created.id, { reason: 'x', export: { recipient: 'age1x' } }, OPERATOR),
      ),
      'TRESOR_ERR_GONE',
      'no final export once the key is held for destruction',
    );
    assert.equal((await tenantRow(r, created.id)).state, 'closing');

    r.now = later(1);
    const report = await tenants.completeCloses();
    assert.deepEqual(report.closed, [created.id], JSON.stringify(report));
    await assertFullyClosed(r, created.id, tenants);
    assert.equal(await codeOf(unwrap()), 'TRESOR_ERR_TENANT_KEY_DESTROYED');
    const { certificate } = await tenants.getDeletionCertificate(created.id);
    assert.equal(certificate.keydDestroyedAt, r.now.toISOString(), 'the certificate states the destruction');
    assert.equal(certificate.closedAt, r.now.toISOString());
    assert.ok(certificate.closedAt > closedAt.toISOString());
    assert.equal(certificate.reason, 'customer request');

    const events = await r.control.db
      .selectFrom('audit_events')
      .select(['action', 'event'])
      .where('tenant', '=', created.id)
      .execute();
    assert.deepEqual(
      events.map((e) => e.action),
      [
        'tenant.create',
        'tenant.activate',
        'tenant.close',
        'tenant.key.destroy-scheduled',
        'tenant.close',
        'tenant.key.destroy',
        'tenant.store.destroy',
        'tenant.closed',
      ],
    );
    const destroy = events.find((e) => e.action === 'tenant.key.destroy');
    assert.deepEqual(JSON.parse(destroy?.event ?? '{}').actor, { kind: 'system', id: 'close-grace' });
  });

  it('is finished by keyd on its own too: the grace job then only wipes and certifies', async () => {
    const tenants = r.service({ keyDestroyGraceSeconds: HOUR });
    const created = await tenants.createTenant({ name: 'Keyd first' }, OPERATOR);
    await tenants.closeTenant(created.id, { reason: 'end' }, OPERATOR);
    r.now = later(HOUR);
    assert.deepEqual((await r.keyd.runMaintenance()).destroyed, [created.id]);
    assert.deepEqual((await tenants.completeCloses()).closed, [created.id]);
    await assertFullyClosed(r, created.id, tenants);
  });

  it('an operator admin cancels a close during the grace: key restored, tenant active with a new first key, audited', async () => {
    const tenants = r.service({ keyDestroyGraceSeconds: HOUR });
    const created = await tenants.createTenant({ name: 'Second thoughts' }, OPERATOR);
    const dataKey = await r.keyd.call('generateDataKey', { tenant: created.id, purpose: 'data' }, SERVER);
    assert.equal(await codeOf(tenants.cancelClose(created.id, OPERATOR)), 'TRESOR_ERR_TENANT_STATE');
    assert.equal(await codeOf(tenants.cancelClose('ten_unknown', OPERATOR)), 'TRESOR_ERR_NOT_FOUND');

    await tenants.closeTenant(created.id, { reason: 'mistake' }, OPERATOR);
    r.now = later(60);
    const reopened = await tenants.cancelClose(created.id, OPERATOR);
    assert.equal(reopened.tenant.state, 'active');
    assert.equal(reopened.tenant.closeReason, null);
    await assertFullyActive(r, created.id);
    const { key } = await r.keyd.call(
      'unwrapDataKey',
      { tenant: created.id, purpose: 'data', keyId: dataKey.keyId, wrapped: dataKey.wrapped },
      SERVER,
    );
    assert.ok(key.equals(dataKey.key), 'the data encrypted before the close decrypts again');
    const authenticate = createAuthenticator({ control: r.control, clock: () => r.now });
    assert.equal(
      await codeOf(authenticate(created.apiKey)),
      'TRESOR_ERR_UNAUTHENTICATED',
      'old keys stay revoked',
    );
    assert.equal((await authenticate(reopened.apiKey)).kind, 'api-key');
    await authenticate.flush();
    const cancel = await r.control.db
      .selectFrom('audit_events')
      .select('event')
      .where('tenant', '=', created.id)
      .where('action', '=', 'tenant.close.cancel')
      .executeTakeFirstOrThrow();
    const event = JSON.parse(cancel.event);
    assert.deepEqual(event.actor, OPERATOR.actor);
    assert.equal(event.target.apiKeyId, reopened.apiKeyId);
    assert.ok(!cancel.event.includes(reopened.apiKey), 'the new key is not in the audit log');

    // Closed again, the grace starts afresh and runs out.
    const again = await tenants.closeTenant(created.id, { reason: 'for real' }, OPERATOR);
    assert.equal(again.state, 'closing');
    assert.equal(again.state === 'closing' && again.keyDestroyAfter, later(HOUR).toISOString());
    r.now = later(HOUR);
    assert.deepEqual((await tenants.completeCloses()).closed, [created.id]);
    await assertFullyClosed(r, created.id, tenants);
    assert.equal(await codeOf(tenants.cancelClose(created.id, OPERATOR)), 'TRESOR_ERR_TENANT_STATE');
  });

  it('refuses to cancel once the key is destroyed, changing nothing', async () => {
    const tenants = r.service({ keyDestroyGraceSeconds: HOUR });
    const created = await tenants.createTenant({ name: 'Too late' }, OPERATOR);
    await tenants.closeTenant(created.id, { reason: 'end' }, OPERATOR);
    r.now = later(HOUR);
    await r.keyd.runMaintenance(); // keyd shredded; the server has not noticed yet
    assert.equal(await codeOf(tenants.cancelClose(created.id, OPERATOR)), 'TRESOR_ERR_TENANT_STATE');
    assert.equal((await tenantRow(r, created.id)).state, 'closing');
    assert.deepEqual((await tenants.completeCloses()).closed, [created.id]);
  });
});
