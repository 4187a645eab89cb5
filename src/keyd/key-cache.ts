/**
 * The API server's cache of unwrapped data keys, so keyd is asked once per key and not once per
 * record. Unwrapped keys are the most sensitive thing the server holds, so the cache is bounded
 * every way it can be (NIST SP 800-57 Part 1 §5.3 — limit how long and how much a key is exposed):
 *   - maxEntries, least recently used out first;
 *   - ttlMs after the key was cached (an unref'd timer sweeps, so idle keys leave memory too),
 *     shortened by a random fraction up to `jitter` per key: keys cached together (a restart, a
 *     burst over many tenants) then expire spread over the last part of the TTL instead of all at
 *     once, so the server does not go back to keyd for thousands of keys in one wave;
 *   - maxUses reads, after which the next read goes back to keyd.
 * The cache keeps its own copy of each key and zeroes it on every removal: expiry, use limit,
 * eviction, delete, clear, overwrite and close.
 *
 * Lending, not giving: get() and use() hand out the cached Buffer itself, valid only for
 * synchronous use right away — never keep it, never use it after an `await` (it may be wiped by
 * then). Prefer use(keyId, fn) / getOrLoad(keyId, loader, fn), which bound the loan to fn. A key
 * reaching its use limit through get() is wiped in a microtask, i.e. after the caller's current
 * synchronous code.
 */
import { wipe } from '../crypto/index.ts';
import { KeydError } from './errors.ts';

export interface KeyCacheOptions {
  maxEntries: number;
  ttlMs: number;
  /** Fraction of ttlMs (0 … 0.5) by which each key's lifetime is randomly shortened; default 0.2. */
  jitter?: number;
  /** Random numbers in [0, 1) for the jitter; tests inject one. Default Math.random (not a secret). */
  random?: () => number;
  /** Reads (get, use, getOrLoad) a cached key serves before it must be loaded again. */
  maxUses: number;
  /** Milliseconds, monotonic enough for TTLs; tests inject one. Default Date.now. */
  clock?: () => number;
  /** Sweep period for expired keys (default min(ttlMs, 60 s)); 0 turns the timer off (tests with an injected clock). */
  sweepIntervalMs?: number;
}

export interface KeyCacheStats {
  hits: number;
  misses: number;
  /** Entries pushed out by maxEntries. */
  evictions: number;
  /** Entries removed by ttlMs or maxUses. */
  expirations: number;
  size: number;
}

export interface KeyCache {
  /** The cached key (lent: synchronous use only), or undefined. Counts as one use. */
  get(keyId: string): Buffer | undefined;
  /** Runs fn with the cached key and returns its result, or undefined on a miss. fn must finish with the key synchronously. */
  use<T>(keyId: string, fn: (key: Buffer) => T): T | undefined;
  /** Caches a private copy of key (the caller still owns, and wipes, its own). */
  set(keyId: string, key: Buffer): void;
  /**
   * use() on a hit; on a miss, loads the key (concurrent misses for one keyId share one loader
   * call), caches it, wipes the loader's Buffer, and runs fn. Loader errors reach every waiter.
   */
  getOrLoad<T>(keyId: string, loader: () => Promise<Buffer>, fn: (key: Buffer) => T): Promise<T>;
  delete(keyId: string): boolean;
  /** Removes (and wipes) every key whose id starts with `prefix`, e.g. all of a closed tenant's keys. */
  deletePrefix(prefix: string): number;
  clear(): void;
  stats(): KeyCacheStats;
  /** Clears and stops the sweep timer. */
  close(): void;
}

interface Entry {
  key: Buffer;
  expiresAt: number;
  usesLeft: number;
}

/**
 * Loads one getOrLoad call may wait for. Each load serves at least one waiter, so only a tiny
 * maxUses under heavy contention for one key gets near this; past it the caller gets an error
 * rather than waiting without end.
 */
const MAX_LOAD_ROUNDS = 8;

const DEFAULT_JITTER = 0.2;

