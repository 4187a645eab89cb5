import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pooledRandomBytes } from '../../src/crypto/index.ts';

describe('pooledRandomBytes', () => {
  test('never hands out the same bytes twice, across refills of the pool', () => {
    const seen = new Set<string>();
    // 20,000 nonces of 12 bytes span about fifteen refills of the 16 KiB pool.
    for (let i = 0; i < 20_000; i++) {
      const nonce = pooledRandomBytes(12);
      assert.equal(nonce.length, 12);
      const hex = nonce.toString('hex');
      assert.ok(!seen.has(hex), 'a nonce came out twice');
      seen.add(hex);
    }
  });

  test('gives each caller its own copy: a kept draw does not change when the pool is refilled', () => {
    const kept = pooledRandomBytes(16);
    const copy = Buffer.from(kept);
    for (let i = 0; i < 2_000; i++) pooledRandomBytes(16);
    assert.deepEqual(kept, copy);
    kept.fill(0); // the caller's to change: the next draws are not zeros
    assert.notDeepEqual(pooledRandomBytes(16), Buffer.alloc(16));
  });

  test('serves large and empty draws, and refuses nonsense lengths', () => {
    assert.equal(pooledRandomBytes(0).length, 0);
    assert.equal(pooledRandomBytes(4096).length, 4096);
    for (const n of [-1, 1.5, Number.NaN]) assert.throws(() => pooledRandomBytes(n), RangeError);
  });
});
