/**
 * Recovery codes: ten 120-bit codes shown once, stored as salted SHA-256 hashes, each usable once,
 * matched against every stored hash with the same work whatever the outcome.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  consumeRecoveryCode,
  newRecoveryCodes,
  normaliseRecoveryCode,
  RECOVERY_CODE_COUNT,
} from '../../src/identity/recovery-codes.ts';

const CODE_FORMAT = /^[A-Z2-7]{4}(-[A-Z2-7]{4}){5}$/;

describe('recovery codes', () => {
  it('makes ten distinct codes of six groups of four base32 characters (120 bits each)', () => {
    const { codes, hashes } = newRecoveryCodes();
    assert.equal(codes.length, RECOVERY_CODE_COUNT);
    assert.equal(hashes.length, RECOVERY_CODE_COUNT);
    for (const code of codes) assert.match(code, CODE_FORMAT);
    assert.equal(new Set(codes).size, codes.length, 'no two codes are equal');
  });

  it('makes as many codes as asked, and refuses silly counts', () => {
    assert.equal(newRecoveryCodes(3).codes.length, 3);
    assert.throws(() => newRecoveryCodes(0), RangeError);
    assert.throws(() => newRecoveryCodes(1.5), RangeError);
  });

  it('stores only salted hashes that do not contain the codes', () => {
    const { codes, hashes } = newRecoveryCodes();
    for (const [i, hash] of hashes.entries()) {
      assert.match(hash, /^rc1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
      const plain = codes[i]?.replaceAll('-', '') ?? '';
      assert.ok(
        !hash.includes(plain) && !hash.includes(codes[i] ?? ''),
        `hash #${i} does not reveal its code`,
      );
    }
  });

  it('salts each user’s set differently', () => {
    const a = newRecoveryCodes(1).hashes[0]?.split('$')[1];
    const b = newRecoveryCodes(1).hashes[0]?.split('$')[1];
    assert.ok(a !== undefined && b !== undefined && a !== b, 'two sets have different salts');
  });

  it('finds the slot of each code', () => {
    const { codes, hashes } = newRecoveryCodes();
    for (const [i, code] of codes.entries()) assert.equal(consumeRecoveryCode(code, hashes), i, `code #${i}`);
  });

  it('ignores case, dashes and spaces in what the user types', () => {
    const { codes, hashes } = newRecoveryCodes();
    const code = codes[4] ?? '';
    assert.equal(consumeRecoveryCode(code.toLowerCase(), hashes), 4);
    assert.equal(consumeRecoveryCode(code.replaceAll('-', ''), hashes), 4);
    assert.equal(consumeRecoveryCode(` ${code.replaceAll('-', ' ')} `, hashes), 4);
  });

  it('refuses a used code once its slot is cleared', () => {
    const { codes, hashes } = newRecoveryCodes();
    const stored: Array<string | null> = [...hashes];
    const slot = consumeRecoveryCode(codes[2] ?? '', stored);
    assert.equal(slot, 2);
    stored[2] = null;
    assert.equal(consumeRecoveryCode(codes[2] ?? '', stored), undefined, 'the used code is refused');
    assert.equal(consumeRecoveryCode(codes[3] ?? '', stored), 3, 'the other codes still work');
  });

  it('refuses a wrong code, another user’s code and malformed input', () => {
    const mine = newRecoveryCodes();
    const theirs = newRecoveryCodes();
    assert.equal(consumeRecoveryCode(theirs.codes[0] ?? '', mine.hashes), undefined, 'another set’s code');
    const wrong = (mine.codes[0] ?? '').replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
    assert.equal(consumeRecoveryCode(wrong, mine.hashes), undefined, 'one character changed');
    for (const input of [
      '',
      'ABCD',
      `${mine.codes[0]}A`,
      (mine.codes[0] ?? '').replace(/^./, '0'),
      '🦊'.repeat(24),
    ]) {
      assert.equal(consumeRecoveryCode(input, mine.hashes), undefined, `refuses ${JSON.stringify(input)}`);
    }
  });

  it('skips malformed stored entries without throwing', () => {
    const { codes, hashes } = newRecoveryCodes(2);
    const stored = ['garbage', null, undefined, 'rc1$short$short', hashes[1] ?? ''];
    assert.equal(consumeRecoveryCode(codes[1] ?? '', stored), 4);
    assert.equal(consumeRecoveryCode(codes[0] ?? '', stored), undefined);
  });

  it('normalises to 24 upper-case base32 characters or nothing', () => {
    assert.equal(normaliseRecoveryCode('abcd-efgh-ijkl-mnop-qrst-uvwx'), 'ABCDEFGHIJKLMNOPQRSTUVWX');
    assert.equal(normaliseRecoveryCode('abcd-efgh-ijkl-mnop-qrst-uvw1'), undefined, '1 is not base32');
    assert.equal(normaliseRecoveryCode('a'.repeat(65)), undefined, 'over-long input');
  });
});
