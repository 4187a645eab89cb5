/**
 * The server-side data keyring against the real key service (dev root key file), the real key cache
 * and the production data-key store (each tenant's wrapped keys in its own SQLite tenant store):
 * counting per NIST SP 800-38D §8.3, rotation, restarts, fail-closed.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openEnvelope, sealEnvelope } from '../../src/crypto/index.ts';
import { toProblem } from '../../src/http/problem.ts';
import { createKeyCache, type KeyCache } from '../../src/keyd/key-cache.ts';
import type { DataKeyPurpose, KeyService } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { createTenantDataKeyStore } from '../../src/vault/data-key-store.ts';
import { createDataKeyring, type DataKeyLimits } from '../../src/vault/data-keys.ts';
import { type TenantDB, tenantStoreMigrations } from '../../src/vault/tenant-store-schema.ts';

const ADMIN = { id: 'test', role: 'admin' } as const;

const SERVER = { id: 'unix:tresor-server', role: 'server' } as const;
const FIELD = { tenant: 'acme', collection: 'people', record: 'r1', field: 'email', version: 1 };

type Ring = ReturnType<typeof createDataKeyring>;

/** Counts `count` encryptions and returns the key id used. */
function enc(ring: Ring, purpose: DataKeyPurpose, count = 1, tenant = 'acme'): Promise<string> {
  return ring.withEncryptionKey(tenant, purpose, count, (_key, keyId) => keyId);
}

function seal(ring: Ring, purpose: DataKeyPurpose, text: string): Promise<{ keyId: string; ct: Buffer }> {
  return ring.withEncryptionKey('acme', purpose, 1, (key, keyId) => ({
    keyId,
    ct: sealEnvelope(key, keyId, Buffer.from(text), 'field', FIELD),
  }));
}

function open(ring: Ring, purpose: DataKeyPurpose, keyId: string, ct: Buffer): Promise<string> {
  return ring.withDecryptionKey('acme', purpose, keyId, (key) =>
    openEnvelope(key, keyId, ct, 'field', FIELD).toString(),
  );
}

interface Rig {
  dir: string;
  service: KeydService;
  /** The tenant's store, opened once until reopenStores(). */
  store(tenant: string): Promise<Store<TenantDB>>;
  cache: KeyCache;
  keyring(limits?: Partial<DataKeyLimits>): ReturnType<typeof createDataKeyring>;
  /** Closes every tenant store and empties the key cache: what a new process would find. */
  reopenStores(): Promise<void>;
  close(): Promise<void>;
}

