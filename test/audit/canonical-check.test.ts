/**
 * The leaf check over UTF-8 bytes, as the verifier runs it on what SQLite holds: it accepts exactly
 * the UTF-8 of RFC 8785 canonical JSON objects — byte edits included, so ill-formed UTF-8 (RFC 3629
 * §4) is refused even where a decoder would have let it pass as U+FFFD — and reads the own index.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { scanCanonicalLeaf, scannedIndexIs, scannedIndexText } from '../../src/audit/canonical-check.ts';

const object = fc.dictionary(fc.string({ unit: 'binary' }), fc.jsonValue());

// The bytes are canonical iff they are well-formed UTF-8 of a text canonicalJson prints for an object.
function isCanonicalBytes(bytes: Uint8Array): boolean {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return false;
  }
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) && canonicalJson(v) === text;
  } catch {
    return false;
  }
}

// The leaf between a leading and a trailing 0x00, as in a LeafBatch.
function framed(leaf: Uint8Array): Buffer {
  return Buffer.concat([Buffer.of(0), leaf, Buffer.of(0)]);
}

function scan(leaf: Uint8Array): boolean {
  const bytes = framed(leaf);
  return scanCanonicalLeaf(bytes, 1, bytes.length - 1);
}

describe('scanCanonicalLeaf', () => {
  it('accepts the UTF-8 of whatever canonicalJson prints for an object', () => {
    fc.assert(
      fc.property(object, (o) => scan(Buffer.from(canonicalJson(o), 'utf8'))),
      { numRuns: 2000 },
    );
  });

  it('accepts exactly the canonical byte strings among byte-edited ones (RFC 8785 §3.2, RFC 3629 §4)', () => {
    fc.assert(
      fc.property(object, fc.nat(), fc.uint8Array({ maxLength: 3 }), fc.nat(3), (o, at, ins, del) => {
        const leaf = Buffer.from(canonicalJson(o), 'utf8');
        const p = at % (leaf.length + 1);
        const edited = Buffer.concat([leaf.subarray(0, p), ins, leaf.subarray(p + del)]);
        return scan(edited) === isCanonicalBytes(edited);
      }),
      { numRuns: 5000 },
    );
  });

  for (const [hex, why] of [
    ['7b2261223a22ff227d', 'a byte that never occurs in UTF-8'],
    ['7b2261223a22c0af227d', 'an overlong form'],
    ['7b2261223a22eda080227d', 'a UTF-8-encoded lone surrogate'],
    ['7b2261223a22f4908080227d', 'a code point above U+10FFFF'],
    ['7b2261223a22e282227d', 'a truncated sequence'],
    ['7b2261223a22', 'an unterminated string at the end of the leaf'],
  ]) {
    it(`refuses ${why}`, () => assert.equal(scan(Buffer.from(hex as string, 'hex')), false));
  }

  it('reads the own index in place, and refuses one that only looks like it', () => {
    const leaf = framed(Buffer.from('{"a":[7],"index":42,"z":{"index":1}}'));
    assert.equal(scanCanonicalLeaf(leaf, 1, leaf.length - 1), true);
    assert.equal(scannedIndexIs(leaf, 42), true);
    assert.equal(scannedIndexIs(leaf, 7), false);
    assert.equal(scannedIndexText(leaf), '42');
    for (const text of ['{"index":[42]}', '{"index":"42"}', '{"index":4.2e1}', '{"x":42}']) {
      const bytes = framed(Buffer.from(text));
      assert.equal(scanCanonicalLeaf(bytes, 1, bytes.length - 1), text !== '{"index":4.2e1}', text);
      assert.equal(scannedIndexIs(bytes, 42), false, text);
    }
    const big = framed(Buffer.from('{"index":1234567890123456}'));
    assert.equal(scanCanonicalLeaf(big, 1, big.length - 1), true);
    assert.equal(scannedIndexIs(big, 1234567890123456), true);
  });

  it('refuses to scan a leaf not followed by a control byte', () => {
    const bytes = Buffer.from('{}x');
    assert.throws(() => scanCanonicalLeaf(bytes, 0, 2), RangeError);
    assert.throws(() => scanCanonicalLeaf(bytes, 0, 3), RangeError);
  });
});
