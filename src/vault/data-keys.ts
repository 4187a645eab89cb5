/**
 * Data keys on the server side: which data key encrypts a tenant's next value, how many
 * encryptions it has done, and where unwrapped keys live (in memory only, bounded, wiped).
 *
 * NIST SP 800-38D §8.3: with random 96-bit nonces a key may perform at most 2^32 encryptions.
 * We rotate at 2^30 (a wide margin) and refuse at 0.9 × 2^32, which is only reachable when
 * rotation keeps failing (keyd down for a very long time).
 *
 * Counting survives crashes by reservation: before a key uses encryptions beyond what the store
 * has recorded, a block (2^16 by default) is reserved durably; after a restart the count resumes
 * from the reservation. A crash can only over-count, never under-count.
 *
 * keyd stays off the per-record path: keys come from the cache; a miss unwraps through keyd once
 * (concurrent misses share that call). If keyd is sealed or unreachable the KeydError
 * (TRESOR_ERR_KEYD_UNAVAILABLE / _SEALED) propagates: callers fail closed with 503.
 */
import { KeydError } from '../keyd/errors.ts';
import type { DataKeyPurpose, KeyService } from '../keyd/operations.ts';

export const ROTATE_AT_ENCRYPTIONS = 2 ** 30;
export const REFUSE_AT_ENCRYPTIONS = Math.floor(0.9 * 2 ** 32);
export const RESERVATION_BLOCK = 2 ** 16;

export interface DataKeyRecord {
  keyId: string;
  tenant: string;
  purpose: DataKeyPurpose;
  wrapped: Buffer;
  state: 'active' | 'decrypt-only';
  createdAt: string;
  /** Encryptions durably reserved for this key; the true count never exceeds it. */
  reserved: number;
}

/** Where wrapped data keys live: beside the data they protect (the tenant's store). */
export interface DataKeyStore {
  active(tenant: string, purpose: DataKeyPurpose): Promise<DataKeyRecord | undefined>;
  get(tenant: string, keyId: string): Promise<DataKeyRecord | undefined>;
  list(tenant: string): Promise<DataKeyRecord[]>;
  /** Adds a new active key; the previous active key of that tenant and purpose becomes decrypt-only, atomically. */
  insertActive(record: DataKeyRecord): Promise<void>;
  /** Durably raises a key's reservation (never lowers it). */
  reserve(keyId: string, reserved: number): Promise<void>;
  /** Replaces a key's wrapped form after a tenant-key rotation (same key, new wrapping). */
  replaceWrapped(keyId: string, wrapped: Buffer): Promise<void>;
}

/** The cache contract the keyring needs (see src/keyd/key-cache.ts). */
export interface UnwrappedKeyCache {
  getOrLoad(keyId: string, load: () => Promise<Buffer>): Promise<Buffer>;
  set(keyId: string, key: Buffer): void;
  delete(keyId: string): void;
}

export interface DataKeyLimits {
  rotateAt: number;
  refuseAt: number;
  reservationBlock: number;
}

export interface EncryptionKey {
  keyId: string;
  /** Borrowed from the cache for immediate use: do not keep it. */
  key: Buffer;
}

interface Counter {
  record: DataKeyRecord;
  used: number;
}

export interface DataKeyring {
  /** The key for `count` new encryptions; counts them (and rotates/reserves as needed) first. */
  encryptionKey(tenant: string, purpose: DataKeyPurpose, count?: number): Promise<EncryptionKey>;
  /** The key named in a ciphertext's header. */
  decryptionKey(tenant: string, purpose: DataKeyPurpose, keyId: string): Promise<Buffer>;
  /** Re-encryption job after a tenant-key rotation: re-wraps every data key of the tenant, no data rewrite. */
  rewrapAll(tenant: string): Promise<number>;
  /** Encryptions counted so far on the tenant's active key of that purpose (for tests and metrics). */
  usage(tenant: string, purpose: DataKeyPurpose): { keyId: string; used: number; reserved: number } | undefined;
}

