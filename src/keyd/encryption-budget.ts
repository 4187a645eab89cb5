/**
 * AES-GCM with random nonces allows 2^32 encryptions per key (NIST SP 800-38D §8.3). Each tenant
 * key version counts the data keys it wraps: at rotateAt keyd rotates it; at refuseAt it refuses.
 *
 * The count is kept in this process and made durable additively (`encryptions = encryptions + n`)
 * with each ops-log batch. That is sound because one keyd process owns a store: the store holds
 * SQLite's write lock exclusively while keyd runs, and a second keyd on the same folder is refused
 * (test/keyd/encryption-budget.test.ts). keyd instances sharing one store (PostgreSQL) must instead
 * claim blocks with a conditional update whose row count decides, as the server's data keys do
 * (src/vault/data-keys.ts).
 */
import { KeydError } from './errors.ts';
import type { OpRecord, OpRecorder } from './op-record.ts';
import type { TenantKeyRecord } from './store.ts';
import type { TenantKeys } from './tenant-keys.ts';

export interface EncryptionBudgetDeps {
  tenantKeys: TenantKeys;
  recorder: OpRecorder;
  rotateAt: number;
  refuseAt: number;
}

export class EncryptionBudget {
  readonly #tenantKeys: TenantKeys;
  readonly #recorder: OpRecorder;
  readonly #rotateAt: number;
  readonly #refuseAt: number;

  constructor(deps: EncryptionBudgetDeps) {
    this.#tenantKeys = deps.tenantKeys;
    this.#recorder = deps.recorder;
    this.#rotateAt = deps.rotateAt;
    this.#refuseAt = deps.refuseAt;
  }

  /**
   * Counts one encryption on the tenant's active version and returns it (NIST SP 800-38D §8.3):
   * rotates first when the version reached rotateAt; refuses at refuseAt. Caller holds the tenant lock.
   */
  async reserve(tenant: string, rec: OpRecord): Promise<TenantKeyRecord> {
    for (;;) {
      const view = await this.#tenantKeys.usable(tenant);
      const row = view.keys.find((k) => k.state === 'active');
      if (!row) throw new KeydError('TRESOR_ERR_STORE_CORRUPT', 'tenant has no active key version');
      const used = this.#tenantKeys.encryptions(row);
      if (used >= this.#rotateAt && (await this.#autoRotate(tenant, view.keys, used))) continue;
      if (used >= this.#refuseAt) {
        throw new KeydError(
          'TRESOR_ERR_KEY_EXHAUSTED',
          `tenant key ${row.keyId} has wrapped ${used} keys (limit ${this.#refuseAt}, NIST SP 800-38D §8.3): rotate it`,
        );
      }
      this.#tenantKeys.setEncryptions(row.keyId, used + 1);
      rec.encryptions = { tenant, version: row.version, count: 1 };
      return row;
    }
  }

  async #autoRotate(tenant: string, keys: TenantKeyRecord[], used: number): Promise<boolean> {
    const rec = this.#recorder.system('rotateTenantKey', tenant);
    try {
      await this.#recorder.execute(rec, () =>
        this.#tenantKeys.rotate(tenant, keys, rec, `automatic: ${used} encryptions (NIST SP 800-38D §8.3)`),
      );
      return true;
    } catch {
      return false; // logged; the version keeps serving until refuseAt
    }
  }
}
