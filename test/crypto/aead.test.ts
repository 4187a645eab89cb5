/**
 * AES-256-GCM known-answer tests. The vectors are published data, not ours: NIST CAVP GCMVS
 * (gcmEncryptExtIV256.rsp, gcmDecrypt256.rsp) and Wycheproof; see vectors/README.md for where each
 * file comes from. Tresor supports only 96-bit IVs and 128-bit tags, so only those groups are kept.
 *
 * aeadSeal draws its own nonce and takes none from a caller, so the encryption vectors (which fix
 * the IV) are checked against node:crypto's AES-256-GCM with the parameters aeadSeal uses, and
 * aeadOpen must open what they publish; aeadSeal's own output is checked by opening it with
 * node:crypto directly.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  aeadOpen,
  aeadSeal,
  CryptoError,
  type CryptoErrorCode,
  ownsItsMemory,
  type Sealed,
} from '../../src/crypto/index.ts';

/** AES-256-GCM with a fixed IV, straight from node:crypto, as aeadSeal calls it (96-bit IV, 128-bit tag). */
function gcmWithIv(key: Buffer, iv: Buffer, plaintext: Buffer, aad: Buffer): Sealed {
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce: iv, ciphertext, tag: cipher.getAuthTag() };
}

const VECTORS = new URL('./vectors/', import.meta.url);

interface RspCase {
  group: Record<string, string>;
  fields: Record<string, string>;
  fail: boolean;
}

