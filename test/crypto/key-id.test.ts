import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CryptoError, checkKeyId, isKeyPurpose, KEY_PURPOSES, newKeyId } from '../../src/crypto/index.ts';
import { KEY_ID_PATTERN } from '../../src/crypto/key-id.ts';

function assertKeyInvalid(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof CryptoError && err.code === 'TRESOR_ERR_KEY_INVALID');
}

describe('checkKeyId', () => {
  test('accepts ids of 1 to 64 characters from [A-Za-z0-9._:-] that start alphanumeric', () => {
    for (const id of ['a', 'Z9', 'dk_3f9a', 'tenant:acme.data-v2', `k${'x'.repeat(63)}`]) {
      assert.equal(checkKeyId(id), id);
    }
  });

  test('refuses empty, over-long and badly started ids', () => {
    for (const id of ['', `k${'x'.repeat(64)}`, '_dk', '-dk', '.dk', ':dk'])
      assertKeyInvalid(() => checkKeyId(id));
  });

  test('refuses spaces, slashes, control characters and non-ASCII', () => {
    for (const id of ['dk 1', 'dk/1', 'dk\\1', 'dk\n', 'dk\u0000', 'dké', 'dk\u212a']) {
      assertKeyInvalid(() => checkKeyId(id));
    }
  });
});

describe('newKeyId', () => {
  test('makes ids with the given prefix and 96 random bits in hex', () => {
    const id = newKeyId('dk');
    assert.match(id, /^dk_[0-9a-f]{24}$/);
    assert.match(id, KEY_ID_PATTERN);
  });

  test('makes a different id every time', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => newKeyId('dk')));
    assert.equal(ids.size, 10_000);
  });

  test('refuses a prefix that would make an invalid id', () => {
    assertKeyInvalid(() => newKeyId(''));
    assertKeyInvalid(() => newKeyId('bad prefix'));
  });
});

describe('isKeyPurpose', () => {
  test('accepts exactly the listed purposes', () => {
    for (const purpose of KEY_PURPOSES) assert.equal(isKeyPurpose(purpose), true);
    for (const other of ['', 'Data', 'master', 1, null, undefined]) assert.equal(isKeyPurpose(other), false);
  });
});
