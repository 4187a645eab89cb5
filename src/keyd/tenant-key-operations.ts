/** The tenant key lifecycle operations: create, status, rotate, retire a decrypt-only version. */
import { KeydError } from './errors.ts';
import type { OpHandlers } from './op-record.ts';
import type { KeyStore, TenantRecord } from './store.ts';
import type { TenantKeys } from './tenant-keys.ts';

export interface TenantKeyOperationDeps {
  store: Pick<KeyStore, 'getTenant' | 'createTenant' | 'retireTenantKeyVersion'>;
  tenantKeys: TenantKeys;
  clock: () => Date;
}

export function tenantKeyOperations({
  store,
  tenantKeys,
  clock,
}: TenantKeyOperationDeps): Pick<
  OpHandlers,
  'createTenantKey' | 'tenantKeyStatus' | 'rotateTenantKey' | 'retireTenantKeyVersion'
> {
  return {
    createTenantKey: ({ tenant }, rec) =>
      tenantKeys.locked(tenant, async () => {
        const existing = await store.getTenant(tenant);
        if (existing?.tenant.state === 'destroyed') throw new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED');
        if (existing) throw new KeydError('TRESOR_ERR_TENANT_KEY_EXISTS');
        const now = clock();
        const createdAt = now.toISOString();
        const tenantRecord: TenantRecord = {
          id: tenant,
          state: 'active',
          createdAt,
          destroyAfter: null,
          destroyedAt: null,
        };
        const row = await tenantKeys
          .newVersion(tenant, 1, now, (r) => {
            rec.keyId = r.keyId;
            return store.createTenant(
              tenantRecord,
              r,
              rec.draft('ok', `version 1 under root v${r.rootVersion}`),
            );
          })
          .catch(async (err: unknown) => {
            // Another keyd instance on the shared store created it meanwhile: it exists, as above.
            if (await store.getTenant(tenant)) throw new KeydError('TRESOR_ERR_TENANT_KEY_EXISTS');
            throw err;
          });
        rec.committed();
        return tenantKeys.info(row);
      }),

    tenantKeyStatus: async ({ tenant }) => {
      const view = await store.getTenant(tenant);
      if (!view) throw new KeydError('TRESOR_ERR_TENANT_KEY_UNKNOWN');
      return tenantKeys.status(view.tenant, view.keys);
    },

    rotateTenantKey: ({ tenant }, rec) =>
      tenantKeys.locked(tenant, async () => {
        const view = await tenantKeys.usable(tenant);
        return tenantKeys.rotate(tenant, view.keys, rec, 'requested');
      }),

    retireTenantKeyVersion: ({ tenant, version }, rec) =>
      tenantKeys.locked(tenant, async () => {
        const view = await tenantKeys.usable(tenant);
        const row = view.keys.find((k) => k.version === version);
        if (!row) throw new KeydError('TRESOR_ERR_KEY_ID_UNKNOWN', `tenant has no key version ${version}`);
        rec.keyId = row.keyId;
        if (row.state === 'active') throw new KeydError('TRESOR_ERR_KEY_VERSION_ACTIVE');
        if (row.state !== 'decrypt-only') throw new KeydError('TRESOR_ERR_KEY_VERSION_RETIRED');
        await store.retireTenantKeyVersion(tenant, version, rec.draft('ok', `version ${version} erased`));
        rec.committed();
        tenantKeys.forget(row.keyId);
        return tenantKeys.info({ ...row, state: 'retired', rootVersion: null, wrapped: null });
      }),
  };
}
