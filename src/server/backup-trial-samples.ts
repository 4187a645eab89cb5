/**
 * The trial restore's sample decryption (backup-trial.ts): the oldest records of each restored
 * tenant store opened through keyd exactly as the vault opens them (src/vault/field-crypto.ts
 * openRecord): their data keys unwrapped by the tenant keys keyd holds now, every field's AEAD tag
 * checked. Each value is dropped as soon as it decrypted; only counts and error codes come back.
 */
import { createKeyCache } from '../keyd/key-cache.ts';
import type { KeyService } from '../keyd/operations.ts';
import type { Store } from '../store/types.ts';
import { collectionFromRow } from '../vault/collection-row.ts';
import { createTenantDataKeyStore } from '../vault/data-key-store.ts';
import { createDataKeyring } from '../vault/data-keys.ts';
import { openRecord } from '../vault/field-crypto.ts';
import { DEFAULT_LIMITS } from '../vault/schema.ts';
import type { TenantDB } from '../vault/tenant-store-schema.ts';
import type { CryptoContext } from '../vault/vault-context.ts';

export interface TrialTenantSample {
  tenant: string;
  /** Records opened and checked. */
  decrypted: number;
  /** The catalogue code of the first failure, when one failed. */
  error?: string;
}

/** Opens up to `perTenant` records of each store through keyd; its own key cache, closed after. */
export async function sampleRecords(
  keys: KeyService,
  tenantStores: ReadonlyMap<string, Store<TenantDB>>,
  perTenant: number,
  now: () => Date,
): Promise<TrialTenantSample[]> {
  const cache = createKeyCache({ maxEntries: 256, ttlMs: 60_000, maxUses: 100_000 });
  try {
    const stores = async (tenant: string): Promise<Store<TenantDB>> => {
      const store = tenantStores.get(tenant);
      if (!store) throw new Error(`no restored store for tenant ${tenant}`);
      return store;
    };
    const ctx: CryptoContext = {
      stores,
      keys: createDataKeyring({ keys, store: createTenantDataKeyStore(stores), cache }),
      clock: now,
      limits: DEFAULT_LIMITS,
    };
    const samples: TrialTenantSample[] = [];
    for (const [tenant, store] of tenantStores)
      samples.push(await sampleTenant(ctx, tenant, store, perTenant));
    return samples;
  } finally {
    cache.close();
  }
}

/** The oldest records of the tenant, opened and dropped; the first failure's code is kept. */
async function sampleTenant(
  ctx: CryptoContext,
  tenant: string,
  store: Store<TenantDB>,
  limit: number,
): Promise<TrialTenantSample> {
  const sample: TrialTenantSample = { tenant, decrypted: 0 };
  const collections = new Map(
    (await store.db.selectFrom('collections').selectAll().execute()).map((row) => [
      row.name,
      collectionFromRow(row),
    ]),
  );
  const records = await store.db
    .selectFrom('records')
    .select(['id', 'collection', 'version', 'fields'])
    .orderBy('seq')
    .limit(limit)
    .execute();
  for (const record of records) {
    const collection = collections.get(record.collection);
    try {
      if (!collection) throw Object.assign(new Error('no collection'), { code: 'TRESOR_ERR_NOT_FOUND' });
      await openRecord(ctx, tenant, collection, record.id, record.version, record.fields);
      sample.decrypted += 1;
    } catch (err) {
      sample.error = (err as { code?: string }).code ?? 'error';
      break;
    }
  }
  return sample;
}
