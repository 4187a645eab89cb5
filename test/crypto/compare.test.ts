import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  constantTimeEqual,
  ownCopy,
  ownsItsMemory,
  secretCopy,
  secretFromText,
  wipe,
} from '../../src/crypto/index.ts';

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

describe('secrets in memory of their own (the rule in src/crypto/index.ts)', () => {
  test('ownsItsMemory tells a pool slice or a view from a Buffer of its own', () => {
    assert.equal(ownsItsMemory(Buffer.from('a short string')), false, 'Buffer.from(string) is a pool slice');
    assert.equal(ownsItsMemory(Buffer.concat([Buffer.alloc(16), Buffer.alloc(16)])), false, 'so is concat');
    assert.equal(ownsItsMemory(Buffer.alloc(32).subarray(1)), false, 'a view');
    assert.equal(ownsItsMemory(Buffer.alloc(32)), true);
  });

  test('secretFromText decodes hex, base64, base64url and UTF-8 into memory of its own', () => {
    const bytes = Buffer.alloc(32, 0xa5);
    for (const encoding of ['hex', 'base64', 'base64url', 'utf8'] as const) {
      const text = encoding === 'utf8' ? 'pässword' : bytes.toString(encoding);
      const decoded = secretFromText(text, encoding);
      assert.ok(ownsItsMemory(decoded), encoding);
      assert.deepEqual(decoded, Buffer.from(text, encoding), encoding);
    }
    const lenient = secretFromText('abc', 'hex'); // odd length: Node stops at the last whole byte
    assert.ok(ownsItsMemory(lenient));
    assert.deepEqual(lenient, Buffer.from('abc', 'hex'));
  });

  test('ownCopy moves a pool slice into memory of its own and wipes the slice', () => {
    const slice = Buffer.from('key material here', 'utf8');
    const moved = ownCopy(slice);
    assert.ok(ownsItsMemory(moved));
    assert.equal(moved.toString(), 'key material here');
    assert.ok(
      slice.every((byte) => byte === 0),
      'the pool slice is wiped',
    );
    const own = Buffer.alloc(8, 1);
    assert.equal(ownCopy(own), own, 'a Buffer that owns its memory is kept as it is');
  });

  test('secretCopy copies into memory of its own and leaves the source to its owner', () => {
    const source = Buffer.alloc(32, 9);
    const copy = secretCopy(source);
    assert.ok(ownsItsMemory(copy));
    assert.notEqual(copy.buffer, source.buffer);
    wipe(copy);
    assert.ok(source.every((byte) => byte === 9));
  });
});
