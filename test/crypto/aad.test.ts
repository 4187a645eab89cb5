import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type AadContext, CryptoError, encodeAad } from '../../src/crypto/index.ts';

function assertAadInvalid(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof CryptoError && err.code === 'TRESOR_ERR_AAD_INVALID');
}

/** A canonical, typed description of a context: equal exactly when two contexts mean the same. */
function canonical(purpose: string, context: AadContext): string {
  const entries = Object.keys(context)
    .sort()
    .map((k) => [k, typeof context[k], String(context[k])]);
  return JSON.stringify([purpose, entries]);
}

describe('encodeAad', () => {
  test('does not confuse {a: "bc"} with {ab: "c"}', () => {
    assert.notDeepEqual(encodeAad('p', { a: 'bc' }), encodeAad('p', { ab: 'c' }));
  });

  test('does not confuse the string "1" with the number 1', () => {
    assert.notDeepEqual(encodeAad('p', { v: '1' }), encodeAad('p', { v: 1 }));
  });

  test('ignores the order in which context keys were written', () => {
    assert.deepEqual(
      encodeAad('p', { tenant: 't', record: 'r', version: 2 }),
      encodeAad('p', { version: 2, record: 'r', tenant: 't' }),
    );
  });

  test('does not confuse a purpose with a context component', () => {
    assert.notDeepEqual(encodeAad('field', {}), encodeAad('f', { ield: '' }));
    assert.notDeepEqual(encodeAad('field', { a: 'b' }), encodeAad('other', { a: 'b' }));
  });

  test('does not confuse a context with and without an empty-string component', () => {
    assert.notDeepEqual(encodeAad('p', { a: 'b' }), encodeAad('p', { a: 'b', c: '' }));
  });

  test('does not confuse a value holding separator-like bytes with two components', () => {
    assert.notDeepEqual(
      encodeAad('p', { a: 'b\u0000\u0000\u0000\u0001c' }),
      encodeAad('p', { a: 'b', c: '' }),
    );
  });

  test('refuses numbers that are not safe integers', () => {
    for (const n of [1.5, -0.1, Number.NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53), Number.MAX_VALUE]) {
      assertAadInvalid(() => encodeAad('p', { n }));
    }
  });

  test('accepts the largest and smallest safe integers', () => {
    assert.ok(encodeAad('p', { n: Number.MAX_SAFE_INTEGER }).length > 0);
    assert.ok(encodeAad('p', { n: Number.MIN_SAFE_INTEGER }).length > 0);
  });

  test('refuses values that are neither strings nor numbers', () => {
    for (const value of [true, null, undefined, 1n, {}, ['a']]) {
      assertAadInvalid(() => encodeAad('p', { v: value } as unknown as AadContext));
    }
  });

  test('refuses an empty or over-long purpose', () => {
    assertAadInvalid(() => encodeAad('', {}));
    assertAadInvalid(() => encodeAad('x'.repeat(65), {}));
    assert.ok(encodeAad('x'.repeat(64), {}).length > 0);
  });

  test('refuses an empty component name and a value over 4096 bytes', () => {
    assertAadInvalid(() => encodeAad('p', { '': 'v' }));
    assertAadInvalid(() => encodeAad('p', { v: 'x'.repeat(4097) }));
    assert.ok(encodeAad('p', { v: 'x'.repeat(4096) }).length > 0);
  });

  test('refuses a lone surrogate, which UTF-8 would turn into U+FFFD', () => {
    assertAadInvalid(() => encodeAad('p', { record: '\uD800' }));
    assertAadInvalid(() => encodeAad('p', { '\uDC00': 'v' }));
    assertAadInvalid(() => encodeAad('p\uD800', {}));
    assert.ok(encodeAad('p', { record: '\uFFFD' }).length > 0);
    assert.ok(encodeAad('p', { record: '😀' }).length > 0);
  });

  test('gives different bytes to any two contexts that differ (property)', () => {
    const value = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 8 }),
      fc.integer({ min: -3, max: 3 }),
      fc.constantFrom('1', '0', '-1', ''),
    );
    const context = fc.dictionary(fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }), value, {
      maxKeys: 4,
    });
    const purpose = fc.constantFrom('field', 'fiel', 'blind-index-key');
    fc.assert(
      fc.property(purpose, context, purpose, context, (p1, c1, p2, c2) => {
        const same = canonical(p1, c1) === canonical(p2, c2);
        assert.equal(encodeAad(p1, c1).equals(encodeAad(p2, c2)), same);
      }),
      { numRuns: 2000 },
    );
  });

  test('keeps its exact bytes: fixed vectors, and the spec written out piece by piece', () => {
    // Sealed data depends on these bytes: a faster encoder must give exactly the same ones.
    assert.equal(
      encodeAad('record-field', {
        tenant: 'ten_x',
        collection: 'people',
        record: 'rec_1',
        field: 'émail 🙂',
        version: 3,
      }).toString('hex'),
      '747265736f722d6161642d76310000000c7265636f72642d6669656c640000000a636f6c6c656374696f6e73' +
        '0000000670656f706c65000000056669656c64730000000bc3a96d61696c20f09f9982000000067265636f7264' +
        '73000000057265635f310000000674656e616e74730000000574656e5f780000000776657273696f6e6e0000000133',
    );
    assert.equal(encodeAad('p', {}).toString('hex'), '747265736f722d6161642d76310000000170');
    const prefix = Buffer.from('0102ff', 'hex');
    assert.deepEqual(encodeAad('p', { a: 1 }, prefix), Buffer.concat([prefix, encodeAad('p', { a: 1 })]));
    const lp = (text: string) => {
      const bytes = Buffer.from(text, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(bytes.length);
      return [len, bytes];
    };
    const reference = (purpose: string, context: AadContext) =>
      Buffer.concat([
        Buffer.from('tresor-aad-v1'),
        ...lp(purpose),
        ...Object.keys(context)
          .sort()
          .flatMap((k) => {
            const v = context[k] as string | number;
            return [...lp(k), Buffer.of(typeof v === 'string' ? 0x73 : 0x6e), ...lp(String(v))];
          }),
      ]);
    const name = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
        fc.dictionary(name, fc.oneof(fc.string({ unit: 'grapheme', maxLength: 30 }), fc.maxSafeInteger())),
        (purpose, context) => {
          fc.pre(purpose.length <= 64);
          assert.deepEqual(encodeAad(purpose, context), reference(purpose, context));
        },
      ),
      { numRuns: 1000 },
    );
  });
});
