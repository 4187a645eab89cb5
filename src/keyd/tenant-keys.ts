/**
 * Tenant keys: one per tenant, versioned, each version stored wrapped by a root version (store.ts).
 * The active version wraps new data keys; rotation makes a new active version and leaves the
 * previous one decrypt-only. Tenant operations run under the shared root lock, then one at a time
 * per tenant (locks.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { KEY_BYTES, readEnvelopeHeader, wipe } from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import { KeyedMutex, type RootLock } from './locks.ts';
import type { OpRecord } from './op-record.ts';
import type { TenantKeyInfo, TenantKeyStatus } from './operations.ts';
import type { RootKeyring } from './root/types.ts';
import { rootVersionOf, TENANT_KEY_AAD, tenantKeyAad } from './root-wrapping.ts';
import type { KeyStore, TenantKeyRecord, TenantRecord } from './store.ts';
import { TenantKeyCache } from './tenant-key-cache.ts';

/**
 * Key ids are ≤ 64 characters (src/crypto/key-id.ts) and tenant ids may be 64 alone, so a tenant key
 * id names its tenant by the first 64 bits of SHA-256(tenant id): `tk.<16 hex>.v<version>`.
 */
export function tenantKeyId(tenant: string, version: number): string {
  const hash = createHash('sha256').update(tenant, 'utf8').digest('hex').slice(0, 16);
  return `tk.${hash}.v${version}`;
}

export function addSeconds(date: Date, seconds: number): string {
  return new Date(date.getTime() + seconds * 1000).toISOString();
}

export interface TenantKeysDeps {
  store: Pick<KeyStore, 'getTenant' | 'addTenantKeyVersion'>;
  keyring: () => RootKeyring;
  rootLock: RootLock;
  clock: () => Date;
  /** Tenant key cryptoperiod (NIST SP 800-57 Part 1 §5.3). */
  cryptoperiodDays: number;
}

export class TenantKeys {
  readonly #store: TenantKeysDeps['store'];
  readonly #keyring: () => RootKeyring;
  readonly #rootLock: RootLock;
  readonly #clock: () => Date;
  readonly #cryptoperiodDays: number;
  readonly #locks = new KeyedMutex();
  readonly #cache: TenantKeyCache;
  /** Encryptions per tenant key id, including those whose entries are still being committed. */
  readonly #counts = new Map<string, number>();

  constructor(deps: TenantKeysDeps) {
    this.#store = deps.store;
    this.#keyring = deps.keyring;
    this.#rootLock = deps.rootLock;
    this.#clock = deps.clock;
    this.#cryptoperiodDays = deps.cryptoperiodDays;
    this.#cache = new TenantKeyCache(deps.keyring);
  }

  /** A tenant operation: shared root lock, then that tenant's mutex. */
  locked<T>(tenant: string, fn: () => Promise<T>): Promise<T> {
    return this.#rootLock.shared(() => this.#locks.run(tenant, fn));
  }

  async usable(tenant: string): Promise<{ tenant: TenantRecord; keys: TenantKeyRecord[] }> {
    const view = await this.#store.getTenant(tenant);
    if (!view) throw new KeydError('TRESOR_ERR_TENANT_KEY_UNKNOWN');
    if (view.tenant.state === 'destroyed') {
      // Destroyed by another keyd instance on a shared store: wipe what this one still holds.
      for (const k of view.keys) this.forget(k.keyId);
      throw new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED');
    }
    if (view.tenant.state === 'pending-destroy') {
      throw new KeydError(
        'TRESOR_ERR_TENANT_KEY_PENDING_DESTROY',
        `tenant key is scheduled for destruction after ${view.tenant.destroyAfter}`,
      );
    }
    return view;
  }

