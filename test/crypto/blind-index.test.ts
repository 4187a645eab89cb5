import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { type BlindIndexScope, blindIndex, deriveBlindIndexKey } from '../../src/crypto/index.ts';

const TENANT_KEY = randomBytes(32);
const SCOPE: BlindIndexScope = { tenant: 'acme', collection: 'patients', field: 'email' };

function indexOf(value: string, scope: BlindIndexScope = SCOPE, tenantKey: Uint8Array = TENANT_KEY): Buffer {
  return blindIndex(deriveBlindIndexKey(tenantKey, scope), value);
}

describe('blind index', () => {
  test('gives the same index for the same value in the same scope', () => {
    assert.deepEqual(indexOf('ada@example.org'), indexOf('ada@example.org'));
  });

  test('gives different indexes for different values', () => {
    assert.notDeepEqual(indexOf('ada@example.org'), indexOf('bob@example.org'));
  });

  test('gives a different index for the same value in another field', () => {
    assert.notDeepEqual(indexOf('x'), indexOf('x', { ...SCOPE, field: 'phone' }));
  });

  test('gives a different index for the same value in another collection', () => {
    assert.notDeepEqual(indexOf('x'), indexOf('x', { ...SCOPE, collection: 'invoices' }));
  });

  test('gives a different index for the same value in another tenant', () => {
    assert.notDeepEqual(indexOf('x'), indexOf('x', { ...SCOPE, tenant: 'globex' }));
  });

  test('gives a different index under another tenant key', () => {
    assert.notDeepEqual(indexOf('x'), indexOf('x', SCOPE, randomBytes(32)));
  });

  test('does not let scope components run together (tenant "ab"+collection "c" vs "a"+"bc")', () => {
    assert.notDeepEqual(
      indexOf('x', { tenant: 'ab', collection: 'c', field: 'f' }),
      indexOf('x', { tenant: 'a', collection: 'bc', field: 'f' }),
    );
  });

  test('matches composed and decomposed é (NFC normalisation)', () => {
    const composed = 'Ren\u00e9e';
    const decomposed = 'Rene\u0301e';
    assert.notEqual(composed, decomposed);
    assert.deepEqual(indexOf(composed), indexOf(decomposed));
  });

  test('leaves case folding to the caller', () => {
    assert.notDeepEqual(indexOf('Ada'), indexOf('ada'));
  });

  test('is a 32-byte MAC, not the plaintext', () => {
    const value = 'ada@example.org';
    const index = indexOf(value);
    assert.equal(index.length, 32);
    assert.notDeepEqual(index, Buffer.from(value, 'utf8'));
    assert.equal(index.indexOf(Buffer.from(value, 'utf8')), -1);
  });

  test('is not an HMAC under the raw tenant key (the field key is derived, not reused)', () => {
    const value = 'ada@example.org';
    const fieldKey = deriveBlindIndexKey(TENANT_KEY, SCOPE);
    assert.notDeepEqual(fieldKey, Buffer.from(TENANT_KEY));
    assert.notDeepEqual(indexOf(value), createHmac('sha256', TENANT_KEY).update(value, 'utf8').digest());
  });

  test('derives a 32-byte field key deterministically', () => {
    const a = deriveBlindIndexKey(TENANT_KEY, SCOPE);
    assert.equal(a.length, 32);
    assert.deepEqual(a, deriveBlindIndexKey(TENANT_KEY, { ...SCOPE }));
  });
});
