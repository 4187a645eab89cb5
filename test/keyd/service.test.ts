import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import { readEnvelopeHeader } from '../../src/crypto/index.ts';
import type { Caller, DataKey, KeydOperationName, OpArgs } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import {
  createKeyService,
  type KeydService,
  type KeyServiceConfig,
  type MaintenanceReport,
  SYSTEM_CALLER,
  tenantKeyId,
} from '../../src/keyd/service.ts';
import { ed25519PublicKey, noteKeyId, noteVerifierKey, signEd25519 } from '../../src/keyd/signing.ts';
import { KEY_STORE_FILE } from '../../src/keyd/store.ts';

const ADMIN: Caller = { id: 'unix:admin', role: 'admin' };
const SERVER: Caller = { id: 'unix:server', role: 'server' };
const REPO = resolve(import.meta.dirname, '../..');
const T0 = new Date('2026-03-01T00:00:00.000Z');

/** A keyd on a fresh folder with the dev-file root key, a pinned clock and no maintenance timer. */
class Keyd {
  readonly dir: string;
  readonly config: KeyServiceConfig;
  now = T0;
  provider!: DevFileProvider;
  service!: KeydService;

  readonly onMaintenance: ((report: MaintenanceReport) => void) | undefined;

  constructor(config: KeyServiceConfig, onMaintenance?: (report: MaintenanceReport) => void) {
    this.dir = mkdtempSync(join(tmpdir(), 'tresor-keyd-'));
    this.config = { maintenanceIntervalSeconds: 0, ...config };
    this.onMaintenance = onMaintenance;
    initDevFile(this.dir);
  }

  static async start(
    t: TestContext,
    config: KeyServiceConfig = {},
    {
      unseal = true,
      onMaintenance,
    }: { unseal?: boolean; onMaintenance?: (report: MaintenanceReport) => void } = {},
  ): Promise<Keyd> {
    const keyd = new Keyd(config, onMaintenance);
    t.after(async () => {
      await keyd.service.close();
      rmSync(keyd.dir, { recursive: true, force: true });
    });
    await keyd.open(unseal);
    return keyd;
  }

  async open(unseal = true): Promise<void> {
    this.provider = new DevFileProvider(this.dir);
    this.service = createKeyService({
      dir: this.dir,
      provider: this.provider,
      config: this.config,
      clock: () => this.now,
      onMaintenance: this.onMaintenance,
    });
    if (unseal) await this.service.call('unseal', { secret: '' }, ADMIN);
  }

  /** Close and open again on the same folder: a keyd restart. */
  async restart(): Promise<void> {
    await this.service.close();
    await this.open();
  }

  /** Stops keyd, runs `fn` on its store through a separate SQLite connection, starts keyd again. */
  async offline<T>(fn: (db: Database.Database) => T): Promise<T> {
    await this.service.close();
    const db = new Database(join(this.dir, KEY_STORE_FILE));
    try {
      return fn(db);
    } finally {
      db.close();
      await this.open();
    }
  }

  call<K extends KeydOperationName>(op: K, args: OpArgs<K>, caller: Caller = SERVER) {
    return this.service.call(op, args, caller);
  }

  generate(tenant = 'acme', purpose: DataKey['purpose'] = 'data'): Promise<DataKey> {
    return this.call('generateDataKey', { tenant, purpose });
  }

  async unwrap(dk: DataKey): Promise<Buffer> {
    const { key } = await this.call('unwrapDataKey', {
      tenant: dk.tenant,
      purpose: dk.purpose,
      keyId: dk.keyId,
      wrapped: dk.wrapped,
    });
    return key;
  }

  advanceDays(days: number): void {
    this.now = new Date(this.now.getTime() + days * 86400_000);
  }
}

function code(c: string) {
  return { name: 'KeydError', code: c };
}

function flipByte(buf: Buffer, index: number): Buffer {
  const copy = Buffer.from(buf);
  copy[index] = (copy[index] ?? 0) ^ 0x01;
  return copy;
}

function includes(haystack: Buffer, needle: Buffer): boolean {
  return haystack.indexOf(needle) !== -1;
}

