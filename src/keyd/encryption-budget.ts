/**
 * AES-GCM with random nonces allows 2^32 encryptions per key (NIST SP 800-38D §8.3). Each tenant
 * key version counts the data keys it wraps: at rotateAt keyd rotates it; at refuseAt it refuses.
 *
 * The budget is claimed from the store in blocks (KeyStore.claimEncryptions: a compare-and-set on
 * the version's `reserved` column that never takes it past refuseAt, and only while the version is
 * active), and each encryption is taken from this process's block. So keyd instances sharing one
 * store (PostgreSQL, several keyd) together never wrap more than refuseAt keys under a version:
 * every encryption lies in a block exactly one instance claimed. A block is claimed before its
 * first key is returned, so a crash loses only the unused rest of a block (spent, never reused);
 * a clean stop gives the unused rest back if no block was claimed after it. The count of keys
 * actually wrapped (`encryptions`) is still made durable additively with each ops-log batch.
 */
import { KeydError } from './errors.ts';
import type { OpRecord, OpRecorder } from './op-record.ts';
import type { KeyStore, TenantKeyRecord } from './store.ts';
import type { TenantKeys } from './tenant-keys.ts';

/** Encryptions one claim takes at most (fewer as refuseAt nears: store.ts claimSize). */
export const ENCRYPTION_BLOCK = 1024;

export interface EncryptionBudgetDeps {
  store: Pick<KeyStore, 'claimEncryptions' | 'returnEncryptions'>;
  tenantKeys: TenantKeys;
  recorder: OpRecorder;
  rotateAt: number;
  refuseAt: number;
}

interface Block {
  tenant: string;
  version: number;
  next: number;
  end: number;
}

export class EncryptionBudget {
  readonly #store: EncryptionBudgetDeps['store'];
  readonly #tenantKeys: TenantKeys;
  readonly #recorder: OpRecorder;
  readonly #rotateAt: number;
  readonly #refuseAt: number;
  /** This process's unused block per tenant key id. */
  readonly #blocks = new Map<string, Block>();

  constructor(deps: EncryptionBudgetDeps) {
    this.#store = deps.store;
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
      let block = this.#blocks.get(row.keyId);
      if (block !== undefined && block.next >= block.end) {
        this.#blocks.delete(row.keyId);
        block = undefined;
      }
      // Where this version stands: this block's next encryption, else what every instance claimed.
      const used = block?.next ?? Math.max(row.reserved, row.encryptions);
      if (used >= this.#rotateAt && (await this.#autoRotate(tenant, view.keys, used))) continue;
      if (block === undefined) {
        const claimed = await this.#store.claimEncryptions(
          tenant,
          row.version,
          ENCRYPTION_BLOCK,
          this.#refuseAt,
        );
        if (claimed === undefined) {
          const again = await this.#tenantKeys.usable(tenant);
          const still = again.keys.find((k) => k.keyId === row.keyId && k.state === 'active');
          // Another instance rotated it meanwhile: go again with the new active version.
          if (still === undefined) continue;
          throw new KeydError(
            'TRESOR_ERR_KEY_EXHAUSTED',
            `tenant key ${row.keyId} has wrapped ${Math.max(still.reserved, used)} keys (limit ${this.#refuseAt}, NIST SP 800-38D §8.3): rotate it`,
          );
        }
        block = { tenant, version: row.version, next: claimed.from, end: claimed.to };
        this.#blocks.set(row.keyId, block);
      }
      block.next += 1;
      this.#tenantKeys.setEncryptions(row.keyId, this.#tenantKeys.encryptions(row) + 1);
      rec.encryptions = { tenant, version: row.version, count: 1 };
      return row;
    }
  }

  /** Gives back the unused rest of every block (clean stop); a block claimed after one keeps it spent. */
  async close(): Promise<void> {
    const blocks = [...this.#blocks.values()];
    this.#blocks.clear();
    for (const b of blocks) {
      if (b.next >= b.end) continue;
      try {
        await this.#store.returnEncryptions(b.tenant, b.version, b.next, b.end);
      } catch {
        // Spent, not lost: the limit still holds.
      }
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
