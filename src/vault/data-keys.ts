/**
 * Data keys on the server side: which data key encrypts a tenant's next value, how many
 * encryptions it has done, and where unwrapped keys live (in memory only, bounded, wiped).
 *
 * NIST SP 800-38D §8.3: with random 96-bit nonces a key may perform at most 2^32 encryptions.
 * We rotate at 2^30 (a wide margin) and refuse at 0.9 × 2^32, which is only reachable when
 * rotation keeps failing (keyd down for a very long time).
 *
 * Counting holds across processes by claiming blocks (each node, each keyring over one store):
 * before a keyring encrypts, it claims a block of the key's budget with one conditional update,
 * `reserved = reserved + block WHERE key_id = ? AND state = 'active' AND reserved + block <= refuseAt`,
 * and uses only the range it claimed, its own [start, end). The store's `reserved` is therefore the
 * sum of every block ever claimed: the encryptions of all processes together never exceed it, and it
 * never exceeds refuseAt. A crash or a restart loses the unused rest of a block (over-counting, never
 * under-counting).
 *
 * A key another process rotated out (state no longer 'active') can still be used by a process for
 * the rest of the block it claimed before, and not one encryption more: its next claim fails and it
 * loads the new active key. So the bound after a rotation elsewhere is one block per process; blocks
 * are small by default (RESERVATION_BLOCK, 2^12) so that bound stays small, at one durable write per
 * 4,096 encryptions (group-committed with other writes).
 *
 * keyd stays off the per-record path: keys come from the cache; a miss unwraps through keyd once
 * (concurrent misses share that call). If keyd is sealed or unreachable the KeydError
 * (TRESOR_ERR_KEYD_UNAVAILABLE / _SEALED) propagates: callers fail closed with 503.
 */
import { KeydError } from '../keyd/errors.ts';
import type { DataKeyPurpose, KeyService } from '../keyd/operations.ts';

export const ROTATE_AT_ENCRYPTIONS = 2 ** 30;
export const REFUSE_AT_ENCRYPTIONS = Math.floor(0.9 * 2 ** 32);
/** Encryptions claimed at once; also what a process may still do under a key rotated elsewhere. */
export const RESERVATION_BLOCK = 2 ** 12;

export interface DataKeyRecord {
  keyId: string;
  tenant: string;
  purpose: DataKeyPurpose;
  wrapped: Buffer;
  state: 'active' | 'decrypt-only';
  createdAt: string;
  /** Encryptions claimed of this key by every process together; the true count never exceeds it. */
  reserved: number;
}

/** A block of a key's budget claimed by one process: it alone may use encryptions [start, end). */
export type DataKeyClaim =
  | { kind: 'claimed'; start: number; end: number }
  /** The key is no longer active (rotated elsewhere) or no longer exists. */
  | { kind: 'inactive' }
  /** Fewer than the needed encryptions are left below refuseAt. */
  | { kind: 'exhausted' };

/** Where wrapped data keys live: beside the data they protect (the tenant's store). */
export interface DataKeyStore {
  active(tenant: string, purpose: DataKeyPurpose): Promise<DataKeyRecord | undefined>;
  get(tenant: string, keyId: string): Promise<DataKeyRecord | undefined>;
  list(tenant: string): Promise<DataKeyRecord[]>;
  /**
   * Adds a new active key and makes `replacing` (the active key the caller saw, if any)
   * decrypt-only, atomically — only if `replacing` is still the active key (none active when it is
   * undefined). False, with nothing changed, when another process rotated first.
   */
  insertActive(record: DataKeyRecord, replacing: string | undefined): Promise<boolean>;
  /**
   * Claims `size` encryptions of an active key (or what is left below `refuseAt`, if at least
   * `atLeast`), durably, by a conditional update whose result decides: never a read-then-write.
   */
  claim(keyId: string, size: number, atLeast: number, refuseAt: number): Promise<DataKeyClaim>;
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
  /** The next encryption of this key's budget this process may use, within its block [next, end). */
  next: number;
  end: number;
  /** Encryptions this process did under the key, and the sum of the blocks it claimed of it. */
  used: number;
  claimed: number;
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
  /**
   * This process's use of the tenant's current key of that purpose (for tests and metrics): the
   * encryptions it did, the sum of the blocks it claimed, and the block it is using, [next, end).
   */
  usage(tenant: string, purpose: DataKeyPurpose): DataKeyUsage | undefined;
  /** Forgets every key of a tenant held in memory (cache and counters): call when it is closed. */
  forgetTenant(tenant: string): void;
  /**
   * The tenants whose keys this process may hold in memory (used since last forgotten; a key that
   * expired from the cache meanwhile may leave its tenant listed): what closed-tenant-keys.ts checks.
   */
  heldTenants(): string[];
}

export interface DataKeyUsage {
  keyId: string;
  used: number;
  claimed: number;
  next: number;
  end: number;
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
  /** Tenants with keys in the cache or the counters, maybe (see heldTenants). */
  const held = new Set<string>();
  // One in-flight load, reservation or rotation per tenant and purpose.
  const pending = new Map<string, Promise<DataKeyRecord>>();