describe('keyd service: sealing, callers and arguments', () => {
  test('a sealed keyd answers status, health and unseal, and refuses everything else with TRESOR_ERR_KEYD_SEALED', async (t) => {
    const keyd = await Keyd.start(t, {}, { unseal: false });
    assert.equal((await keyd.call('status', {})).sealed, true);
    const health = await keyd.call('health', {});
    assert.equal(health.status, 'sealed');
    assert.equal(health.rootVersion, null);
    assert.equal(health.store, 'ok');
    await assert.rejects(keyd.call('createTenantKey', { tenant: 'acme' }), code('TRESOR_ERR_KEYD_SEALED'));
    await assert.rejects(keyd.generate(), code('TRESOR_ERR_KEYD_SEALED'));
    await assert.rejects(
      keyd.call('sign', {
        purpose: 'trust-statement',
        message: Buffer.from(`tresor-trust/v1\n${'a'.repeat(64)}\n`),
      }),
      code('TRESOR_ERR_KEYD_SEALED'),
    );
    await assert.rejects(keyd.call('rotateRootKey', {}, ADMIN), code('TRESOR_ERR_KEYD_SEALED'));

    const status = await keyd.call('unseal', { secret: '' });
    assert.equal(status.sealed, false);
    assert.equal((await keyd.call('health', {})).status, 'ok');
    await keyd.call('createTenantKey', { tenant: 'acme' });
  });

  test('seal forgets the keyring: data-key operations are refused until keyd is unsealed again', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    assert.equal((await keyd.call('seal', {}, ADMIN)).sealed, true);
    assert.equal(keyd.provider.keyring(), undefined);
    await assert.rejects(keyd.unwrap(dk), code('TRESOR_ERR_KEYD_SEALED'));
    await keyd.call('unseal', { secret: '' });
    assert.deepEqual(await keyd.unwrap(dk), dk.key);
  });

  test('admin operations are refused to the server role with TRESOR_ERR_FORBIDDEN', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await assert.rejects(keyd.call('seal', {}, SERVER), code('TRESOR_ERR_FORBIDDEN'));
    await assert.rejects(keyd.call('rotateRootKey', {}, SERVER), code('TRESOR_ERR_FORBIDDEN'));
    await assert.rejects(
      keyd.call('retireRootKeyVersion', { version: 1 }, SERVER),
      code('TRESOR_ERR_FORBIDDEN'),
    );
    await assert.rejects(keyd.call('opsLog', {}, SERVER), code('TRESOR_ERR_FORBIDDEN'));
    assert.equal(keyd.provider.keyring() !== undefined, true, 'a refused seal changed nothing');
  });

  test('a call without an authenticated caller is refused with TRESOR_ERR_FORBIDDEN', async (t) => {
    const keyd = await Keyd.start(t);
    await assert.rejects(keyd.service.call('status', {}), code('TRESOR_ERR_FORBIDDEN'));
    await assert.rejects(
      keyd.service.call('status', {}, { id: '', role: 'admin' } as Caller),
      code('TRESOR_ERR_FORBIDDEN'),
    );
    await assert.rejects(
      keyd.service.call('status', {}, { id: 'x', role: 'root' } as unknown as Caller),
      code('TRESOR_ERR_FORBIDDEN'),
    );
  });

  test('malformed arguments are refused with TRESOR_ERR_REQUEST_INVALID naming the field', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    const cases: [KeydOperationName, unknown, string][] = [
      ['createTenantKey', { tenant: '' }, 'tenant'],
      ['createTenantKey', { tenant: 'a'.repeat(65) }, 'tenant'],
      ['createTenantKey', { tenant: 'acme/../x' }, 'tenant'],
      ['createTenantKey', { tenant: 'acme', extra: 1 }, 'extra'],
      ['createTenantKey', {}, 'tenant'],
      ['createTenantKey', null, 'args'],
      ['generateDataKey', { tenant: 'acme', purpose: 'everything' }, 'purpose'],
      ['unwrapDataKey', { tenant: 'acme', purpose: 'data', keyId: dk.keyId, wrapped: 'base64?' }, 'wrapped'],
      [
        'unwrapDataKey',
        { tenant: 'acme', purpose: 'data', keyId: dk.keyId, wrapped: Buffer.alloc(257) },
        'wrapped',
      ],
      [
        'unwrapDataKey',
        { tenant: 'acme', purpose: 'data', keyId: 'no spaces', wrapped: dk.wrapped },
        'keyId',
      ],
      ['retireTenantKeyVersion', { tenant: 'acme', version: 0 }, 'version'],
      ['retireTenantKeyVersion', { tenant: 'acme', version: 1.5 }, 'version'],
      ['destroyTenantKey', { tenant: 'acme', mode: 'later' }, 'mode'],
      ['destroyTenantKey', { tenant: 'acme', mode: 'schedule', graceSeconds: -1 }, 'graceSeconds'],
      ['sign', { purpose: 'audit-checkpoint', message: Buffer.alloc(0) }, 'message'],
      ['sign', { purpose: 'anything', message: Buffer.from('x') }, 'purpose'],
      ['unseal', { secret: 42 }, 'secret'],
      ['opsLog', { limit: 0 }, 'limit'],
      ['opsLog', { from: -1 }, 'from'],
    ];
    for (const [op, args, field] of cases) {
      await assert.rejects(
        keyd.service.call(op, args as never, ADMIN),
        (err: { code: string; message: string }) => {
          assert.equal(err.code, 'TRESOR_ERR_REQUEST_INVALID', `${op} ${JSON.stringify(args)}`);
          assert.match(err.message, new RegExp(`^${field}:`), `${op} names ${field}`);
          return true;
        },
      );
    }
    await assert.rejects(
      keyd.service.call('nope' as KeydOperationName, {} as never, ADMIN),
      code('TRESOR_ERR_REQUEST_INVALID'),
    );
    await assert.rejects(
      keyd.call('generateDataKey', { tenant: 'acme', purpose: 'signing' as never }),
      code('TRESOR_ERR_PURPOSE_INVALID'),
    );
  });
});