async function rig(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-dk-'));
  const keydDir = join(dir, 'keyd');
  mkdirSync(keydDir, { mode: 0o700 });
  initDevFile(keydDir);
  const service = createKeyService({
    dir: keydDir,
    provider: new DevFileProvider(keydDir),
    config: { maintenanceIntervalSeconds: 0 },
  });
  await service.call('unseal', { secret: '' }, ADMIN);
  await service.call('createTenantKey', { tenant: 'acme' }, ADMIN);
  const opened = new Map<string, Promise<Store<TenantDB>>>();
  const closeStores = async () => {
    const all = [...opened.values()];
    opened.clear();
    for (const s of all) await (await s).close();
  };
  const r: Rig = {
    dir,
    service,
    store(tenant) {
      let s = opened.get(tenant);
      if (!s) {
        s = openSqliteStore<TenantDB>(join(dir, `${tenant}.sqlite`), tenantStoreMigrations);
        opened.set(tenant, s);
      }
      return s;
    },
    cache: createKeyCache({ maxEntries: 100, ttlMs: 60_000, maxUses: 1_000_000, sweepIntervalMs: 0 }),
    keyring(limits) {
      const keys = { call: ((op, args) => service.call(op, args, SERVER)) as KeyService['call'] };
      const store = createTenantDataKeyStore((tenant) => r.store(tenant));
      return createDataKeyring({ keys, store, cache: r.cache, limits });
    },
    async reopenStores() {
      await closeStores();
      r.cache.clear();
    },
    async close() {
      r.cache.close();
      await closeStores();
      await service.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return r;
}

describe('data keyring', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(async () => {
    await r.close();
  });

  it('counts every encryption and claims a block durably before using a count', async () => {
    const ring = r.keyring({ reservationBlock: 100 });
    for (let i = 0; i < 250; i++) await enc(ring, 'data');
    const usage = ring.usage('acme', 'data');
    assert.ok(usage);
    assert.equal(usage.used, 250);
    assert.equal(usage.claimed, 300, 'three blocks of 100');
    const store = await r.store('acme');
    const row = await store.db
      .selectFrom('data_keys')
      .select('reserved')
      .where('key_id', '=', usage.keyId)
      .executeTakeFirstOrThrow();
    assert.ok(row.reserved >= 250, 'the store always holds at least the count in use');
    assert.equal(row.reserved, usage.claimed);
    assert.equal(usage.end, row.reserved);
  });

  it('counts concurrent encryptions exactly', async () => {
    const ring = r.keyring({ reservationBlock: 64 });
    const first = await enc(ring, 'blind-index');
    const ids = await Promise.all(Array.from({ length: 999 }, () => enc(ring, 'blind-index')));
    assert.ok(ids.every((id) => id === first));
    assert.equal(ring.usage('acme', 'blind-index')?.used, 1000);
  });

  it('after a restart claims a new block past everything claimed before, never reusing a count', async () => {
    const ring = r.keyring({ reservationBlock: 100 });
    await enc(ring, 'backup', 30);
    const before = ring.usage('acme', 'backup');
    assert.ok(before);
    await r.reopenStores(); // a new process: nothing in memory
    const again = r.keyring({ reservationBlock: 100 });
    assert.equal(await enc(again, 'backup'), before.keyId);
    const after = again.usage('acme', 'backup');
    assert.ok(after);
    assert.equal(after.next, before.end + 1, 'the unused rest of the first block is given up');
    assert.equal(after.end, before.end + 100);
  });

  it('rotates the data key when it reaches the rotation threshold; the old key keeps decrypting', async () => {
    const ring = r.keyring({ rotateAt: 10, reservationBlock: 4 });
    const k1 = await seal(ring, 'audit-hmac', 'v1');
    await enc(ring, 'audit-hmac', 9);
    const k2 = await enc(ring, 'audit-hmac');
    assert.notEqual(k2, k1.keyId);
    r.cache.clear();
    assert.equal(await open(ring, 'audit-hmac', k1.keyId, k1.ct), 'v1');
  });

  it('refuses to encrypt past the hard limit when rotation keeps failing (keyd sealed), and fails closed with 503', async () => {
    const local = await rig();
    try {
      const ring = local.keyring({ rotateAt: 5, refuseAt: 8, reservationBlock: 100 });
      await enc(ring, 'data', 5);
      await local.service.call('seal', {}, ADMIN);
      // Rotation fails (sealed) but the key is below the hard limit: it keeps serving from the cache.
      await enc(ring, 'data', 3);
      await assert.rejects(enc(ring, 'data'), { code: 'TRESOR_ERR_KEY_EXHAUSTED' });
      local.cache.clear();
      const usage = ring.usage('acme', 'data');
      assert.ok(usage);
      const err = await ring
        .withDecryptionKey('acme', 'data', usage.keyId, () => 'served')
        .catch((e: unknown) => e);
      assert.equal((err as { code?: string }).code, 'TRESOR_ERR_KEYD_SEALED');
      assert.equal(toProblem(err).status, 503);
    } finally {
      await local.close();
    }
  });

  it('re-wraps every data key after a tenant-key rotation so the old version can be retired', async () => {
    const local = await rig();
    try {
      const ring = local.keyring();
      const k = await seal(ring, 'data', 'kept');
      const v2 = await local.service.call('rotateTenantKey', { tenant: 'acme' }, ADMIN);
      assert.equal(v2.version, 2);
      assert.equal(await ring.rewrapAll('acme'), 1);
      await local.service.call('retireTenantKeyVersion', { tenant: 'acme', version: 1 }, ADMIN);
      local.cache.clear();
      assert.equal(await open(ring, 'data', k.keyId, k.ct), 'kept');
    } finally {
      await local.close();
    }
  });

  it('makes every data key of a crypto-shredded tenant unrecoverable', async () => {
    const local = await rig();
    try {
      const ring = local.keyring();
      const k = await seal(ring, 'data', 'gone');
      await local.service.call('destroyTenantKey', { tenant: 'acme', mode: 'now' }, ADMIN);
      local.cache.clear();
      await assert.rejects(open(ring, 'data', k.keyId, k.ct), { code: 'TRESOR_ERR_TENANT_KEY_DESTROYED' });
      await assert.rejects(enc(ring, 'blind-index'), { code: 'TRESOR_ERR_TENANT_KEY_DESTROYED' });
    } finally {
      await local.close();
    }
  });

  it('refuses a key id of another tenant', async () => {
    const ring = r.keyring();
    await r.service.call('createTenantKey', { tenant: 'other' }, ADMIN);
    const keyId = await enc(ring, 'data', 1, 'other');
    await assert.rejects(
      ring.withDecryptionKey('acme', 'data', keyId, () => 'served'),
      { code: 'TRESOR_ERR_KEY_ID_UNKNOWN' },
    );
  });

  it("forgets a closed tenant's keys from memory while other tenants' stay cached", async () => {
    const local = await rig();
    try {
      const ring = local.keyring();
      await local.service.call('createTenantKey', { tenant: 'other' }, ADMIN);
      const a = await seal(ring, 'data', 'a-value');
      const bKeyId = await enc(ring, 'data', 1, 'other');
      ring.forgetTenant('acme');
      assert.equal(ring.usage('acme', 'data'), undefined, 'counters forgotten');
      await local.service.call('seal', {}, ADMIN); // nothing can be reloaded from keyd now
      await assert.rejects(open(ring, 'data', a.keyId, a.ct), { code: 'TRESOR_ERR_KEYD_SEALED' });
      assert.equal(await ring.withDecryptionKey('other', 'data', bKeyId, () => 'cached'), 'cached');
    } finally {
      await local.close();
    }
  });

  it('derives a key once, caches it beside its data key, and forgets it with the tenant', async () => {
    const local = await rig();
    try {
      const ring = local.keyring();
      const keyId = await enc(ring, 'blind-index');
      let derivations = 0;
      const derive = (key: Buffer) => {
        derivations++;
        return Buffer.concat([Buffer.from('derived:'), key.subarray(0, 4)]);
      };
      const direct = await ring.withDecryptionKey('acme', 'blind-index', keyId, (key) =>
        derive(key).toString('hex'),
      );
      derivations = 0;
      const first = await ring.withDerivedKey('acme', 'blind-index', keyId, 'f1', derive, (k) =>
        k.toString('hex'),
      );
      const second = await ring.withDerivedKey('acme', 'blind-index', keyId, 'f1', derive, (k) =>
        k.toString('hex'),
      );
      assert.equal(first, direct);
      assert.equal(second, direct);
      assert.equal(derivations, 1, 'the second use comes from the cache');
      await ring.withDerivedKey('acme', 'blind-index', keyId, 'f2', derive, () => undefined);
      assert.equal(derivations, 2, 'another label is another derivation');
      ring.forgetTenant('acme');
      await local.service.call('seal', {}, ADMIN); // nothing can be reloaded from keyd now
      await assert.rejects(
        ring.withDerivedKey('acme', 'blind-index', keyId, 'f1', derive, () => undefined),
        { code: 'TRESOR_ERR_KEYD_SEALED' },
        'the derived key went with the tenant',
      );
    } finally {
      await local.close();
    }
  });
});
