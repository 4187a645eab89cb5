/**
 * HKDF-SHA-256 against RFC 5869 Appendix A, test cases 1 to 3 (the SHA-256 ones). The vector file
 * is a copy of the appendix; see vectors/README.md.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CryptoError, hkdf } from '../../src/crypto/index.ts';

interface HkdfCase {
  COUNT: string;
  Hash: string;
  IKM: string;
  salt: string;
  info: string;
  L: string;
  OKM: string;
}

function readRfc5869Cases(): HkdfCase[] {
  const text = readFileSync(new URL('./vectors/rfc-5869-HKDF-SHA256.txt', import.meta.url), 'utf8');
  const cases: HkdfCase[] = [];
  let current: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf('=');
    if (line.startsWith('#') || at < 0) continue;
    const name = line.slice(0, at).trim();
    if (name === 'COUNT') {
      current = {};
      cases.push(current as unknown as HkdfCase);
    }
    current[name] = line.slice(at + 1).trim();
  }
  return cases;
}

const cases = readRfc5869Cases();

describe('HKDF-SHA-256 (RFC 5869 Appendix A)', () => {
  test('reads test cases 1, 2 and 3, all SHA-256', () => {
    assert.deepEqual(
      cases.map((c) => [c.COUNT, c.Hash]),
      [
        ['1', 'SHA-256'],
        ['2', 'SHA-256'],
        ['3', 'SHA-256'],
      ],
    );
  });

  for (const c of cases) {
    test(`test case ${c.COUNT}: derives the published OKM (L=${c.L})`, () => {
      const okm = hkdf(
        Buffer.from(c.IKM, 'hex'),
        Buffer.from(c.info, 'hex'),
        Buffer.from(c.salt, 'hex'),
        Number(c.L),
      );
      assert.equal(okm.toString('hex'), c.OKM);
    });
  }

  test('test case 3 (empty salt and info) gives the same OKM with info as an empty string', () => {
    const c = cases[2];
    assert.ok(c);
    const okm = hkdf(Buffer.from(c.IKM, 'hex'), '', Buffer.alloc(0), Number(c.L));
    assert.equal(okm.toString('hex'), c.OKM);
  });
});

describe('hkdf', () => {
  const ikm = Buffer.alloc(32, 7);

  test('treats a string info as its UTF-8 bytes', () => {
    assert.deepEqual(hkdf(ikm, 'tresor/ключ'), hkdf(ikm, Buffer.from('tresor/ключ', 'utf8')));
  });

  test('derives unrelated keys for different info', () => {
    assert.notDeepEqual(hkdf(ikm, 'data-key'), hkdf(ikm, 'blind-index-key'));
  });

  test('derives 32 bytes by default', () => {
    assert.equal(hkdf(ikm, 'x').length, 32);
  });

  test('refuses input key material shorter than 16 bytes', () => {
    assert.throws(
      () => hkdf(Buffer.alloc(15, 1), 'x'),
      (err: unknown) => err instanceof CryptoError && err.code === 'TRESOR_ERR_KEY_INVALID',
    );
  });
});
