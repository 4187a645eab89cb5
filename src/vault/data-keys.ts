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

/** The cache contract the keyring needs (src/keyd/key-cache.ts): keys are lent to `fn`, never handed out. */
export interface UnwrappedKeyCache {
  getOrLoad<T>(keyId: string, load: () => Promise<Buffer>, fn: (key: Buffer) => T): Promise<T>;
  set(keyId: string, key: Buffer): void;
  deletePrefix(prefix: string): number;
}

export interface DataKeyLimits {
  rotateAt: number;
  refuseAt: number;
  reservationBlock: number;
}

interface Counter {
  record: DataKeyRecord;
  used: number;
  /** After a failed rotation, the old key is used (below the hard limit) and rotation retried from this time (ms). */
  retryRotationAt: number;
}

/** How long to keep using an old key before retrying a failed rotation. */
const ROTATION_RETRY_MS = 1000;

export interface DataKeyring {
  /**
   * Lends the active key to `fn` for `count` new encryptions, counted (and rotated or reserved as
   * needed) before `fn` runs. `fn` must finish with the key synchronously and not keep it.
   */
  withEncryptionKey<T>(
    tenant: string,
    purpose: DataKeyPurpose,
    count: number,
    fn: (key: Buffer, keyId: string) => T,
  ): Promise<T>;
  /** Lends the key named in a ciphertext's header to `fn` (same rules). */
  withDecryptionKey<T>(
    tenant: string,
    purpose: DataKeyPurpose,
    keyId: string,
    fn: (key: Buffer) => T,
  ): Promise<T>;
  /**
   * Lends a key derived from a data key (a blind-index field key) to `fn`, same rules. The derived
   * key is cached beside its data key, under the same limits, and forgotten with the tenant: HKDF on
   * every record write and search was a twentieth of a write's CPU. `label` names the derivation
   * (unique per `derive`), `derive` must not keep or change the key it is given.
   */
  withDerivedKey<T>(
    tenant: string,
    purpose: DataKeyPurpose,
    keyId: string,
    label: string,
    derive: (key: Buffer) => Buffer,
    fn: (derived: Buffer) => T,
  ): Promise<T>;
  /** Re-encryption job after a tenant-key rotation: re-wraps every data key of the tenant, no data rewrite. */
  rewrapAll(tenant: string): Promise<number>;
  /** Encryptions counted so far on the tenant's active key of that purpose (for tests and metrics). */
  usage(
    tenant: string,
    purpose: DataKeyPurpose,
  ): { keyId: string; used: number; reserved: number } | undefined;
  /** Forgets every key of a tenant held in memory (cache and counters): call when it is closed. */
  forgetTenant(tenant: string): void;
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
  const pending = new Map<string, Promise<DataKeyRecord>>();

