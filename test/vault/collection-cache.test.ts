/**
 * The record path's cache of collection rows: a repeated request does not read the row, a change
 * made through the vault is seen at once, a change made by another process cannot let a write
 * commit under the wrong schema nor hide a field from a read, and the TTL bounds the rest.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createReadOutbox } from '../../src/audit/read-outbox.ts';
import type { Store } from '../../src/store/types.ts';
import { createVault, type Vault } from '../../src/vault/collections.ts';
import type { TenantDB } from '../../src/vault/tenant-store-schema.ts';
import { caller, type VaultRig, vaultRig } from './helpers.ts';

const T = 'acme';
const V1 = {
  fields: {
    email: { type: 'string', classification: 'personal', required: true, searchable: true },
    name: { type: 'string', classification: 'personal' },
  },
};
const V2 = {
  fields: { ...V1.fields, nickname: { type: 'string', classification: 'personal', searchable: true } },
};

describe('collection cache', () => {
  let rig: VaultRig;
  let now: Date;
  let collectionReads: number;
  let counted: { -readonly [K in keyof Store<TenantDB>]: Store<TenantDB>[K] };

  /** A vault as one server process builds it, over the rig's store and keyring. */
  function processVault(options: { collectionCacheMs?: number } = {}): Vault {
    return createVault({
      stores: async () => counted,
      keys: rig.keyring,
      readOutbox: createReadOutbox(rig.control),
      clock: () => now,
      ...options,
    });
  }

  beforeEach(async () => {
    rig = await vaultRig();
    now = new Date('2025-01-01T00:00:00.000Z');
    collectionReads = 0;
    const store = await rig.store(T);
    counted = {
      ...store,
      db: new Proxy(store.db, {
        get(target, property) {
          const value = Reflect.get(target, property, target) as unknown;
          if (property === 'selectFrom') {
            return (table: never) => {
              if (table === 'collections') collectionReads++;
              return (value as (t: never) => unknown).call(target, table);
            };
          }
          return typeof value === 'function' ? value.bind(target) : value;
        },
      }),
      write: (work) => store.write(work),
    };
  });
  afterEach(async () => {
    await rig.close();
  });

  it('reads the collection row once for repeated record requests, again after the TTL', async () => {
    const vault = processVault();
    await vault.putCollection(T, 'people', V1, caller());
    const a = await vault.createRecord(T, 'people', { email: 'a@example.com' }, caller());
    const before = collectionReads;
    await vault.readRecord(T, 'people', a.id, caller());
    await vault.createRecord(T, 'people', { email: 'b@example.com' }, caller());
    await vault.updateRecord(T, 'people', a.id, { name: 'A' }, 1, caller());
    await vault.listRecords(T, 'people', { where: { email: 'a@example.com' } }, caller());
    await vault.deleteRecord(T, 'people', a.id, 2, caller());
    assert.equal(collectionReads, before, 'no collection row read while cached');
    now = new Date(now.getTime() + 5_000);
    await vault.listRecords(T, 'people', {}, caller());
    assert.equal(collectionReads, before + 1, 'read again once the TTL has passed');
  });

  it('with a TTL of 0 reads the row on every request', async () => {
    const vault = processVault({ collectionCacheMs: 0 });
    await vault.putCollection(T, 'people', V1, caller());
    const a = await vault.createRecord(T, 'people', { email: 'a@example.com' }, caller());
    const before = collectionReads;
    await vault.readRecord(T, 'people', a.id, caller());
    await vault.readRecord(T, 'people', a.id, caller());
    assert.equal(collectionReads, before + 2);
  });

  it('sees a schema change made through the same vault at once', async () => {
    const vault = processVault();
    const other = processVault({ collectionCacheMs: 0 });
    await vault.putCollection(T, 'people', V1, caller());
    await vault.createRecord(T, 'people', { email: 'a@example.com' }, caller()); // caches V1
    await vault.putCollection(T, 'people', V2, caller());
    const b = await other.createRecord(T, 'people', { email: 'b@example.com', nickname: 'bee' }, caller());
    // A listing opens the fields its schema names: it shows nickname only under V2.
    const page = await vault.listRecords(T, 'people', {}, caller());
    assert.deepEqual(page.records.find((r) => r.id === b.id)?.data, {
      email: 'b@example.com',
      nickname: 'bee',
    });
    const c = await vault.createRecord(T, 'people', { email: 'c@example.com', nickname: 'sea' }, caller());
    assert.equal(c.data.nickname, 'sea');
  });

  it('does not keep a schema read while a change was committing', async () => {
    const vault = processVault();
    const other = processVault({ collectionCacheMs: 0 });
    await vault.putCollection(T, 'people', V1, caller());
    // The next read of the row returns only when released: it reads V1, then V2 commits.
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let wasRead: () => void = () => {};
    const read = new Promise<void>((resolve) => {
      wasRead = resolve;
    });
    const db = counted.db;
    const wrap = (b: object): object =>
      new Proxy(b, {
        get(t, p) {
          const v = Reflect.get(t, p, t) as unknown;
          if (typeof v !== 'function') return v;
          if (p === 'executeTakeFirst') {
            return async () => {
              const row = await (v as () => Promise<unknown>).call(t);
              wasRead();
              await released;
              return row;
            };
          }
          return (...args: unknown[]) => wrap((v as (...a: unknown[]) => object).apply(t, args));
        },
      });
    counted.db = new Proxy(db, {
      get(target, property) {
        if (property === 'selectFrom') return (table: 'collections') => wrap(target.selectFrom(table));
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const listing = vault.listRecords(T, 'people', {}, caller());
    await read;
    counted.db = db;
    await vault.putCollection(T, 'people', V2, caller());
    release();
    await listing;
    const b = await other.createRecord(T, 'people', { email: 'b@example.com', nickname: 'bee' }, caller());
    const page = await vault.listRecords(T, 'people', {}, caller());
    assert.deepEqual(page.records.find((r) => r.id === b.id)?.data, {
      email: 'b@example.com',
      nickname: 'bee',
    });
  });

  describe('a schema changed by another process', () => {
    it('never lets a write commit under the outdated schema, nor refuses it because of it', async () => {
      const mine = processVault();
      const other = processVault();
      await mine.putCollection(T, 'people', V1, caller());
      const a = await mine.createRecord(T, 'people', { email: 'a@example.com' }, caller()); // caches V1
      // Made required with a default elsewhere: every record gets the field, and new ones must have it.
      const V3 = {
        fields: {
          ...V1.fields,
          tier: { type: 'string', classification: 'internal', required: true, default: 'basic' },
        },
      };
      await other.putCollection(T, 'people', V3, caller());

      // Prepared under cached V1 the record would lack the new field; the transaction's version
      // check sends it back to be prepared under V3, which fills in the default.
      const b = await mine.createRecord(T, 'people', { email: 'b@example.com' }, caller());
      assert.deepEqual(b.data, { email: 'b@example.com', tier: 'basic' });
      assert.deepEqual((await other.readRecord(T, 'people', b.id, caller())).data, b.data);
      // Valid only under V3: accepted, not refused under cached V1.
      const c = await mine.createRecord(T, 'people', { email: 'c@example.com', tier: 'gold' }, caller());
      assert.equal(c.data.tier, 'gold');
      // An update keeps the field V1 does not know (no data loss through a stale schema).
      const updated = await mine.updateRecord(T, 'people', a.id, { name: 'A' }, 1, caller());
      assert.deepEqual(updated.data, { email: 'a@example.com', name: 'A', tier: 'basic' });
    });

    it('reads the fields added elsewhere, decrypted and authenticated as usual', async () => {
      const mine = processVault();
      const other = processVault();
      await mine.putCollection(T, 'people', V1, caller());
      await mine.createRecord(T, 'people', { email: 'x@example.com' }, caller()); // caches V1
      await other.putCollection(T, 'people', V2, caller());
      const b = await other.createRecord(T, 'people', { email: 'b@example.com', nickname: 'bee' }, caller());
      assert.deepEqual((await mine.readRecord(T, 'people', b.id, caller())).data, {
        email: 'b@example.com',
        nickname: 'bee',
      });
    });

    it('does not refuse a search on a field made searchable elsewhere', async () => {
      const mine = processVault();
      const other = processVault();
      await mine.putCollection(T, 'people', V1, caller());
      await mine.createRecord(T, 'people', { email: 'x@example.com' }, caller()); // caches V1
      await other.putCollection(T, 'people', V2, caller());
      const b = await other.createRecord(T, 'people', { email: 'b@example.com', nickname: 'bee' }, caller());
      // A search on the new searchable field is not refused under the cached schema.
      const found = await mine.listRecords(T, 'people', { where: { nickname: 'bee' } }, caller());
      assert.deepEqual(
        found.records.map((r) => r.id),
        [b.id],
      );
    });
  });
});
