import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { constantTimeEqual, wipe } from '../../src/crypto/index.ts';

describe('constantTimeEqual', () => {
  test('reports equal buffers as equal', () => {
    assert.equal(constantTimeEqual(Buffer.from('secret-mac'), Buffer.from('secret-mac')), true);
    assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true);
  });

  test('reports buffers that differ in the first or the last byte as unequal', () => {
    assert.equal(constantTimeEqual(Buffer.from('secret-mac'), Buffer.from('Secret-mac')), false);
    assert.equal(constantTimeEqual(Buffer.from('secret-mac'), Buffer.from('secret-maC')), false);
  });

  test('reports buffers of different lengths as unequal without throwing', () => {
    assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abcd')), false);
    assert.equal(constantTimeEqual(Buffer.from('abcd'), Buffer.from('abc')), false);
    assert.equal(constantTimeEqual(Buffer.alloc(0), Buffer.from('a')), false);
  });
});

describe('wipe', () => {
  test('zeroes every buffer it is given and skips undefined', () => {
    const a = Buffer.from('key material');
    const b = new Uint8Array([1, 2, 3, 255]);
    wipe(a, undefined, b);
    assert.ok(a.every((byte) => byte === 0));
    assert.ok(b.every((byte) => byte === 0));
  });

  test('zeroes only the view it is given', () => {
    const whole = Buffer.from([1, 2, 3, 4, 5, 6]);
    wipe(whole.subarray(2, 4));
    assert.deepEqual([...whole], [1, 2, 0, 0, 5, 6]);
  });
});