describe('keyd service: tenant keys and data keys', () => {
  test('createTenantKey makes version 1 wrapped by the active root version; a second create is refused', async (t) => {
    const keyd = await Keyd.start(t);
    const info = await keyd.call('createTenantKey', { tenant: 'acme' });
    assert.equal(info.tenant, 'acme');
    assert.equal(info.version, 1);
    assert.equal(info.keyId, tenantKeyId('acme', 1));
    assert.match(info.keyId, /^tk\.[0-9a-f]{16}\.v1$/);
    assert.equal(info.state, 'active');
    assert.equal(info.rootVersion, 1);
    assert.equal(info.encryptions, 0);
    assert.equal(info.createdAt, T0.toISOString());
    assert.equal(info.rotateAfter, '2027-03-01T00:00:00.000Z', 'cryptoperiod of 365 days');
    assert.equal('key' in info, false);
    await assert.rejects(
      keyd.call('createTenantKey', { tenant: 'acme' }),
      code('TRESOR_ERR_TENANT_KEY_EXISTS'),
    );

    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.state, 'active');
    assert.deepEqual(status.versions, [info]);
  });

  test('tenant key ids fit the 64-character key id limit for the longest tenant id', () => {
    assert.ok(tenantKeyId('x'.repeat(64), 2 ** 31 - 1).length <= 64);
    assert.notEqual(tenantKeyId('acme', 1), tenantKeyId('acme2', 1));
  });

  test('operations on a tenant without a key fail with TRESOR_ERR_TENANT_KEY_UNKNOWN', async (t) => {
    const keyd = await Keyd.start(t);
    await assert.rejects(
      keyd.call('tenantKeyStatus', { tenant: 'ghost' }),
      code('TRESOR_ERR_TENANT_KEY_UNKNOWN'),
    );
    await assert.rejects(keyd.generate('ghost'), code('TRESOR_ERR_TENANT_KEY_UNKNOWN'));
    await assert.rejects(
      keyd.call('rotateTenantKey', { tenant: 'ghost' }),
      code('TRESOR_ERR_TENANT_KEY_UNKNOWN'),
    );
    await assert.rejects(
      keyd.call('destroyTenantKey', { tenant: 'ghost', mode: 'now' }),
      code('TRESOR_ERR_TENANT_KEY_UNKNOWN'),
    );
  });

  test('generateDataKey returns a fresh 32-byte key and its wrap; unwrapDataKey gives back the same key', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const a = await keyd.generate('acme', 'data');
    const b = await keyd.generate('acme', 'blind-index');
    assert.equal(a.key.length, 32);
    assert.match(a.keyId, /^dk_[0-9a-f]{24}$/);
    assert.equal(a.tenant, 'acme');
    assert.equal(a.purpose, 'data');
    assert.notDeepEqual(a.key, b.key);
    assert.notEqual(a.keyId, b.keyId);
    assert.equal(readEnvelopeHeader(a.wrapped).keyId, tenantKeyId('acme', 1), 'wrapped by the tenant key');
    assert.equal(includes(a.wrapped, a.key), false);
    assert.deepEqual(await keyd.unwrap(a), a.key);
    assert.deepEqual(await keyd.unwrap(b), b.key);
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions[0]?.encryptions, 2, 'each wrap counts as one encryption; unwraps do not');
  });

  test('a wrapped data key moved to another tenant, key id or purpose does not unwrap', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.call('createTenantKey', { tenant: 'globex' });
    const dk = await keyd.generate('acme', 'data');
    const other = await keyd.generate('acme', 'data');
    const invalid = code('TRESOR_ERR_WRAPPED_KEY_INVALID');
    await assert.rejects(keyd.unwrap({ ...dk, tenant: 'globex' }), invalid);
    await assert.rejects(keyd.unwrap({ ...dk, keyId: other.keyId }), invalid);
    await assert.rejects(keyd.unwrap({ ...dk, purpose: 'blind-index' }), invalid);
    await assert.rejects(
      keyd.call('rewrapDataKey', { tenant: 'globex', purpose: 'data', keyId: dk.keyId, wrapped: dk.wrapped }),
      invalid,
    );
    assert.deepEqual(await keyd.unwrap(dk), dk.key, 'the original still unwraps');
  });

  test('a tampered wrapped data key does not unwrap', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    const last = dk.wrapped.length - 1;
    for (const index of [0, 3, 3 + readEnvelopeHeader(dk.wrapped).keyId.length + 2, last - 20, last]) {
      await assert.rejects(
        keyd.unwrap({ ...dk, wrapped: flipByte(dk.wrapped, index) }),
        (err: { code: string }) => {
          assert.ok(
            ['TRESOR_ERR_WRAPPED_KEY_INVALID', 'TRESOR_ERR_KEY_ID_UNKNOWN'].includes(err.code),
            `byte ${index}: ${err.code}`,
          );
          return true;
        },
      );
    }
    await assert.rejects(
      keyd.unwrap({ ...dk, wrapped: dk.wrapped.subarray(0, 40) }),
      code('TRESOR_ERR_WRAPPED_KEY_INVALID'),
    );
  });

  test('rotateTenantKey makes a new active version; the old one turns decrypt-only and keeps unwrapping', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const before = await keyd.generate();
    const v2 = await keyd.call('rotateTenantKey', { tenant: 'acme' });
    assert.equal(v2.version, 2);
    assert.equal(v2.state, 'active');
    assert.equal(v2.encryptions, 0);
    const after = await keyd.generate();
    assert.equal(readEnvelopeHeader(after.wrapped).keyId, v2.keyId);
    assert.deepEqual(await keyd.unwrap(before), before.key);
    assert.deepEqual(await keyd.unwrap(after), after.key);
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.deepEqual(
      status.versions.map((v) => [v.version, v.state, v.encryptions]),
      [
        [1, 'decrypt-only', 1],
        [2, 'active', 1],
      ],
    );
  });

  test('rewrapDataKey wraps the same data key under the active version, with no data to rewrite', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    const v2 = await keyd.call('rotateTenantKey', { tenant: 'acme' });
    const { wrapped } = await keyd.call('rewrapDataKey', {
      tenant: 'acme',
      purpose: 'data',
      keyId: dk.keyId,
      wrapped: dk.wrapped,
    });
    assert.equal(readEnvelopeHeader(wrapped).keyId, v2.keyId);
    assert.deepEqual(await keyd.unwrap({ ...dk, wrapped }), dk.key);
    const again = await keyd.call('rewrapDataKey', {
      tenant: 'acme',
      purpose: 'data',
      keyId: dk.keyId,
      wrapped,
    });
    assert.deepEqual(again.wrapped, wrapped, 'a wrap already under the active version is returned as is');
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions[1]?.encryptions, 1);
  });

  test('retireTenantKeyVersion erases a decrypt-only version: its wraps fail with TRESOR_ERR_KEY_VERSION_RETIRED', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const old = await keyd.generate();
    await assert.rejects(
      keyd.call('retireTenantKeyVersion', { tenant: 'acme', version: 1 }),
      code('TRESOR_ERR_KEY_VERSION_ACTIVE'),
    );
    await keyd.call('rotateTenantKey', { tenant: 'acme' });
    const rewrapped = await keyd.call('rewrapDataKey', {
      tenant: 'acme',
      purpose: 'data',
      keyId: old.keyId,
      wrapped: old.wrapped,
    });
    const retired = await keyd.call('retireTenantKeyVersion', { tenant: 'acme', version: 1 });
    assert.equal(retired.state, 'retired');
    assert.equal(retired.rootVersion, null);
    await assert.rejects(keyd.unwrap(old), code('TRESOR_ERR_KEY_VERSION_RETIRED'));
    assert.deepEqual(
      await keyd.unwrap({ ...old, wrapped: rewrapped.wrapped }),
      old.key,
      'rewrapped copies live on',
    );
    await assert.rejects(
      keyd.call('retireTenantKeyVersion', { tenant: 'acme', version: 1 }),
      code('TRESOR_ERR_KEY_VERSION_RETIRED'),
    );
    await assert.rejects(
      keyd.call('retireTenantKeyVersion', { tenant: 'acme', version: 7 }),
      code('TRESOR_ERR_KEY_ID_UNKNOWN'),
    );
    const wrappedColumn = await keyd.offline((db) =>
      db.prepare('SELECT wrapped, root_version FROM tenant_keys WHERE version = 1').get(),
    );
    assert.deepEqual(wrappedColumn, { wrapped: null, root_version: null });
  });
});