/** Parses a CAVP .rsp file: `[Name = value]` group headers, then `Name = value` cases split by blank lines. */
function readRsp(name: string): RspCase[] {
  const cases: RspCase[] = [];
  let group: Record<string, string> = {};
  let inHeader = false;
  for (const block of readFileSync(new URL(name, VECTORS), 'utf8').split(/\r?\n\s*\r?\n/)) {
    const lines = block.split(/\r?\n/).filter((line) => line.trim() !== '' && !line.startsWith('#'));
    if (lines.length === 0) continue;
    if (lines[0]?.startsWith('[')) {
      if (!inHeader) group = {};
      for (const line of lines) {
        const [k, v] = line.slice(1, -1).split('=');
        group[(k ?? '').trim()] = (v ?? '').trim();
      }
      inHeader = true;
      continue;
    }
    inHeader = false;
    const fields: Record<string, string> = {};
    let fail = false;
    for (const line of lines) {
      if (line.trim() === 'FAIL') {
        fail = true;
        continue;
      }
      const at = line.indexOf('=');
      fields[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    cases.push({ group: { ...group }, fields, fail });
  }
  return cases;
}

function hex(value: string | undefined): Buffer {
  assert.ok(value !== undefined, 'vector field is missing');
  return Buffer.from(value, 'hex');
}

function assertCryptoError(fn: () => unknown, code: CryptoErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CryptoError, `expected a CryptoError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

function label(c: RspCase): string {
  return `Count ${c.fields.Count}, PTlen=${c.group.PTlen}, AADlen=${c.group.AADlen}`;
}

const encryptCases = readRsp('gcmEncryptExtIV256.rsp');
const decryptCases = readRsp('gcmDecrypt256.rsp');

describe('NIST CAVP gcmEncryptExtIV256 (Keylen=256, IVlen=96, Taglen=128)', () => {
  test('covers every PTlen/AADlen group the file has for these parameters', () => {
    assert.equal(encryptCases.length, 75);
    const groups = new Set(encryptCases.map((c) => `${c.group.PTlen}/${c.group.AADlen}`));
    for (const pt of ['0', '104', '128', '256', '408']) {
      for (const aad of ['0', '128', '160', '384', '720'])
        assert.ok(groups.has(`${pt}/${aad}`), `${pt}/${aad}`);
    }
    for (const c of encryptCases) {
      assert.deepEqual([c.group.Keylen, c.group.IVlen, c.group.Taglen], ['256', '96', '128']);
    }
  });

  for (const c of encryptCases) {
    test(`${label(c)}: seals to the published CT and Tag and opens back to PT`, () => {
      const key = hex(c.fields.Key);
      const aad = hex(c.fields.AAD);
      const sealed = gcmWithIv(key, hex(c.fields.IV), hex(c.fields.PT), aad);
      assert.equal(sealed.ciphertext.toString('hex'), c.fields.CT);
      assert.equal(sealed.tag.toString('hex'), c.fields.Tag);
      assert.equal(sealed.nonce.toString('hex'), c.fields.IV);
      assert.equal(aeadOpen(key, sealed, aad).toString('hex'), c.fields.PT);
    });
  }
});

describe('NIST CAVP gcmDecrypt256 (Keylen=256, IVlen=96, Taglen=128)', () => {
  test('holds both valid and FAIL cases for every PTlen/AADlen group', () => {
    assert.equal(decryptCases.length, 100);
    assert.equal(decryptCases.filter((c) => c.fail).length, 50);
    const groups = new Set(decryptCases.map((c) => `${c.group.PTlen}/${c.group.AADlen}`));
    assert.equal(groups.size, 25);
  });

  for (const c of decryptCases) {
    const sealed = () => ({ nonce: hex(c.fields.IV), ciphertext: hex(c.fields.CT), tag: hex(c.fields.Tag) });
    if (c.fail) {
      test(`${label(c)}: refuses the FAIL case with TRESOR_ERR_DECRYPT_FAILED`, () => {
        assertCryptoError(
          () => aeadOpen(hex(c.fields.Key), sealed(), hex(c.fields.AAD)),
          'TRESOR_ERR_DECRYPT_FAILED',
        );
      });
    } else {
      test(`${label(c)}: opens to the published PT`, () => {
        assert.equal(aeadOpen(hex(c.fields.Key), sealed(), hex(c.fields.AAD)).toString('hex'), c.fields.PT);
      });
    }
  }
});

interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: 'valid' | 'invalid' | 'acceptable';
}

interface WycheproofFile {
  testGroups: { ivSize: number; keySize: number; tagSize: number; tests: WycheproofTest[] }[];
}

const wycheproof = JSON.parse(
  readFileSync(new URL('wycheproof_aes_gcm_256.json', VECTORS), 'utf8'),
) as WycheproofFile;

describe('Wycheproof aes_gcm_test (keySize=256, ivSize=96, tagSize=128)', () => {
  const tests = wycheproof.testGroups.flatMap((g) => {
    assert.deepEqual([g.keySize, g.ivSize, g.tagSize], [256, 96, 128]);
    return g.tests;
  });

  test('holds valid and invalid cases', () => {
    assert.equal(tests.filter((t) => t.result === 'valid').length, 20);
    assert.equal(tests.filter((t) => t.result === 'invalid').length, 27);
  });

  for (const t of tests) {
    const name = `tcId ${t.tcId} ${t.flags.join(',')}${t.comment ? ` (${t.comment})` : ''}`;
    if (t.result === 'valid') {
      test(`${name}: seals to the published ct and tag and opens back to msg`, () => {
        const sealed = gcmWithIv(hex(t.key), hex(t.iv), hex(t.msg), hex(t.aad));
        assert.equal(sealed.ciphertext.toString('hex'), t.ct);
        assert.equal(sealed.tag.toString('hex'), t.tag);
        assert.equal(aeadOpen(hex(t.key), sealed, hex(t.aad)).toString('hex'), t.msg);
      });
    } else {
      test(`${name}: refuses with TRESOR_ERR_DECRYPT_FAILED`, () => {
        const sealed = { nonce: hex(t.iv), ciphertext: hex(t.ct), tag: hex(t.tag) };
        assertCryptoError(() => aeadOpen(hex(t.key), sealed, hex(t.aad)), 'TRESOR_ERR_DECRYPT_FAILED');
      });
    }
  }
});

describe('aeadSeal / aeadOpen parameters', () => {
  const key = randomBytes(32);
  const aad = Buffer.from('context');

  test('refuses keys that are not 32 bytes', () => {
    for (const length of [0, 16, 24, 31, 33]) {
      assertCryptoError(() => aeadSeal(randomBytes(length), Buffer.from('x'), aad), 'TRESOR_ERR_KEY_INVALID');
      const sealed = aeadSeal(key, Buffer.from('x'), aad);
      assertCryptoError(() => aeadOpen(randomBytes(length), sealed, aad), 'TRESOR_ERR_KEY_INVALID');
    }
  });

  test('takes no nonce from its caller: a fourth argument is not a parameter and is ignored', () => {
    assert.equal(aeadSeal.length, 3, 'aeadSeal(key, plaintext, aad)');
    const fixed = Buffer.alloc(12, 7);
    const seal = aeadSeal as (...args: unknown[]) => Sealed;
    const a = seal(key, Buffer.from('same'), aad, fixed);
    const b = seal(key, Buffer.from('same'), aad, fixed);
    assert.notDeepEqual(a.nonce, fixed);
    assert.notDeepEqual(a.nonce, b.nonce);
  });

  test('seals standard AES-256-GCM: node:crypto opens it with the nonce and tag it returns', () => {
    const sealed = aeadSeal(key, Buffer.from('interoperable'), aad);
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.nonce, { authTagLength: 16 });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.tag);
    const opened = Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
    assert.equal(opened.toString(), 'interoperable');
  });

  test('opens into memory of its own, never a slice of the shared pool, whatever the size', () => {
    for (const length of [0, 1, 16, 32, 33, 100, 4095, 4096, 70_000]) {
      const plaintext = randomBytes(length);
      const opened = aeadOpen(key, aeadSeal(key, plaintext, aad), aad);
      assert.ok(ownsItsMemory(opened), `${length} bytes: byteOffset 0 and an ArrayBuffer of its own`);
      assert.equal(opened.byteOffset, 0);
      assert.equal(opened.buffer.byteLength, length);
      assert.deepEqual(opened, plaintext);
    }
  });

  test('refuses a truncated or extended tag instead of checking fewer bits', () => {
    const sealed = aeadSeal(key, Buffer.from('secret'), aad);
    for (const length of [0, 4, 8, 12, 15, 17]) {
      const tag = Buffer.alloc(length);
      sealed.tag.copy(tag);
      assertCryptoError(() => aeadOpen(key, { ...sealed, tag }, aad), 'TRESOR_ERR_CIPHERTEXT_MALFORMED');
    }
  });

  test('refuses a nonce of the wrong length when opening', () => {
    const sealed = aeadSeal(key, Buffer.from('secret'), aad);
    assertCryptoError(
      () => aeadOpen(key, { ...sealed, nonce: sealed.nonce.subarray(0, 8) }, aad),
      'TRESOR_ERR_CIPHERTEXT_MALFORMED',
    );
  });

  test('draws a fresh random nonce for every encryption of the same plaintext', () => {
    const a = aeadSeal(key, Buffer.from('same'), aad);
    const b = aeadSeal(key, Buffer.from('same'), aad);
    assert.equal(a.nonce.length, 12);
    assert.notDeepEqual(a.nonce, b.nonce);
    assert.notDeepEqual(a.ciphertext, b.ciphertext);
  });

  test('refuses a different AAD', () => {
    const sealed = aeadSeal(key, Buffer.from('secret'), aad);
    assertCryptoError(() => aeadOpen(key, sealed, Buffer.from('contexT')), 'TRESOR_ERR_DECRYPT_FAILED');
  });
});