export function createKeyCache(options: KeyCacheOptions): KeyCache {
  const { maxEntries, ttlMs, maxUses } = options;
  if (!Number.isInteger(maxEntries) || maxEntries < 1)
    throw new RangeError('maxEntries must be a positive integer');
  if (!(ttlMs > 0)) throw new RangeError('ttlMs must be positive');
  if (!Number.isInteger(maxUses) || maxUses < 1) throw new RangeError('maxUses must be a positive integer');
  const clock = options.clock ?? Date.now;
  const jitter = options.jitter ?? DEFAULT_JITTER;
  if (!(jitter >= 0 && jitter <= 0.5)) throw new RangeError('jitter must be between 0 and 0.5');
  const random = options.random ?? Math.random;
  /** A new key's lifetime: ttlMs less up to `jitter` of it. */
  const lifetime = () => ttlMs * (1 - jitter * random());

  // A Map iterates in insertion order: re-inserting on each read keeps the least recent first.
  const entries = new Map<string, Entry>();
  const loading = new Map<string, Promise<void>>();
  const counters = { hits: 0, misses: 0, evictions: 0, expirations: 0 };

  const sweepEvery = options.sweepIntervalMs ?? Math.min(ttlMs, 60_000);
  const sweeper = sweepEvery > 0 ? setInterval(sweep, sweepEvery) : undefined;
  sweeper?.unref();

  function remove(keyId: string, entry: Entry): void {
    entries.delete(keyId);
    wipe(entry.key);
  }

  function sweep(): void {
    const now = clock();
    for (const [keyId, entry] of entries) {
      if (now >= entry.expiresAt) {
        remove(keyId, entry);
        counters.expirations += 1;
      }
    }
  }

  /**
   * A live entry, moved to most recently used and charged one use; undefined on a miss. An entry
   * charged its last use leaves the map at once; its caller wipes the key after lending it.
   */
  function take(keyId: string, count: boolean): Entry | undefined {
    const entry = entries.get(keyId);
    if (entry !== undefined && clock() >= entry.expiresAt) {
      remove(keyId, entry);
      counters.expirations += 1;
    } else if (entry !== undefined) {
      if (count) counters.hits += 1;
      entry.usesLeft -= 1;
      entries.delete(keyId);
      if (entry.usesLeft > 0) entries.set(keyId, entry);
      else counters.expirations += 1;
      return entry;
    }
    if (count) counters.misses += 1;
    return undefined;
  }

  /** fn's result wrapped (so a hit returning undefined is still a hit), or undefined on a miss. */
  function lend<T>(keyId: string, fn: (key: Buffer) => T, count: boolean): { value: T } | undefined {
    const entry = take(keyId, count);
    if (entry === undefined) return undefined;
    try {
      return { value: fn(entry.key) };
    } finally {
      if (entry.usesLeft <= 0) wipe(entry.key);
    }
  }

  function set(keyId: string, key: Buffer): void {
    const previous = entries.get(keyId);
    if (previous !== undefined) remove(keyId, previous);
    const copy = Buffer.alloc(key.length); // not from the shared pool: this memory is ours to wipe
    key.copy(copy);
    entries.set(keyId, { key: copy, expiresAt: clock() + lifetime(), usesLeft: maxUses });
    while (entries.size > maxEntries) {
      const [oldestId, oldest] = entries.entries().next().value as [string, Entry];
      remove(oldestId, oldest);
      counters.evictions += 1;
    }
  }

  function load(keyId: string, loader: () => Promise<Buffer>): Promise<void> {
    let flight = loading.get(keyId);
    if (flight === undefined) {
      flight = (async () => {
        const key = await loader();
        try {
          set(keyId, key);
        } finally {
          wipe(key);
        }
      })().finally(() => loading.delete(keyId));
      loading.set(keyId, flight);
    }
    return flight;
  }

  return {
    get(keyId) {
      const entry = take(keyId, true);
      if (entry !== undefined && entry.usesLeft <= 0) queueMicrotask(() => wipe(entry.key));
      return entry?.key;
    },

    use: (keyId, fn) => lend(keyId, fn, true)?.value,
    set,

    async getOrLoad(keyId, loader, fn) {
      // Hits and misses count once per call: the read after a load is part of the same miss.
      let hit = lend(keyId, fn, true);
      for (let round = 0; hit === undefined && round < MAX_LOAD_ROUNDS; round++) {
        await load(keyId, loader);
        hit = lend(keyId, fn, false);
      }
      if (hit === undefined) {
        throw new KeydError(
          'TRESOR_ERR_INTERNAL',
          'key cache: other readers used up the key before this one could',
        );
      }
      return hit.value;
    },

    delete(keyId) {
      const entry = entries.get(keyId);
      if (entry === undefined) return false;
      remove(keyId, entry);
      return true;
    },

    deletePrefix(prefix) {
      let n = 0;
      for (const [keyId, entry] of entries) {
        if (keyId.startsWith(prefix)) {
          remove(keyId, entry);
          n++;
        }
      }
      return n;
    },

    clear() {
      for (const [keyId, entry] of entries) remove(keyId, entry);
    },

    stats: () => ({ ...counters, size: entries.size }),

    close() {
      if (sweeper !== undefined) clearInterval(sweeper);
      for (const [keyId, entry] of entries) remove(keyId, entry);
    },
  };
}