describe('keyd service: usage limits and cryptoperiods', () => {
  test('the active version rotates automatically at rotateAtEncryptions, and counts continue across a restart', async (t) => {
    const keyd = await Keyd.start(t, { rotateAtEncryptions: 5, refuseAtEncryptions: 1000 });
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const keys = [await keyd.generate(), await keyd.generate(), await keyd.generate()];
    await keyd.restart();
    let status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions[0]?.encryptions, 3, 'the count was durable before the keys were returned');
    keys.push(await keyd.generate(), await keyd.generate());
    status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.deepEqual(
      status.versions.map((v) => [v.version, v.encryptions]),
      [[1, 5]],
    );
    const sixth = await keyd.generate();
    assert.equal(
      readEnvelopeHeader(sixth.wrapped).keyId,
      tenantKeyId('acme', 2),
      'the 6th key uses a new version',
    );
    status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.deepEqual(
      status.versions.map((v) => [v.version, v.state, v.encryptions]),
      [
        [1, 'decrypt-only', 5],
        [2, 'active', 1],
      ],
    );
    for (const dk of [...keys, sixth]) assert.deepEqual(await keyd.unwrap(dk), dk.key);
    const { entries } = await keyd.call('opsLog', { limit: 1000 }, ADMIN);
    const auto = entries.find((e) => e.op === 'rotateTenantKey');
    assert.equal(auto?.caller, SYSTEM_CALLER.id);
    assert.match(auto?.detail ?? '', /automatic/);
  });

  test('a version refuses to wrap more keys at refuseAtEncryptions (TRESOR_ERR_KEY_EXHAUSTED) until it is rotated', async (t) => {
    // rotateAt above refuseAt: automatic rotation never comes first, so the hard limit shows.
    const keyd = await Keyd.start(t, { rotateAtEncryptions: 100, refuseAtEncryptions: 3 });
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.generate();
    await keyd.generate();
    const dk = await keyd.generate();
    await keyd.restart();
    await assert.rejects(keyd.generate(), code('TRESOR_ERR_KEY_EXHAUSTED'));
    assert.deepEqual(await keyd.unwrap(dk), dk.key, 'unwrapping is not an encryption and goes on');
    await keyd.call('rotateTenantKey', { tenant: 'acme' });
    const fresh = await keyd.generate();
    assert.deepEqual(await keyd.unwrap(fresh), fresh.key);
  });

  test('concurrent generations never push a version past its limit', async (t) => {
    const keyd = await Keyd.start(t, { rotateAtEncryptions: 7, refuseAtEncryptions: 1000 });
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const keys = await Promise.all(Array.from({ length: 60 }, () => keyd.generate()));
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions.length, Math.ceil(60 / 7));
    assert.ok(status.versions.every((v) => v.encryptions <= 7));
    assert.equal(
      status.versions.reduce((sum, v) => sum + v.encryptions, 0),
      60,
    );
    for (const dk of keys) assert.deepEqual(await keyd.unwrap(dk), dk.key);
  });

  test('runMaintenance rotates tenant keys whose cryptoperiod has ended, as caller system', async (t) => {
    const keyd = await Keyd.start(t, { tenantKeyCryptoperiodDays: 30 });
    await keyd.call('createTenantKey', { tenant: 'acme' });
    keyd.advanceDays(10);
    await keyd.call('createTenantKey', { tenant: 'globex' });
    const dk = await keyd.generate('acme');
    keyd.advanceDays(25);
    const report = await keyd.service.runMaintenance();
    assert.deepEqual(report, { sealed: false, rotated: [tenantKeyId('acme', 2)], destroyed: [], failed: [] });
    keyd.advanceDays(10);
    await keyd.restart(); // unseal runs maintenance too
    const acme = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    const globex = await keyd.call('tenantKeyStatus', { tenant: 'globex' });
    assert.deepEqual(
      acme.versions.map((v) => v.state),
      ['decrypt-only', 'active'],
    );
    assert.deepEqual(
      globex.versions.map((v) => v.state),
      ['decrypt-only', 'active'],
    );
    assert.equal(acme.versions[1]?.rotateAfter, '2026-05-05T00:00:00.000Z');
    assert.deepEqual(await keyd.unwrap(dk), dk.key);
    const { entries } = await keyd.call('opsLog', { limit: 1000 }, ADMIN);
    const rotations = entries.filter((e) => e.op === 'rotateTenantKey');
    assert.equal(rotations.length, 2);
    assert.ok(rotations.every((e) => e.caller === 'system' && /cryptoperiod/.test(e.detail ?? '')));
  });

  test('maintenance runs on its timer, every maintenanceIntervalSeconds', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const reports: MaintenanceReport[] = [];
    let reported: (report: MaintenanceReport) => void = () => {};
    const keyd = await Keyd.start(
      t,
      { maintenanceIntervalSeconds: 3600, tenantKeyCryptoperiodDays: 1 },
      {
        onMaintenance: (report) => {
          reports.push(report);
          reported(report);
        },
      },
    );
    assert.equal(reports.length, 1, 'unseal ran maintenance once');
    await keyd.call('createTenantKey', { tenant: 'acme' });
    keyd.advanceDays(2);
    const next = new Promise<MaintenanceReport>((resolve) => {
      reported = resolve;
    });
    t.mock.timers.tick(3599_000);
    assert.equal(reports.length, 1, 'not before the hour');
    t.mock.timers.tick(1_000);
    assert.deepEqual((await next).rotated, [tenantKeyId('acme', 2)]);
  });
});

