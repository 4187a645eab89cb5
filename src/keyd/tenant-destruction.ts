/**
 * Tenant key destruction, now or after a grace period (cancellable until it completes).
 * Destruction is crypto-shredding: every wrapped version is zeroed and erased and the WAL
 * checkpointed, so nothing wrapped by the tenant key can be opened again.
 */
import { KeydError } from './errors.ts';
import type { OpHandlers, OpRecord } from './op-record.ts';
import type { DestroyResult } from './operations.ts';
import type { KeyStore } from './store.ts';
import { addSeconds, type TenantKeys } from './tenant-keys.ts';

export interface TenantDestructionDeps {
  store: Pick<KeyStore, 'getTenant' | 'destroyTenant' | 'scheduleTenantDestroy' | 'cancelTenantDestroy'>;
  tenantKeys: TenantKeys;
  clock: () => Date;
  destroyGraceSeconds: number;
}

export class TenantDestruction {
  readonly #store: TenantDestructionDeps['store'];
  readonly #tenantKeys: TenantKeys;
  readonly #clock: () => Date;
  readonly #destroyGraceSeconds: number;

  constructor(deps: TenantDestructionDeps) {
    this.#store = deps.store;
    this.#tenantKeys = deps.tenantKeys;
    this.#clock = deps.clock;
    this.#destroyGraceSeconds = deps.destroyGraceSeconds;
  }

  /** Crypto-shreds every version of the tenant's key; caller holds the tenant lock. */
  async shred(tenant: string, rec: OpRecord, why: string): Promise<DestroyResult> {
    const destroyedAt = this.#clock().toISOString();
    const keyIdsDestroyed = await this.#store.destroyTenant(
      tenant,
      destroyedAt,
      rec.draft('ok', `crypto-shredded every tenant key version; ${why}`),
    );
    rec.committed();
    for (const keyId of keyIdsDestroyed) this.#tenantKeys.forget(keyId);
    const view = await this.#store.getTenant(tenant);
    return {
      tenant,
      state: 'destroyed',
      destroyAfter: view?.tenant.destroyAfter ?? null,
      destroyedAt,
      keyIdsDestroyed,
    };
  }

  operations(): Pick<OpHandlers, 'destroyTenantKey' | 'cancelTenantKeyDestroy'> {
    const store = this.#store;
    const tenantKeys = this.#tenantKeys;
    return {
      destroyTenantKey: ({ tenant, mode, graceSeconds }, rec) =>
        tenantKeys.locked(tenant, async () => {
          const view = await store.getTenant(tenant);
          if (!view) throw new KeydError('TRESOR_ERR_TENANT_KEY_UNKNOWN');
          if (view.tenant.state === 'destroyed') throw new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED');
          if (mode === 'now') return this.shred(tenant, rec, 'requested');
          if (view.tenant.state === 'pending-destroy')
            throw new KeydError('TRESOR_ERR_TENANT_KEY_PENDING_DESTROY');
          const grace = graceSeconds ?? this.#destroyGraceSeconds;
          const destroyAfter = addSeconds(this.#clock(), grace);
          await store.scheduleTenantDestroy(
            tenant,
            destroyAfter,
            rec.draft('ok', `destroy after ${destroyAfter}`),
          );
          rec.committed();
          return { tenant, state: 'pending-destroy', destroyAfter, destroyedAt: null, keyIdsDestroyed: [] };
        }),

      cancelTenantKeyDestroy: ({ tenant }, rec) =>
        tenantKeys.locked(tenant, async () => {
          const view = await store.getTenant(tenant);
          if (!view) throw new KeydError('TRESOR_ERR_TENANT_KEY_UNKNOWN');
          if (view.tenant.state === 'destroyed') throw new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED');
          if (view.tenant.state === 'active') {
            rec.detail = 'was not scheduled for destruction';
            return tenantKeys.status(view.tenant, view.keys);
          }
          await store.cancelTenantDestroy(tenant, rec.draft('ok', 'destruction cancelled'));
          rec.committed();
          return tenantKeys.status({ ...view.tenant, state: 'active', destroyAfter: null }, view.keys);
        }),
    };
  }
}