export function createDataKeyring(deps: {
  keys: KeyService;
  store: DataKeyStore;
  cache: UnwrappedKeyCache;
  limits?: Partial<DataKeyLimits>;
}): DataKeyring {
  const { keys, store, cache } = deps;
  const limits: DataKeyLimits = {
    rotateAt: ROTATE_AT_ENCRYPTIONS,
    refuseAt: REFUSE_AT_ENCRYPTIONS,
    reservationBlock: RESERVATION_BLOCK,
    ...deps.limits,
  };
  const counters = new Map<string, Counter>();
  // One in-flight load, reservation or rotation per tenant and purpose.
  const pending = new Map<string, Promise<Counter>>();

  const slot = (tenant: string, purpose: DataKeyPurpose) => `${tenant}\u0000${purpose}`;

  async function rotate(tenant: string, purpose: DataKeyPurpose): Promise<Counter> {
    const generated = await keys.call('generateDataKey', { tenant, purpose });
    const record: DataKeyRecord = {
      keyId: generated.keyId,
      tenant,
      purpose,
      wrapped: generated.wrapped,
      state: 'active',
      createdAt: new Date().toISOString(),
      reserved: Math.min(limits.reservationBlock, limits.refuseAt),
    };
    await store.insertActive(record);
    cache.set(generated.keyId, generated.key);
    generated.key.fill(0);
    return { record, used: 0 };
  }

  async function load(tenant: string, purpose: DataKeyPurpose): Promise<Counter> {
    const record = await store.active(tenant, purpose);
    if (!record) return rotate(tenant, purpose);
    // After a restart we cannot know how much of the reservation was used: assume all of it.
    return { record, used: record.reserved };
  }

  /** Makes sure the counter can take `count` more encryptions: rotate or reserve as needed. */
  async function prepare(tenant: string, purpose: DataKeyPurpose, count: number): Promise<Counter> {
    let counter = counters.get(slot(tenant, purpose)) ?? (await load(tenant, purpose));
    if (counter.used + count > limits.rotateAt) {
      try {
        counter = await rotate(tenant, purpose);
      } catch (err) {
        // Keep using the old key while it is below the hard limit; past it, refuse.
        if (counter.used + count > limits.refuseAt) {
          throw new KeydError('TRESOR_ERR_KEY_EXHAUSTED', 'data key reached its encryption limit and rotation failed');
        }
        if (!(err instanceof KeydError)) throw err;
      }
    }
    if (counter.used + count > counter.record.reserved) {
      const reserved = Math.min(counter.used + count + limits.reservationBlock, limits.refuseAt);
      if (counter.used + count > reserved) {
        throw new KeydError('TRESOR_ERR_KEY_EXHAUSTED', 'data key reached its encryption limit');
      }
      await store.reserve(counter.record.keyId, reserved);
      counter = { record: { ...counter.record, reserved }, used: counter.used };
    }
    counters.set(slot(tenant, purpose), counter);
    return counter;
  }

  async function encryptionKey(tenant: string, purpose: DataKeyPurpose, count = 1): Promise<EncryptionKey> {
    if (!Number.isSafeInteger(count) || count < 1) throw new RangeError('count must be a positive integer');
    const id = slot(tenant, purpose);
    for (;;) {
      const inflight = pending.get(id);
      if (inflight) {
        await inflight.catch(() => undefined);
        continue;
      }
      const counter = counters.get(id);
      if (
        counter &&
        counter.used + count <= counter.record.reserved &&
        counter.used + count <= limits.rotateAt
      ) {
        counter.used += count; // synchronous: no await between the check and the count
        const key = await decryptionKey(tenant, purpose, counter.record.keyId);
        return { keyId: counter.record.keyId, key };
      }
      const p = prepare(tenant, purpose, count);
      pending.set(id, p);
      try {
        await p;
      } finally {
        pending.delete(id);
      }
    }
  }

  async function decryptionKey(tenant: string, purpose: DataKeyPurpose, keyId: string): Promise<Buffer> {
    return cache.getOrLoad(keyId, async () => {
      const record = await store.get(tenant, keyId);
      if (!record || record.purpose !== purpose) {
        throw new KeydError('TRESOR_ERR_KEY_ID_UNKNOWN', 'no data key with this id for this tenant');
      }
      const { key } = await keys.call('unwrapDataKey', { tenant, purpose, keyId, wrapped: record.wrapped });
      return key;
    });
  }

  async function rewrapAll(tenant: string): Promise<number> {
    let n = 0;
    for (const record of await store.list(tenant)) {
      const { wrapped } = await keys.call('rewrapDataKey', {
        tenant,
        purpose: record.purpose,
        keyId: record.keyId,
        wrapped: record.wrapped,
      });
      await store.replaceWrapped(record.keyId, wrapped);
      const counter = counters.get(slot(tenant, record.purpose));
      if (counter?.record.keyId === record.keyId) counter.record = { ...counter.record, wrapped };
      n++;
    }
    return n;
  }

  function usage(tenant: string, purpose: DataKeyPurpose) {
    const c = counters.get(slot(tenant, purpose));
    return c ? { keyId: c.record.keyId, used: c.used, reserved: c.record.reserved } : undefined;
  }

  return { encryptionKey, decryptionKey, rewrapAll, usage };
}