describe('keyd service: destruction (crypto-shredding)', () => {
  test('a scheduled destruction refuses data-key operations until it is cancelled', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    const scheduled = await keyd.call('destroyTenantKey', {
      tenant: 'acme',
      mode: 'schedule',
      graceSeconds: 3600,
    });
    assert.deepEqual(scheduled, {
      tenant: 'acme',
      state: 'pending-destroy',
      destroyAfter: '2026-03-01T01:00:00.000Z',
      destroyedAt: null,
      keyIdsDestroyed: [],
    });
    const pending = code('TRESOR_ERR_TENANT_KEY_PENDING_DESTROY');
    await assert.rejects(keyd.generate(), pending);
    await assert.rejects(keyd.unwrap(dk), pending);
    await assert.rejects(
      keyd.call('rewrapDataKey', { tenant: 'acme', purpose: 'data', keyId: dk.keyId, wrapped: dk.wrapped }),
      pending,
    );
    await assert.rejects(keyd.call('rotateTenantKey', { tenant: 'acme' }), pending);
    await assert.rejects(keyd.call('destroyTenantKey', { tenant: 'acme', mode: 'schedule' }), pending);
    assert.equal((await keyd.call('tenantKeyStatus', { tenant: 'acme' })).state, 'pending-destroy');

    // The server role may cancel: the server does so on an operator admin's audited request.
    const restored = await keyd.call('cancelTenantKeyDestroy', { tenant: 'acme' }, SERVER);
    assert.equal(restored.state, 'active');
    assert.equal(restored.destroyAfter, null);
    assert.deepEqual(await keyd.unwrap(dk), dk.key);
  });

  test('the default grace period comes from the config', async (t) => {
    const keyd = await Keyd.start(t, { destroyGraceSeconds: 86400 });
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const scheduled = await keyd.call('destroyTenantKey', { tenant: 'acme', mode: 'schedule' });
    assert.equal(scheduled.destroyAfter, '2026-03-02T00:00:00.000Z');
  });

  test('runMaintenance completes a scheduled destruction once the grace period has passed', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    await keyd.call('destroyTenantKey', { tenant: 'acme', mode: 'schedule', graceSeconds: 7 * 86400 });
    keyd.advanceDays(6);
    assert.deepEqual((await keyd.service.runMaintenance()).destroyed, []);
    keyd.advanceDays(1);
    const report = await keyd.service.runMaintenance();
    assert.deepEqual(report.destroyed, ['acme']);
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.state, 'destroyed');
    assert.equal(status.destroyedAt, '2026-03-08T00:00:00.000Z');
    await assert.rejects(keyd.unwrap(dk), code('TRESOR_ERR_TENANT_KEY_DESTROYED'));
    await assert.rejects(
      keyd.call('cancelTenantKeyDestroy', { tenant: 'acme' }, ADMIN),
      code('TRESOR_ERR_TENANT_KEY_DESTROYED'),
    );
    const { entries } = await keyd.call('opsLog', { limit: 1000 }, ADMIN);
    const shred = entries.find((e) => e.op === 'destroyTenantKey' && e.caller === 'system');
    assert.match(shred?.detail ?? '', /grace period over/);
  });

  test('crypto-shredding leaves no wrapped tenant key in the store file or its WAL, and no earlier data key unwraps', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.call('createTenantKey', { tenant: 'globex' });
    const keys = [await keyd.generate()];
    await keyd.call('rotateTenantKey', { tenant: 'acme' });
    keys.push(await keyd.generate());
    const readWrapped = (db: Database.Database) =>
      (
        db.prepare(`SELECT wrapped FROM tenant_keys WHERE tenant = 'acme'`).all() as { wrapped: Buffer }[]
      ).map((r) => r.wrapped);
    const underRoot1 = await keyd.offline(readWrapped);
    await keyd.call('rotateRootKey', {}, ADMIN); // a second wrapped form of each version
    const underRoot2 = await keyd.offline(readWrapped);
    const globexKey = await keyd.generate('globex');

    const result = await keyd.call('destroyTenantKey', { tenant: 'acme', mode: 'now' });
    assert.equal(result.state, 'destroyed');
    assert.equal(result.destroyedAt, T0.toISOString());
    assert.deepEqual(result.keyIdsDestroyed, [tenantKeyId('acme', 1), tenantKeyId('acme', 2)]);

    const files = [KEY_STORE_FILE, `${KEY_STORE_FILE}-wal`, `${KEY_STORE_FILE}-shm`]
      .map((f) => join(keyd.dir, f))
      .filter((p) => existsSync(p))
      .map((p) => readFileSync(p));
    for (const wrapped of [...underRoot1, ...underRoot2]) {
      const secretPart = wrapped.subarray(readEnvelopeHeader(wrapped).headerLength); // nonce ‖ ciphertext ‖ tag
      for (const file of files) {
        assert.equal(includes(file, secretPart), false, 'an old wrapped tenant key is still on disk');
        assert.equal(
          includes(file, secretPart.subarray(12, 28)),
          false,
          'part of an old wrapped key is still on disk',
        );
      }
    }
    for (const dk of keys) await assert.rejects(keyd.unwrap(dk), code('TRESOR_ERR_TENANT_KEY_DESTROYED'));
    assert.deepEqual(await keyd.unwrap(globexKey), globexKey.key, 'other tenants are untouched');

    const rows = await keyd.offline((db) =>
      db
        .prepare(`SELECT state, wrapped, root_version AS rootVersion FROM tenant_keys WHERE tenant = 'acme'`)
        .all(),
    );
    assert.deepEqual(rows, [
      { state: 'destroyed', wrapped: null, rootVersion: null },
      { state: 'destroyed', wrapped: null, rootVersion: null },
    ]);
  });

  test('after destruction every operation on the tenant fails with TRESOR_ERR_TENANT_KEY_DESTROYED and the id cannot be reused', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    await keyd.call('destroyTenantKey', { tenant: 'acme', mode: 'schedule' });
    await keyd.call('destroyTenantKey', { tenant: 'acme', mode: 'now' }); // shredding early is allowed
    const destroyed = code('TRESOR_ERR_TENANT_KEY_DESTROYED');
    await assert.rejects(keyd.generate(), destroyed);
    await assert.rejects(keyd.unwrap(dk), destroyed);
    await assert.rejects(
      keyd.call('rewrapDataKey', { tenant: 'acme', purpose: 'data', keyId: dk.keyId, wrapped: dk.wrapped }),
      destroyed,
    );
    await assert.rejects(keyd.call('rotateTenantKey', { tenant: 'acme' }), destroyed);
    await assert.rejects(keyd.call('retireTenantKeyVersion', { tenant: 'acme', version: 1 }), destroyed);
    await assert.rejects(keyd.call('destroyTenantKey', { tenant: 'acme', mode: 'now' }), destroyed);
    await assert.rejects(keyd.call('cancelTenantKeyDestroy', { tenant: 'acme' }, ADMIN), destroyed);
    await assert.rejects(keyd.call('createTenantKey', { tenant: 'acme' }), destroyed);
    await keyd.restart();
    await assert.rejects(keyd.unwrap(dk), destroyed);
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.state, 'destroyed');
    assert.ok(status.versions.every((v) => v.state === 'destroyed' && v.rootVersion === null));
  });
});