  const slot = (tenant: string, purpose: DataKeyPurpose) => `${tenant}\u0000${purpose}`;
  // The cache is shared by all tenants: a hit must never serve one tenant's key to another.
  const cacheKey = (tenant: string, purpose: DataKeyPurpose, keyId: string) =>
    `${tenant}\u0000${purpose}\u0000${keyId}`;

  /**
   * Makes a new active key, replacing `previous` (the key this process saw active, if any). The
   * creator owns the first block. If another process rotated first, its key is loaded instead.
   */
  async function rotate(
    tenant: string,
    purpose: DataKeyPurpose,
    previous: string | undefined,
    count: number,
  ): Promise<Counter> {
    const generated = await keys.call('generateDataKey', { tenant, purpose });
    const first = Math.min(Math.max(limits.reservationBlock, count), limits.refuseAt);
    const record: DataKeyRecord = {
      keyId: generated.keyId,
      tenant,
      purpose,
      wrapped: generated.wrapped,
      state: 'active',
      createdAt: new Date().toISOString(),
      reserved: first,
    };
    try {
      if (!(await store.insertActive(record, previous))) return load(tenant, purpose, count);
      cache.set(cacheKey(tenant, purpose, generated.keyId), generated.key);
    } finally {
      generated.key.fill(0);
    }
    return { record, next: 0, end: first, used: 0, claimed: first, retryRotationAt: 0 };
  }

  /** The store's active key, with no block claimed yet (a block is claimed before any use). */
  async function load(tenant: string, purpose: DataKeyPurpose, count: number): Promise<Counter> {
    const record = await store.active(tenant, purpose);
    if (!record) return rotate(tenant, purpose, undefined, count);
    return { record, next: 0, end: 0, used: 0, claimed: 0, retryRotationAt: 0 };
  }

  function dueForRotation(counter: Counter, count: number): boolean {
    return counter.next + count > limits.rotateAt && Date.now() >= counter.retryRotationAt;
  }

  /** Whether `count` more encryptions fit in this process's block, without the store or keyd. */
  function fits(counter: Counter, count: number): boolean {
    return counter.next + count <= counter.end && !dueForRotation(counter, count);
  }

  function take(counter: Counter, count: number): DataKeyRecord {
    counter.next += count;
    counter.used += count;
    return counter.record;
  }

  /**
   * The slow path, one at a time per tenant and purpose in this process: load, rotate or claim a
   * block until `count` encryptions fit, then take them for the caller before anyone else can.
   */
  async function takeSlow(tenant: string, purpose: DataKeyPurpose, count: number): Promise<DataKeyRecord> {
    const id = slot(tenant, purpose);
    let counter = counters.get(id) ?? (await load(tenant, purpose, count));
    counters.set(id, counter);
    // Each turn either returns, or moves to another key (rotated here or elsewhere): bounded by the
    // keys that can appear meanwhile, so a few turns at most. This call rotates at most once.
    let rotated = false;
    for (;;) {
      if (!rotated && dueForRotation(counter, count)) {
        rotated = true;
        try {
          counter = await rotate(tenant, purpose, counter.record.keyId, count);
          counters.set(id, counter);
        } catch (err) {
          // keyd unreachable or sealed: keep the old key while it stays below the hard limit.
          if (!(err instanceof KeydError)) throw err;
          counter.retryRotationAt = Date.now() + ROTATION_RETRY_MS;
        }
      }
      if (counter.next + count <= counter.end) return take(counter, count);
      const size = Math.max(limits.reservationBlock, count);
      const claim = await store.claim(counter.record.keyId, size, count, limits.refuseAt);
      if (claim.kind === 'claimed') {
        // The rest of the previous block is given up: over-counting, never under-counting.
        counter.next = claim.start;
        counter.end = claim.end;
        counter.claimed += claim.end - claim.start;
        counter.record = { ...counter.record, reserved: claim.end };
        return take(counter, count);
      }
      if (claim.kind === 'exhausted') {
        throw new KeydError(
          'TRESOR_ERR_KEY_EXHAUSTED',
          'data key reached its encryption limit and rotation failed',
        );
      }
      // Rotated out by another process: use the key that is active now.
      counter = await load(tenant, purpose, count);
      counters.set(id, counter);
    }
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
        record = take(counter, count); // no await between the check and the count
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
    held.add(tenant);
    return cache.getOrLoad(
      cacheKey(tenant, purpose, keyId),
      async () => {
        const record = await store.get(tenant, keyId);
        if (!record || record.purpose !== purpose) {
          throw new KeydError('TRESOR_ERR_KEY_ID_UNKNOWN', 'no data key with this id for this tenant');
        }
        const { key } = await keys.call('unwrapDataKey', { tenant, purpose, keyId, wrapped: record.wrapped });
        // Again once the key is here: a forgetTenant() during the unwrap must not hide it from the checks.
        held.add(tenant);
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
    return c
      ? { keyId: c.record.keyId, used: c.used, claimed: c.claimed, next: c.next, end: c.end }
      : undefined;
  }

  function forgetTenant(tenant: string): void {
    held.delete(tenant);
    cache.deletePrefix(`${tenant}\u0000`);
    for (const key of counters.keys()) if (key.startsWith(`${tenant}\u0000`)) counters.delete(key);
  }

  return {
    withEncryptionKey,
    withDecryptionKey,
    withDerivedKey,
    rewrapAll,
    usage,
    forgetTenant,
    heldTenants: () => [...held],
  };
}
