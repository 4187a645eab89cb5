/**
 * The unwrapped-key cache: bounded by size, age and uses, and it zeroes every key it lets go.
 * Tests keep a reference to the cache's own Buffer (what get() lends) to see the wipe happen.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, mock, test } from 'node:test';
import { createKeyCache, type KeyCacheOptions } from '../../src/keyd/key-cache.ts';

function manualClock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

function cacheWith(options: Partial<KeyCacheOptions> = {}) {
  const clock = manualClock();
  const cache = createKeyCache({
    maxEntries: 10,
    ttlMs: 60_000,
    maxUses: 1000,
    clock: clock.now,
    sweepIntervalMs: 0,
    jitter: 0,
    ...options,
  });
  return { cache, clock };
}

function isZero(buffer: Buffer): boolean {
  return buffer.every((byte) => byte === 0);
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('key cache', () => {
  test('keeps a private copy: the caller may wipe its own key after set', () => {
    const { cache } = cacheWith();
    const key = randomBytes(32);
    const expected = Buffer.from(key);
    cache.set('dk_a', key);
    key.fill(0);
    assert.deepEqual(cache.get('dk_a'), expected);
  });

  test('expires a key ttlMs after it was cached, and wipes it', () => {
    const { cache, clock } = cacheWith({ ttlMs: 1000 });
    cache.set('dk_a', randomBytes(32));
    const lent = cache.get('dk_a') as Buffer;
    clock.advance(999);
    assert.ok(cache.get('dk_a'));
    clock.advance(1);
    assert.equal(cache.get('dk_a'), undefined);
    assert.ok(isZero(lent));
    assert.deepEqual(cache.stats(), { hits: 2, misses: 1, evictions: 0, expirations: 1, size: 0 });
  });

  test('spreads the expiry of keys cached together over the last `jitter` of the TTL, never past it', () => {
    // 100 keys cached at one instant (a restart, a burst over many tenants), the random fraction
    // of each running evenly over [0, 1): their lifetimes run evenly from 800 to 1000 ms.
    let k = 0;
    const { cache, clock } = cacheWith({
      ttlMs: 1000,
      maxEntries: 1000,
      jitter: 0.2,
      random: () => k++ / 100,
    });
    for (let i = 0; i < 100; i++) cache.set(`dk_${i}`, randomBytes(32));
    const alive = () =>
      Array.from({ length: 100 }, (_, i) => cache.use(`dk_${i}`, () => true)).filter(Boolean).length;
    clock.advance(800);
    assert.equal(alive(), 100, 'none expires before ttl × (1 − jitter)');
    clock.advance(100);
    const half = alive();
    assert.ok(half > 0 && half < 100, `some but not all expired half-way (${half} alive)`);
    clock.advance(100);
    assert.equal(alive(), 0, 'every key is gone at ttlMs');
    assert.throws(() => createKeyCache({ maxEntries: 1, ttlMs: 1, maxUses: 1, jitter: 0.6 }), RangeError);
  });

  test('sweeps expired keys on an unref’d timer, so idle keys leave memory too', () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const clock = manualClock();
      const cache = createKeyCache({ maxEntries: 10, ttlMs: 1000, maxUses: 10, clock: clock.now, jitter: 0 });
      cache.set('dk_a', randomBytes(32));
      const lent = cache.get('dk_a') as Buffer;
      clock.advance(1000);
      mock.timers.tick(1000);
      assert.equal(cache.stats().size, 0);
      assert.ok(isZero(lent));
      cache.close();
    } finally {
      mock.timers.reset();
    }
  });

  test('serves a key maxUses times, then wipes it and misses', () => {
    const { cache } = cacheWith({ maxUses: 3 });
    cache.set('dk_a', randomBytes(32));
    let lent: Buffer | undefined;
    assert.equal(
      cache.use('dk_a', (key) => {
        lent = key;
        return key.length;
      }),
      32,
    );
    assert.equal(
      cache.use('dk_a', (key) => key.length),
      32,
    );
    assert.equal(
      cache.use('dk_a', (key) => isZero(key)),
      false,
      'the last use still sees the key',
    );
    assert.ok(lent && isZero(lent), 'wiped as soon as the last use returned');
    assert.equal(
      cache.use('dk_a', () => 'hit'),
      undefined,
    );
    assert.equal(cache.stats().expirations, 1);
  });

  test('lets the last get() use its key synchronously, and wipes it right after', async () => {
    const { cache } = cacheWith({ maxUses: 1 });
    const original = randomBytes(32);
    cache.set('dk_a', original);
    const lent = cache.get('dk_a') as Buffer;
    assert.deepEqual(lent, original);
    assert.equal(cache.get('dk_a'), undefined, 'used up');
    await Promise.resolve();
    assert.ok(isZero(lent));
  });

  test('evicts the least recently used key past maxEntries, and wipes it', () => {
    const { cache } = cacheWith({ maxEntries: 2 });
    cache.set('dk_a', randomBytes(32));
    cache.set('dk_b', randomBytes(32));
    const b = cache.get('dk_b') as Buffer;
    cache.get('dk_a'); // a is now more recent than b
    cache.set('dk_c', randomBytes(32));
    assert.ok(isZero(b));
    assert.equal(cache.get('dk_b'), undefined);
    assert.ok(cache.get('dk_a'));
    assert.ok(cache.get('dk_c'));
    assert.equal(cache.stats().evictions, 1);
    assert.equal(cache.stats().size, 2);
  });

  test('wipes the key it replaces when a key id is set again', () => {
    const { cache } = cacheWith();
    cache.set('dk_a', randomBytes(32));
    const old = cache.get('dk_a') as Buffer;
    const fresh = randomBytes(32);
    cache.set('dk_a', fresh);
    assert.ok(isZero(old));
    assert.deepEqual(cache.get('dk_a'), fresh);
  });

  test('wipes on delete, clear and close', () => {
    const { cache } = cacheWith();
    for (const id of ['dk_a', 'dk_b', 'dk_c']) cache.set(id, randomBytes(32));
    const [a, b, c] = ['dk_a', 'dk_b', 'dk_c'].map((id) => cache.get(id) as Buffer) as [
      Buffer,
      Buffer,
      Buffer,
    ];
    assert.equal(cache.delete('dk_a'), true);
    assert.equal(cache.delete('dk_a'), false);
    assert.ok(isZero(a));
    assert.ok(!isZero(b));
    cache.clear();
    assert.ok(isZero(b) && isZero(c));
    assert.equal(cache.stats().size, 0);
    cache.set('dk_d', randomBytes(32));
    const d = cache.get('dk_d') as Buffer;
    cache.close();
    assert.ok(isZero(d));
  });

  test('coalesces concurrent misses for one key into a single load', async () => {
    const { cache } = cacheWith();
    const load = deferred<Buffer>();
    let loads = 0;
    const loader = () => {
      loads += 1;
      return load.promise;
    };
    const waiters = Array.from({ length: 10 }, () =>
      cache.getOrLoad('dk_a', loader, (key) => key.toString('hex')),
    );
    const loaded = randomBytes(32);
    const expected = loaded.toString('hex');
    load.resolve(loaded);
    assert.deepEqual(await Promise.all(waiters), Array(10).fill(expected));
    assert.equal(loads, 1);
    assert.ok(isZero(loaded), "the loader's Buffer is wiped once cached");
    assert.equal(await cache.getOrLoad('dk_a', loader, (key) => key.toString('hex')), expected);
    assert.equal(loads, 1, 'a hit does not load');
    assert.deepEqual(cache.stats(), { hits: 1, misses: 10, evictions: 0, expirations: 0, size: 1 });
  });

  test('hands a load failure to every waiter and loads afresh next time', async () => {
    const { cache } = cacheWith();
    const load = deferred<Buffer>();
    const waiters = [1, 2, 3].map(() =>
      cache.getOrLoad(
        'dk_a',
        () => load.promise,
        (key) => key.length,
      ),
    );
    load.reject(new Error('keyd unavailable'));
    for (const waiter of waiters) await assert.rejects(waiter, /keyd unavailable/);
    assert.equal(
      await cache.getOrLoad(
        'dk_a',
        async () => randomBytes(32),
        (key) => key.length,
      ),
      32,
    );
  });

  test('loads again when concurrent readers use a key up (the use limit holds)', async () => {
    const { cache } = cacheWith({ maxUses: 1 });
    let loads = 0;
    const loader = async () => {
      loads += 1;
      return randomBytes(32);
    };
    const results = await Promise.all(
      [1, 2, 3].map(() => cache.getOrLoad('dk_a', loader, (key) => key.length)),
    );
    assert.deepEqual(results, [32, 32, 32]);
    assert.equal(loads, 3);
  });

  test('refuses bounds that would make it unbounded', () => {
    assert.throws(() => createKeyCache({ maxEntries: 0, ttlMs: 1, maxUses: 1 }), RangeError);
    assert.throws(() => createKeyCache({ maxEntries: 1, ttlMs: 0, maxUses: 1 }), RangeError);
    assert.throws(
      () => createKeyCache({ maxEntries: 1, ttlMs: 1, maxUses: Number.POSITIVE_INFINITY }),
      RangeError,
    );
  });
});