  /** The tenant key version named in a wrapped data key's header, if it can still unwrap. */
  async wrappingVersion(tenant: string, wrapped: Buffer): Promise<TenantKeyRecord> {
    let headerKeyId: string;
    try {
      headerKeyId = readEnvelopeHeader(wrapped).keyId;
    } catch {
      throw new KeydError('TRESOR_ERR_WRAPPED_KEY_INVALID', 'wrapped: not a wrapped data key');
    }
    const view = await this.usable(tenant);
    const row = view.keys.find((k) => k.keyId === headerKeyId);
    if (!row) {
      throw new KeydError(
        'TRESOR_ERR_WRAPPED_KEY_INVALID',
        'wrapped key was not made by a key of this tenant',
      );
    }
    if (row.state === 'retired') {
      this.forget(row.keyId);
      throw new KeydError(
        'TRESOR_ERR_KEY_VERSION_RETIRED',
        `tenant key version ${row.version} has been retired`,
      );
    }
    return row;
  }

  /**
   * Data keys the version has wrapped: this process's count (with entries still being committed)
   * or the store's, whichever is more (other keyd instances on a shared store count there).
   */
  encryptions(row: TenantKeyRecord): number {
    return Math.max(this.#counts.get(row.keyId) ?? 0, row.encryptions);
  }

  setEncryptions(keyId: string, n: number): void {
    this.#counts.set(keyId, n);
  }

  /** Makes, wraps and stores a new tenant key version; caches the key once stored. */
  async newVersion(
    tenant: string,
    version: number,
    now: Date,
    persist: (row: TenantKeyRecord) => Promise<void>,
  ): Promise<TenantKeyRecord> {
    const keyring = this.#keyring();
    const keyId = tenantKeyId(tenant, version);
    const key = randomBytes(KEY_BYTES);
    try {
      const wrapped = keyring.wrap(key, TENANT_KEY_AAD, tenantKeyAad({ tenant, version, keyId }));
      const row: TenantKeyRecord = {
        tenant,
        version,
        keyId,
        state: 'active',
        rootVersion: rootVersionOf(wrapped),
        wrapped,
        createdAt: now.toISOString(),
        rotateAfter: addSeconds(now, this.#cryptoperiodDays * 86400),
        encryptions: 0,
        reserved: 0,
      };
      await persist(row);
      this.#counts.set(keyId, 0);
      this.#cache.add(keyId, key);
      return row;
    } catch (err) {
      wipe(key);
      throw err;
    }
  }

  /** Makes the next version active and the previous one decrypt-only; caller holds the tenant lock. */
  async rotate(tenant: string, keys: TenantKeyRecord[], rec: OpRecord, why: string): Promise<TenantKeyInfo> {
    const previous = keys.find((k) => k.state === 'active');
    const version = Math.max(0, ...keys.map((k) => k.version)) + 1;
    const row = await this.newVersion(tenant, version, this.#clock(), (r) => {
      rec.keyId = r.keyId;
      return this.#store.addTenantKeyVersion(
        r,
        rec.draft(
          'ok',
          `version ${version} active, ${previous ? `v${previous.version} decrypt-only` : 'first'}; ${why}`,
        ),
      );
    });
    rec.committed();
    if (previous) this.forget(previous.keyId);
    return this.info(row);
  }

  /** Calls `use` with the unwrapped tenant key, synchronously: the key is never held across an await. */
  withKey<T>(row: TenantKeyRecord, use: (key: Buffer) => T): T {
    return this.#cache.with(row, use);
  }

  /** Wipes the version's unwrapped key from memory. */
  forget(keyId: string): void {
    this.#cache.forget(keyId);
  }

  /** Wipes every unwrapped tenant key from memory (seal, close). */
  clear(): void {
    this.#cache.clear();
  }

  info(row: TenantKeyRecord): TenantKeyInfo {
    return {
      tenant: row.tenant,
      keyId: row.keyId,
      version: row.version,
      state: row.state,
      rootVersion: row.rootVersion,
      createdAt: row.createdAt,
      rotateAfter: row.rotateAfter,
      encryptions: this.encryptions(row),
    };
  }

  status(tenant: TenantRecord, keys: TenantKeyRecord[]): TenantKeyStatus {
    return {
      tenant: tenant.id,
      state: tenant.state,
      destroyAfter: tenant.destroyAfter,
      destroyedAt: tenant.destroyedAt,
      versions: keys.map((k) => this.info(k)),
    };
  }
}
