/**
 * DataKeyStore over the tenant stores (Kysely), so each tenant's wrapped data keys live in that
 * tenant's own store, beside the ciphertexts they open, and are destroyed with it.
 *
 * The keyring is one per process and serves every tenant, but `reserve` and `replaceWrapped` name
 * only a key id. The keyring always learns a key through `active`, `get`, `list` or `insertActive`
 * (all tenant-scoped) before it reserves or re-wraps it, so we remember key id → tenant from those
 * calls and route by it; an unknown key id there is a programming error, not a lookup across tenants.
 *
 * Every change goes through `write()`: a reservation is durable before the keyring uses the count it
 * covers (src/vault/data-keys.ts), and group commit keeps it cheap.
 */
import type { Selectable } from 'kysely';
import type { Store } from '../store/types.ts';
import type { DataKeyRecord, DataKeyStore } from './data-keys.ts';
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
    async insertActive(record) {
      const store = await stores(record.tenant);
      await store.write(async (trx) => {
        await trx
          .updateTable('data_keys')
          .set({ state: 'decrypt-only' })
          .where('tenant', '=', record.tenant)
          .where('purpose', '=', record.purpose)
          .where('state', '=', 'active')
          .execute();
        await trx
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
          .execute();
      });
      learn([record]);
    },
    async reserve(keyId, reserved) {
      const store = await storeOfKey(keyId);
      await store.write(async (trx) => {
        // Never lowers a reservation (a crash may only over-count).
        await trx
          .updateTable('data_keys')
          .set({ reserved })
          .where('key_id', '=', keyId)
          .where('reserved', '<', reserved)
          .execute();
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
