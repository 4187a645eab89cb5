/**
 * Unwrapped tenant keys by key id: keyd is the key service, so it may hold them. Bounded, wiped on
 * every removal, and emptied when keyd seals.
 */
import { KEY_BYTES, wipe } from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import type { RootKeyring } from './root/types.ts';
import { rowError, TENANT_KEY_AAD, tenantKeyAad } from './root-wrapping.ts';
import type { TenantKeyRecord } from './store.ts';

const MAX_CACHED_TENANT_KEYS = 10_000;

export class TenantKeyCache {
  readonly #keys = new Map<string, Buffer>();
  readonly #keyring: () => RootKeyring;

  constructor(keyring: () => RootKeyring) {
    this.#keyring = keyring;
  }

  /** Calls `use` with the unwrapped tenant key, synchronously: the key is never held across an await. */
  with<T>(row: TenantKeyRecord, use: (key: Buffer) => T): T {
    let key = this.#keys.get(row.keyId);
    if (!key) {
      const where = `tenant_keys row (tenant ${row.tenant}, version ${row.version})`;
      if (!row.wrapped) throw new KeydError('TRESOR_ERR_KEY_VERSION_RETIRED');
      try {
        key = this.#keyring().unwrap(row.wrapped, TENANT_KEY_AAD, tenantKeyAad(row));
      } catch (err) {
        throw rowError(where, err);
      }
      if (key.length !== KEY_BYTES) {
        wipe(key);
        throw new KeydError('TRESOR_ERR_STORE_CORRUPT', `${where} does not hold a 32-byte key`);
      }
      this.add(row.keyId, key);
    }
    return use(key);
  }

  add(keyId: string, key: Buffer): void {
    this.forget(keyId);
    if (this.#keys.size >= MAX_CACHED_TENANT_KEYS) {
      const oldest = this.#keys.keys().next().value;
      if (oldest !== undefined) this.forget(oldest);
    }
    this.#keys.set(keyId, key);
  }

  forget(keyId: string): void {
    const key = this.#keys.get(keyId);
    if (key) wipe(key);
    this.#keys.delete(keyId);
  }

  clear(): void {
    for (const keyId of [...this.#keys.keys()]) this.forget(keyId);
  }
}
