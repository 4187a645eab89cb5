/**
 * DataKeyStore over the tenant stores (Kysely), so each tenant's wrapped data keys live in that
 * tenant's own store, beside the ciphertexts they open, and are destroyed with it.
 *
 * The keyring is one per process and serves every tenant, but `reserve` and `replaceWrapped` name
 * only a key id. The keyring always learns a key through `active`, `get`, `list` or `insertActive`
 * (all tenant-scoped) before it reserves or re-wraps it, so we remember key id → tenant from those
 * calls and route by it; an unknown key id there is a programming error, not a lookup across tenants.
 *
 * Every change goes through `write()`: a claimed block is durable before the keyring uses the count it
 * covers (src/vault/data-keys.ts), and group commit keeps it cheap.
 *
 * Several processes may share a tenant's store (nodes over one PostgreSQL, or SQLite handles on one
 * file), so every change that must happen once is a conditional update whose affected-row count (or
 * RETURNING row) decides: never a read followed by a write. Plain Kysely, for both backends.
 */
import type { Selectable } from 'kysely';
import type { Store } from '../store/types.ts';
import type { DataKeyClaim, DataKeyRecord, DataKeyStore } from './data-keys.ts';
import type { DataKeysTable, TenantDB } from './tenant-store-schema.ts';

function toRecord(row: Selectable<DataKeysTable>): DataKeyRecord {
  return {
    keyId: row.key_id,
    tenant: row.tenant,
    purpose: row.purpose as DataKeyRecord['purpose'],
    wrapped: Buffer.from(row.wrapped),
    state: row.state as DataKeyRecord['state'],
    createdAt: row.created_at,
    reserved: row.reserved,
  };
}

export function createTenantDataKeyStore(stores: (tenant: string) => Promise<Store<TenantDB>>): DataKeyStore {
  const tenantOfKey = new Map<string, string>();

  const learn = (records: DataKeyRecord[]): DataKeyRecord[] => {
    for (const r of records) tenantOfKey.set(r.keyId, r.tenant);
    return records;
  };

  async function storeOfKey(keyId: string): Promise<Store<TenantDB>> {
    const tenant = tenantOfKey.get(keyId);
    if (tenant === undefined) throw new Error(`data key ${keyId} was never loaded through a tenant`);
    return stores(tenant);
  }

  return {
    async active(tenant, purpose) {
      const store = await stores(tenant);
      const row = await store.db
        .selectFrom('data_keys')
        .selectAll()
        .where('tenant', '=', tenant)
        .where('purpose', '=', purpose)
        .where('state', '=', 'active')
        .executeTakeFirst();
      return row ? learn([toRecord(row)])[0] : undefined;
    },
    async get(tenant, keyId) {
      const store = await stores(tenant);
      const row = await store.db
        .selectFrom('data_keys')
        .selectAll()
        .where('tenant', '=', tenant)
        .where('key_id', '=', keyId)
        .executeTakeFirst();
      return row ? learn([toRecord(row)])[0] : undefined;
    },
    async list(tenant) {
      const store = await stores(tenant);
      const rows = await store.db
        .selectFrom('data_keys')
        .selectAll()
        .where('tenant', '=', tenant)
        .orderBy('created_at')
        .orderBy('key_id')
        .execute();
      return learn(rows.map(toRecord));
    },
    async insertActive(record, replacing) {
      const store = await stores(record.tenant);
      const inserted = await store.write(async (trx) => {
        if (replacing !== undefined) {
          const demoted = await trx
            .updateTable('data_keys')
            .set({ state: 'decrypt-only' })
            .where('key_id', '=', replacing)
            .where('tenant', '=', record.tenant)
            .where('purpose', '=', record.purpose)
            .where('state', '=', 'active')
            .executeTakeFirst();
          if (demoted.numUpdatedRows !== 1n) return false; // another process rotated first
        }
        // With the replaced key demoted, the unique index data_keys_one_active lets this insert in
        // only if no other process inserted an active key meanwhile (the first key of a purpose).
        const result = await trx
          .insertInto('data_keys')
          .values({
            key_id: record.keyId,
            tenant: record.tenant,
            purpose: record.purpose,
            wrapped: record.wrapped,
            state: 'active',
            created_at: record.createdAt,
            reserved: record.reserved,
          })
          .onConflict((oc) => oc.doNothing())
          .executeTakeFirst();
        if ((result.numInsertedOrUpdatedRows ?? 0n) === 1n) return true;
        // Unreachable after a demotion (one active key at most); throwing undoes it all the same.
        if (replacing !== undefined) throw new Error('another active data key appeared during rotation');
        return false;
      });
      if (inserted) learn([record]);
      return inserted;
    },
    async claim(keyId, size, atLeast, refuseAt) {
      const store = await storeOfKey(keyId);
      return store.write(async (trx): Promise<DataKeyClaim> => {
        const whole = await trx
          .updateTable('data_keys')
          .set((eb) => ({ reserved: eb('reserved', '+', size) }))
          .where('key_id', '=', keyId)
          .where('state', '=', 'active')
          .where((eb) => eb(eb('reserved', '+', size), '<=', refuseAt))
          .returning('reserved')
          .executeTakeFirst();
        if (whole) return { kind: 'claimed', start: whole.reserved - size, end: whole.reserved };
        // Less than a block is left (or the key is gone): claim exactly what is left, if enough, by
        // compare-and-set on the value just read; a concurrent claim makes it miss, and we look again.
        for (let attempt = 0; attempt < 8; attempt++) {
          const row = await trx
            .selectFrom('data_keys')
            .select(['reserved', 'state'])
            .where('key_id', '=', keyId)
            .executeTakeFirst();
          if (row?.state !== 'active') return { kind: 'inactive' };
          const left = refuseAt - row.reserved;
          if (left < atLeast) return { kind: 'exhausted' };
          const rest = await trx
            .updateTable('data_keys')
            .set({ reserved: refuseAt })
            .where('key_id', '=', keyId)
            .where('state', '=', 'active')
            .where('reserved', '=', row.reserved)
            .executeTakeFirst();
          if (rest.numUpdatedRows === 1n) return { kind: 'claimed', start: row.reserved, end: refuseAt };
        }
        // Other processes keep claiming: whatever is left is theirs.
        return { kind: 'exhausted' };
      });
    },
    async replaceWrapped(keyId, wrapped) {
      const store = await storeOfKey(keyId);
      await store.write(async (trx) => {
        await trx.updateTable('data_keys').set({ wrapped }).where('key_id', '=', keyId).execute();
      });
    },
  };
}