describe('keyd service: root key rotation', () => {
  test('rotateRootKey rewraps every tenant and signing key under a new root version; the old one can then retire', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.call('createTenantKey', { tenant: 'globex' });
    await keyd.call('rotateTenantKey', { tenant: 'acme' });
    const pub = await keyd.call('publicKey', { purpose: 'audit-checkpoint' });
    const dk = await keyd.generate();
    await assert.rejects(
      keyd.call('retireRootKeyVersion', { version: 1 }, ADMIN),
      code('TRESOR_ERR_KEY_VERSION_ACTIVE'),
    );

    const rotated = await keyd.call('rotateRootKey', {}, ADMIN);
    assert.deepEqual(rotated, { version: 2, rewrapped: 4 });
    await assert.rejects(
      keyd.call('retireRootKeyVersion', { version: 2 }, ADMIN),
      code('TRESOR_ERR_KEY_VERSION_ACTIVE'),
    );
    assert.deepEqual(await keyd.call('retireRootKeyVersion', { version: 1 }, ADMIN), { version: 1 });
    await assert.rejects(
      keyd.call('retireRootKeyVersion', { version: 1 }, ADMIN),
      code('TRESOR_ERR_KEY_VERSION_RETIRED'),
    );
    assert.deepEqual(
      keyd.provider
        .keyring()
        ?.versions()
        .map((v) => v.version),
      [2],
    );

    await keyd.restart(); // nothing cached: everything must unwrap under root v2 alone
    assert.deepEqual(await keyd.unwrap(dk), dk.key);
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.ok(status.versions.every((v) => v.rootVersion === 2));
    assert.equal((await keyd.call('health', {})).rootVersion, 2);
    assert.deepEqual(await keyd.call('publicKey', { purpose: 'audit-checkpoint' }), pub);
  });

  test('a crash between adding a root version and rewrapping leaves a working keyd, and rotateRootKey completes it', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    const pub = await keyd.call('publicKey', { purpose: 'deletion-certificate' });
    await keyd.provider.keyring()?.addVersion(); // step 1 only, then "crash"
    await keyd.restart();
    assert.deepEqual(await keyd.unwrap(dk), dk.key);
    assert.deepEqual(await keyd.call('publicKey', { purpose: 'deletion-certificate' }), pub);
    let status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions[0]?.rootVersion, 1, 'rows still name the old, still-present root version');
    await keyd.call('createTenantKey', { tenant: 'globex' });
    assert.equal((await keyd.call('tenantKeyStatus', { tenant: 'globex' })).versions[0]?.rootVersion, 2);

    await assert.rejects(
      keyd.call('retireRootKeyVersion', { version: 1 }, ADMIN),
      code('TRESOR_ERR_KEY_VERSION_IN_USE'),
      'a root version that still wraps rows cannot be retired',
    );

    const rotated = await keyd.call('rotateRootKey', {}, ADMIN);
    assert.deepEqual(rotated, { version: 3, rewrapped: 3 });
    await keyd.call('retireRootKeyVersion', { version: 1 }, ADMIN);
    await keyd.call('retireRootKeyVersion', { version: 2 }, ADMIN);
    await keyd.restart();
    assert.deepEqual(await keyd.unwrap(dk), dk.key);
    status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions[0]?.rootVersion, 3);
  });

  test('a failed rewrap changes no row: the transaction is all or nothing', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.call('createTenantKey', { tenant: 'zeta' });
    const dk = await keyd.generate();
    await keyd.offline((db) => {
      const row = db.prepare(`SELECT wrapped FROM tenant_keys WHERE tenant = 'zeta'`).get() as {
        wrapped: Buffer;
      };
      db.prepare(`UPDATE tenant_keys SET wrapped = ? WHERE tenant = 'zeta'`).run(
        flipByte(row.wrapped, row.wrapped.length - 1),
      );
    });
    await assert.rejects(keyd.call('rotateRootKey', {}, ADMIN), code('TRESOR_ERR_STORE_CORRUPT'));
    const rows = await keyd.offline((db) =>
      db.prepare('SELECT tenant, root_version AS v FROM tenant_keys').all(),
    );
    assert.deepEqual(rows, [
      { tenant: 'acme', v: 1 },
      { tenant: 'zeta', v: 1 },
    ]);
    assert.deepEqual(await keyd.unwrap(dk), dk.key);
  });
});

describe('keyd service: store integrity', () => {
  test('a corrupted tenant_keys row fails with TRESOR_ERR_STORE_CORRUPT naming the row, not its bytes', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    const wrapped = await keyd.offline((db) => {
      const row = db.prepare(`SELECT wrapped FROM tenant_keys WHERE tenant = 'acme'`).get() as {
        wrapped: Buffer;
      };
      db.prepare(`UPDATE tenant_keys SET wrapped = ? WHERE tenant = 'acme'`).run(flipByte(row.wrapped, 40));
      return row.wrapped;
    });
    await assert.rejects(keyd.unwrap(dk), (err: { code: string; message: string }) => {
      assert.equal(err.code, 'TRESOR_ERR_STORE_CORRUPT');
      assert.match(err.message, /tenant_keys row \(tenant acme, version 1\)/);
      assert.equal(err.message.includes(wrapped.toString('hex').slice(0, 16)), false);
      assert.equal(err.message.includes(wrapped.toString('base64').slice(0, 16)), false);
      return true;
    });
    await assert.rejects(keyd.generate(), code('TRESOR_ERR_STORE_CORRUPT'));
  });

  test('a tenant key row copied over another tenant fails with TRESOR_ERR_STORE_CORRUPT', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.call('createTenantKey', { tenant: 'globex' });
    const dk = await keyd.generate('globex');
    await keyd.offline((db) => {
      db.prepare(
        `UPDATE tenant_keys SET wrapped = (SELECT wrapped FROM tenant_keys WHERE tenant = 'acme') WHERE tenant = 'globex'`,
      ).run();
    });
    await assert.rejects(keyd.unwrap(dk), code('TRESOR_ERR_STORE_CORRUPT'));
    await assert.rejects(keyd.generate('globex'), code('TRESOR_ERR_STORE_CORRUPT'));
  });

  test('a signing key whose stored public key was swapped fails with TRESOR_ERR_STORE_CORRUPT', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('publicKey', { purpose: 'trust-statement' });
    await keyd.offline((db) => db.prepare('UPDATE signing_keys SET public_key = ?').run(Buffer.alloc(32, 7)));
    await assert.rejects(
      keyd.call('sign', {
        purpose: 'trust-statement',
        message: Buffer.from(`tresor-trust/v1\n${'a'.repeat(64)}\n`),
      }),
      code('TRESOR_ERR_STORE_CORRUPT'),
    );
  });
});