  const slot = (tenant: string, purpose: DataKeyPurpose) => `${tenant}\u0000${purpose}`;
  // The cache is shared by all tenants: a hit must never serve one tenant's key to another.
  const cacheKey = (tenant: string, purpose: DataKeyPurpose, keyId: string) =>
    `${tenant}\u0000${purpose}\u0000${keyId}`;

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
    try {
      await store.insertActive(record);
      cache.set(cacheKey(tenant, purpose, generated.keyId), generated.key);
    } finally {
      generated.key.fill(0);
    }
    return { record, used: 0, retryRotationAt: 0 };
  }

  async function load(tenant: string, purpose: DataKeyPurpose): Promise<Counter> {
    const record = await store.active(tenant, purpose);
    if (!record) return rotate(tenant, purpose);
    // After a restart we cannot know how much of the reservation was used: assume all of it.
    return { record, used: record.reserved, retryRotationAt: 0 };
  }

  /** Whether `count` more encryptions fit without touching the store or keyd. */
  function fits(counter: Counter, count: number): boolean {
    const next = counter.used + count;
    return (
      next <= counter.record.reserved && (next <= limits.rotateAt || Date.now() < counter.retryRotationAt)
    );
  }

  /**
   * The slow path, one at a time per tenant and purpose: load, rotate or reserve until `count`
   * encryptions fit, then take them for the caller before anyone else can.
   */
  async function takeSlow(tenant: string, purpose: DataKeyPurpose, count: number): Promise<DataKeyRecord> {
    let counter = counters.get(slot(tenant, purpose)) ?? (await load(tenant, purpose));
    const next = () => counter.used + count;
    if (next() > limits.rotateAt && Date.now() >= counter.retryRotationAt) {
      try {
        counter = await rotate(tenant, purpose);
      } catch (err) {
        // keyd unreachable or sealed: keep the old key while it stays below the hard limit.
        if (!(err instanceof KeydError)) throw err;
        counter.retryRotationAt = Date.now() + ROTATION_RETRY_MS;
      }
    }
    if (next() > limits.refuseAt) {
      throw new KeydError(
        'TRESOR_ERR_KEY_EXHAUSTED',
        'data key reached its encryption limit and rotation failed',
      );
    }
    if (next() > counter.record.reserved) {
      const reserved = Math.min(next() + limits.reservationBlock, limits.refuseAt);
      await store.reserve(counter.record.keyId, reserved);
      counter = { ...counter, record: { ...counter.record, reserved } };
    }
    counter.used += count;
    counters.set(slot(tenant, purpose), counter);
    return counter.record;
  }

  async function withEncryptionKey<T>(
    tenant: string,
    purpose: DataKeyPurpose,
    count: number,
    fn: (key: Buffer, keyId: string) => T,
  ): Promise<T> {
    if (!Number.isSafeInteger(count) || count < 1) throw new RangeError('count must be a positive integer');
    const id = slot(tenant, purpose);
    let record: DataKeyRecord | undefined;
    while (!record) {
      const inflight = pending.get(id);
      if (inflight) {
        await inflight.catch(() => undefined);
        continue;
      }
      const counter = counters.get(id);
      if (counter && fits(counter, count)) {
        counter.used += count; // no await between the check and the count
        record = counter.record;
        break;
      }
      const p = takeSlow(tenant, purpose, count);
      pending.set(id, p);
      try {
        record = await p;
      } finally {
        pending.delete(id);
      }
    }
    const keyId = record.keyId;
    return withDecryptionKey(tenant, purpose, keyId, (key) => fn(key, keyId));
  }

  async function withDecryptionKey<T>(
    tenant: string,
    purpose: DataKeyPurpose,
    keyId: string,
    fn: (key: Buffer) => T,
  ): Promise<T> {
    return cache.getOrLoad(
      cacheKey(tenant, purpose, keyId),
      async () => {
        const record = await store.get(tenant, keyId);
        if (!record || record.purpose !== purpose) {
          throw new KeydError('TRESOR_ERR_KEY_ID_UNKNOWN', 'no data key with this id for this tenant');
        }
        const { key } = await keys.call('unwrapDataKey', { tenant, purpose, keyId, wrapped: record.wrapped });
        return key;
      },
      fn,
    );
  }

  async function withDerivedKey<T>(
    tenant: string,
    purpose: DataKeyPurpose,
    keyId: string,
    label: string,
    derive: (key: Buffer) => Buffer,
    fn: (derived: Buffer) => T,
  ): Promise<T> {
    return cache.getOrLoad(
      `${cacheKey(tenant, purpose, keyId)}\u0000derived\u0000${label}`,
      () => withDecryptionKey(tenant, purpose, keyId, derive),
      fn,
    );
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

  function forgetTenant(tenant: string): void {
    cache.deletePrefix(`${tenant}\u0000`);
    for (const key of counters.keys()) if (key.startsWith(`${tenant}\u0000`)) counters.delete(key);
  }

  return { withEncryptionKey, withDecryptionKey, withDerivedKey, rewrapAll, usage, forgetTenant };
}