describe('keyd service: concurrency and crashes', () => {
  test('rotations during concurrent generate and unwrap calls: every call succeeds and every wrap still unwraps', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.call('createTenantKey', { tenant: 'globex' });
    const earlier = await Promise.all(
      Array.from({ length: 20 }, (_, i) => keyd.generate(i % 2 ? 'acme' : 'globex')),
    );
    const calls: Promise<unknown>[] = [];
    const generated: Promise<DataKey>[] = [];
    for (let i = 0; i < 240; i++) {
      const prior = earlier[i % earlier.length] as DataKey;
      if (i % 3 === 0) {
        const p = keyd.generate(i % 2 ? 'acme' : 'globex');
        generated.push(p);
        calls.push(p);
      } else {
        calls.push(keyd.unwrap(prior).then((key) => assert.deepEqual(key, prior.key)));
      }
      if (i === 40 || i === 160) calls.push(keyd.call('rotateTenantKey', { tenant: 'acme' }));
      if (i === 90) calls.push(keyd.call('rotateRootKey', {}, ADMIN));
      if (i === 120) calls.push(keyd.call('rotateTenantKey', { tenant: 'globex' }));
      if (i === 200)
        calls.push(
          keyd.call('sign', {
            purpose: 'trust-statement',
            message: Buffer.from(`tresor-trust/v1\n${'a'.repeat(64)}\n`),
          }),
        );
    }
    const results = await Promise.allSettled(calls);
    assert.deepEqual(
      results.filter((r) => r.status === 'rejected'),
      [],
    );
    await keyd.restart();
    for (const dk of [...earlier, ...(await Promise.all(generated))])
      assert.deepEqual(await keyd.unwrap(dk), dk.key);
    const acme = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(acme.versions.length, 3);
    assert.ok(acme.versions.every((v) => v.rootVersion === 2));
    assert.equal((await keyd.service.verifyOpsLog()).ok, true);
  });

  test('after kill -9 under load the store is intact, the ops log verifies and every acknowledged data key unwraps', async (t) => {
    const keyd = new Keyd({ rotateAtEncryptions: 40 });
    t.after(async () => {
      await keyd.service?.close();
      rmSync(keyd.dir, { recursive: true, force: true });
    });
    const script = join(keyd.dir, 'crash-child.mts');
    writeFileSync(
      script,
      `
import { createKeyService } from ${JSON.stringify(join(REPO, 'src/keyd/service.ts'))};
import { DevFileProvider } from ${JSON.stringify(join(REPO, 'src/keyd/root/dev-file.ts'))};
const dir = process.argv[2];
const caller = { id: 'crash-test', role: 'admin' };
const keyd = createKeyService({ dir, provider: new DevFileProvider(dir), config: { maintenanceIntervalSeconds: 0, rotateAtEncryptions: 40 } });
await keyd.call('unseal', { secret: '' }, caller);
await keyd.call('createTenantKey', { tenant: 'acme' }, caller);
const acked = [];
for (;;) {
  const batch = await Promise.all(Array.from({ length: 8 }, () => keyd.call('generateDataKey', { tenant: 'acme', purpose: 'data' }, caller)));
  for (const k of batch) {
    acked.push(k);
    process.stdout.write(JSON.stringify({ keyId: k.keyId, key: k.key.toString('base64'), wrapped: k.wrapped.toString('base64') }) + '\\n');
  }
  const prior = acked[Math.floor(Math.random() * acked.length)];
  await keyd.call('unwrapDataKey', { tenant: 'acme', purpose: 'data', keyId: prior.keyId, wrapped: prior.wrapped }, caller);
}
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, keyd.dir], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked: { keyId: string; key: string; wrapped: string }[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<NodeJS.Signals | null>((done) =>
      child.on('exit', (_code, signal) => done(signal)),
    );
    await new Promise<void>((enough, failed) => {
      let pending = '';
      child.stdout.on('data', (d: Buffer) => {
        pending += d.toString();
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) acked.push(JSON.parse(line));
        if (acked.length >= 300 && child.exitCode === null) {
          child.kill('SIGKILL');
          enough();
        }
      });
      child.on('exit', () => failed(new Error(`child exited before the kill: ${stderr}`)));
    });
    assert.equal(await exited, 'SIGKILL');

    const db = new Database(join(keyd.dir, KEY_STORE_FILE));
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    db.close();
    await keyd.open();
    assert.equal((await keyd.service.verifyOpsLog()).ok, true);
    for (const a of acked) {
      const key = await keyd.unwrap({
        tenant: 'acme',
        purpose: 'data',
        keyId: a.keyId,
        key: Buffer.alloc(0),
        wrapped: Buffer.from(a.wrapped, 'base64'),
      });
      assert.equal(key.toString('base64'), a.key);
    }
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    const counted = status.versions.reduce((sum, v) => sum + v.encryptions, 0);
    assert.ok(
      counted >= acked.length,
      `counted ${counted} encryptions for ${acked.length} acknowledged keys`,
    );
    assert.ok(status.versions.every((v) => v.encryptions <= 40));
  });
});

describe('keyd service: signing keys', () => {
  test('sign returns a 64-byte Ed25519 signature that verifies under the published public key', async (t) => {
    const keyd = await Keyd.start(t);
    const message = Buffer.from(`tresor-trust/v1\n${'a'.repeat(64)}\n`);
    const { signature, keyName } = await keyd.call('sign', { purpose: 'trust-statement', message });
    assert.equal(keyName, 'tresor-keyd/trust-statement');
    assert.equal(signature.length, 64);
    const info = await keyd.call('publicKey', { purpose: 'trust-statement' });
    assert.equal(info.name, keyName);
    assert.equal(info.publicKey.length, 32);
    const publicKey = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: info.publicKey.toString('base64url') },
      format: 'jwk',
    });
    assert.equal(verify(null, message, publicKey, signature), true);
    // <name>+<8 hex>+<base64>: split on the first two '+' only, base64 has '+' of its own.
    const [, name, hash, data] = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(info.verifierKey) ?? [];
    assert.equal(name, keyName);
    assert.equal(hash, noteKeyId(keyName, info.publicKey).toString('hex'));
    assert.deepEqual(Buffer.from(data ?? '', 'base64'), Buffer.concat([Buffer.of(0x01), info.publicKey]));

    const other = await keyd.call('publicKey', { purpose: 'deletion-certificate' });
    assert.notDeepEqual(other.publicKey, info.publicKey, 'one key per purpose');
    await keyd.restart();
    assert.deepEqual(
      await keyd.call('publicKey', { purpose: 'trust-statement' }),
      info,
      'stored, not regenerated',
    );
  });

  test('note key ids, verifier keys and signatures match the Go sumdb/note reference vector', () => {
    // golang.org/x/mod/sumdb/note: PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz
    const seed = Buffer.from('AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz', 'base64').subarray(1);
    const publicKey = ed25519PublicKey(seed);
    assert.equal(
      noteVerifierKey('PeterNeumann', publicKey),
      'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    );
    const text =
      "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const line = Buffer.from(
      'x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=',
      'base64',
    );
    assert.deepEqual(line.subarray(0, 4), noteKeyId('PeterNeumann', publicKey));
    assert.deepEqual(signEd25519(seed, Buffer.from(text)), line.subarray(4));
    assert.throws(() => noteVerifierKey('has space', publicKey));
    assert.throws(() => noteVerifierKey('has+plus', publicKey));
  });
});

describe('keyd service: what leaves keyd', () => {
  test('no operation result contains a tenant key, in bytes, hex or base64', async (t) => {
    const keyd = await Keyd.start(t, { rotateAtEncryptions: 3 });
    const results: unknown[] = [];
    const record = async <T>(p: Promise<T>): Promise<T> => {
      const r = await p;
      results.push(r);
      return r;
    };
    await record(keyd.call('createTenantKey', { tenant: 'acme' }));
    const keys: DataKey[] = [];
    for (let i = 0; i < 5; i++) keys.push(await record(keyd.generate()));
    for (const dk of keys) await record(keyd.unwrap(dk));
    await record(keyd.call('rotateTenantKey', { tenant: 'acme' }));
    const first = keys[0] as DataKey;
    await record(
      keyd.call('rewrapDataKey', {
        tenant: 'acme',
        purpose: 'data',
        keyId: first.keyId,
        wrapped: first.wrapped,
      }),
    );
    await record(keyd.call('tenantKeyStatus', { tenant: 'acme' }));
    await record(keyd.call('rotateRootKey', {}, ADMIN));
    await record(keyd.call('health', {}));
    await record(keyd.call('opsLog', { limit: 1000 }, ADMIN));

    const rows = (await keyd.offline((db) =>
      db.prepare(`SELECT tenant, version, key_id AS keyId, wrapped FROM tenant_keys`).all(),
    )) as { tenant: string; version: number; keyId: string; wrapped: Buffer }[];
    const provider = new DevFileProvider(keyd.dir);
    await provider.unseal('');
    const tenantKeys = rows.map((r) =>
      provider
        .keyring()
        ?.unwrap(r.wrapped, 'tenant-key', { tenant: r.tenant, version: r.version, keyId: r.keyId }),
    );
    provider.seal();
    assert.equal(tenantKeys.length, 3);
    const seen: Buffer[] = [];
    const walk = (v: unknown): void => {
      if (Buffer.isBuffer(v)) seen.push(v);
      else if (typeof v === 'string') seen.push(Buffer.from(v));
      else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
    };
    walk(results);
    for (const tk of tenantKeys) {
      assert.ok(tk && tk.length === 32);
      for (const b of seen) {
        assert.equal(includes(b, tk), false);
        assert.equal(includes(b, Buffer.from(tk.toString('hex'))), false);
        assert.equal(includes(b, Buffer.from(tk.toString('base64'))), false);
      }
    }
  });
});

describe('keyd service: operations log', () => {
  test('every operation, refused ones included, appends an entry that holds no key material', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    const dk = await keyd.generate();
    await keyd.unwrap(dk);
    await assert.rejects(keyd.call('rotateRootKey', {}, SERVER));
    await assert.rejects(keyd.generate('ghost'));
    await assert.rejects(keyd.unwrap({ ...dk, purpose: 'backup' }));
    const signed = await keyd.call('sign', {
      purpose: 'trust-statement',
      message: Buffer.from(`tresor-trust/v1\n${'a'.repeat(64)}\n`),
    });
    const { entries } = await keyd.call('opsLog', {}, ADMIN);
    const summary = entries.map((e) => [e.caller, e.op, e.tenant, e.outcome]);
    assert.deepEqual(summary, [
      ['unix:admin', 'unseal', null, 'ok'],
      ['unix:server', 'createTenantKey', 'acme', 'ok'],
      ['unix:server', 'generateDataKey', 'acme', 'ok'],
      ['unix:server', 'unwrapDataKey', 'acme', 'ok'],
      ['unix:server', 'rotateRootKey', null, 'error'],
      ['unix:server', 'generateDataKey', 'ghost', 'error'],
      ['unix:server', 'unwrapDataKey', 'acme', 'error'],
      ['system', 'createSigningKey', null, 'ok'],
      ['unix:server', 'sign', null, 'ok'],
    ]);
    assert.deepEqual(
      entries.map((e) => e.seq),
      [1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert.equal(entries[2]?.keyId, dk.keyId);
    assert.match(entries[4]?.detail ?? '', /^TRESOR_ERR_FORBIDDEN/);
    assert.match(entries[5]?.detail ?? '', /^TRESOR_ERR_TENANT_KEY_UNKNOWN/);
    const text = JSON.stringify(entries);
    for (const secret of [dk.key, dk.wrapped, signed.signature]) {
      assert.equal(text.includes(secret.toString('hex')), false);
      assert.equal(text.includes(secret.toString('base64')), false);
    }
    const page = await keyd.call('opsLog', { from: 3, limit: 2 }, ADMIN);
    assert.deepEqual(
      page.entries.map((e) => e.seq),
      [3, 4],
    );
    const verified = await keyd.service.verifyOpsLog(); // 11 entries: the two opsLog calls count too
    const last = (await keyd.call('opsLog', { from: 11 }, ADMIN)).entries[0];
    assert.deepEqual(verified, { ok: true, entries: 11, headHash: last?.hash });
  });

  test('verifyOpsLog reports the first entry edited behind the triggers', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.generate();
    await keyd.generate();
    assert.equal((await keyd.service.verifyOpsLog()).ok, true);
    await keyd.offline((db) => {
      // An attacker with file access can drop the trigger; the hash chain still gives them away.
      db.exec('DROP TRIGGER ops_log_no_update');
      db.prepare(`UPDATE ops_log SET caller = 'someone-else' WHERE seq = 3`).run();
    });
    const result = await keyd.service.verifyOpsLog();
    assert.equal(result.ok, false);
    assert.equal(result.ok === false && result.firstBadSeq, 3);
  });

  test('an ops-log entry that cannot be written fails the operation and returns no key', async (t) => {
    const keyd = await Keyd.start(t);
    await keyd.call('createTenantKey', { tenant: 'acme' });
    await keyd.offline((db) => {
      db.exec(`CREATE TRIGGER refuse_log BEFORE INSERT ON ops_log WHEN NEW.op = 'generateDataKey'
               BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`);
    });
    await assert.rejects(keyd.generate(), code('TRESOR_ERR_INTERNAL'));
    const status = await keyd.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions[0]?.encryptions, 1, 'the encryption still counts: over-counting is safe');
  });
});
