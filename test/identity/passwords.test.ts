/**
 * Passwords: NIST SP 800-63B-4 §3.1.1.2 choice policy (length, any printable character, no
 * composition rules, blocklist of common, repetitive, sequential and context-specific values) and
 * argon2id storage with RFC 9106's second recommended parameters.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { hash as argon2Hash } from '@node-rs/argon2';
import {
  ARGON2ID_OPTIONS,
  argon2idOptions,
  checkPasswordPolicy,
  hashPassword,
  needsRehash,
  type PasswordRefusal,
  TEST_ARGON2ID_COST,
  verifyPassword,
} from '../../src/identity/passwords.ts';

/** Runs `fn` with the test runner's low argon2id cost lifted: what production hashes with. */
async function atProductionCost<T>(fn: () => Promise<T>): Promise<T> {
  const global = globalThis as Record<symbol, unknown>;
  const lowered = global[TEST_ARGON2ID_COST];
  delete global[TEST_ARGON2ID_COST];
  try {
    return await fn();
  } finally {
    if (lowered !== undefined) global[TEST_ARGON2ID_COST] = lowered;
  }
}

function refusedFor(password: string, reason: PasswordRefusal, context = {}): void {
  const result = checkPasswordPolicy(password, context);
  assert.ok(
    !result.ok && result.reasons.includes(reason),
    `${JSON.stringify(password)} is refused as ${reason}`,
  );
}

function accepted(password: string, context = {}): void {
  const result = checkPasswordPolicy(password, context);
  assert.deepEqual(result, { ok: true }, `${JSON.stringify(password)} is accepted`);
}

describe('password policy (SP 800-63B-4 §3.1.1.2)', () => {
  it('refuses passwords shorter than 12 characters, counting code points', () => {
    refusedFor('k8#Lm2!pQz9', 'too-short');
    refusedFor('🦊🦊🐙🐢🦉🐝🦀🐬🦋🐞🐌', 'too-short'); // 11 code points, 22 UTF-16 units
    accepted('k8#Lm2!pQz9@');
    accepted('🦊🐙🐢🦉🐝🦀🐬🦋🐞🐌🦑🐳');
  });

  it('refuses passwords longer than 128 characters and accepts 128', () => {
    const phrase = 'the quick brown fox jumps over the lazy dog while velvet otters juggle ';
    accepted(phrase.repeat(2).slice(0, 128));
    refusedFor(phrase.repeat(2).slice(0, 129), 'too-long');
    accepted(phrase.slice(0, 64));
  });

  it('accepts any printable characters, spaces and Unicode, with no composition rules', () => {
    accepted('correct horse battery staple');
    accepted('allemaalkleineletters');
    accepted('837261940573');
    accepted('Fjörður við Ísafjarðardjúp');
    accepted('пароль для сейфа тресор');
    accepted('東京特許許可局長今日急遽休暇許可拒否');
    accepted('   spaces   around   words   ');
  });

  it('refuses control characters and lone surrogates', () => {
    refusedFor('line one\nline two', 'unprintable');
    refusedFor('tab\tseparated words', 'unprintable');
    refusedFor('nul\u0000inside a phrase', 'unprintable');
    refusedFor('lone surrogate \ud800 here', 'unprintable');
  });

  it('counts length after NFKC normalisation', () => {
    // U+FB03 "ﬃ" is one code point that NFKC expands to "ffi" (3).
    accepted('\ufb03\ufb03\ufb03 zebra'); // 'ffiffiffi zebra' = 15
    refusedFor('ｐａｓｓｗｏｒｄ１２３４', 'common'); // full-width forms normalise to password1234
  });

  it('refuses common and breached passwords from the bundled list, with trivial variations', () => {
    for (const password of [
      'password1234',
      'Password1234',
      'P@ssw0rd2024',
      'iloveyou1234',
      'monkeymonkey',
      'PASSWORDPASSWORD',
      'superman!!!!',
      '1234football',
      'baseball 2024',
      'trustno1trustno1',
    ]) {
      refusedFor(password, 'common');
    }
  });

  it('bundles about a thousand common passwords, lower-cased and with provenance', () => {
    const text = readFileSync(new URL('../../src/identity/common-passwords.txt', import.meta.url), 'utf8');
    const entries = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    assert.ok(entries.length >= 990 && entries.length <= 1000, `${entries.length} entries`);
    assert.ok(text.startsWith('# '), 'the file opens with its source');
    assert.ok(
      entries.every((e) => e === e.toLowerCase()),
      'entries are lower-case',
    );
  });

  it('refuses repetitive passwords (aaaaaa…, one short pattern)', () => {
    for (const password of [
      'aaaaaaaaaaaa',
      '111111111111',
      'abababababab',
      'xyzxyzxyzxyz',
      '!!!!!!!!!!!!!',
      'aaaaaabbbbbb',
    ]) {
      refusedFor(password, 'repetitive-or-sequential');
    }
  });

  it('refuses sequential passwords (123456…, abcdef…, keyboard rows)', () => {
    for (const password of [
      '123456789012',
      '987654321098',
      'abcdefghijklm',
      'zyxwvutsrqpo',
      'qwertyuiop123',
      'asdfghjkl;12',
      '1qaz2wsx3edc',
      'qwertzuiop12',
      'azertyuiop!!',
      'abcd1234efgh',
    ]) {
      refusedFor(password, 'repetitive-or-sequential');
    }
  });

  it('refuses the service name and the user’s e-mail local part and name as the password’s basis', () => {
    refusedFor('tresortresor', 'context-specific');
    refusedFor('Tresor2024!!', 'context-specific');
    refusedFor('adalovelace1', 'context-specific', { email: 'ada.lovelace@example.com' });
    refusedFor('lovelace12345', 'context-specific', { email: 'ada.lovelace@example.com' });
    refusedFor('babbagebabbage', 'context-specific', { name: 'Charles Babbage' });
    accepted('adalovelace1', { email: 'someone@example.com' });
  });

  it('accepts a passphrase that merely mentions a context word among others', () => {
    accepted('my tresor vault opens at dawn', { email: 'ada@example.com' });
  });

  it('reports a run-only password as repetitive, not as context-specific', () => {
    assert.deepEqual(checkPasswordPolicy('123456789012'), {
      ok: false,
      reasons: ['repetitive-or-sequential'],
    });
  });

  it('reports every reason that applies', () => {
    assert.deepEqual(checkPasswordPolicy('tresor'), {
      ok: false,
      reasons: ['too-short', 'context-specific'],
    });
  });
});

describe('password hashing', () => {
  it('hashes with argon2id at RFC 9106 §4 second recommended option (m=64 MiB, t=3, p=4, 128-bit salt, 256-bit tag)', async () => {
    assert.deepEqual(
      { ...ARGON2ID_OPTIONS },
      { algorithm: 2, memoryCost: 65_536, timeCost: 3, parallelism: 4, outputLen: 32 },
    );
    await atProductionCost(async () => {
      assert.deepEqual(argon2idOptions(), ARGON2ID_OPTIONS, 'no override outside the test runner');
      const hash = await hashPassword('correct horse battery staple');
      const match = /^\$argon2id\$v=19\$m=65536,t=3,p=4\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(hash);
      assert.ok(match, hash.split('$').slice(0, 4).join('$'));
      assert.equal(Buffer.from(match[1] ?? '', 'base64').length, 16, '128-bit salt');
      assert.equal(Buffer.from(match[2] ?? '', 'base64').length, 32, '256-bit tag');
      assert.equal(needsRehash(hash), false, 'a fresh hash needs no rehash');
      assert.equal(await verifyPassword(hash, 'correct horse battery staple'), true);
    });
  });

  it('asks for a rehash of a hash made at the former OWASP minimum (m=19456 KiB, t=2, p=1)', async () => {
    const former = await argon2Hash('correct horse battery staple', {
      ...ARGON2ID_OPTIONS,
      memoryCost: 19_456,
      timeCost: 2,
      parallelism: 1,
    });
    await atProductionCost(async () => assert.equal(needsRehash(former), true));
    assert.equal(await verifyPassword(former, 'correct horse battery staple'), true, 'and still verifies it');
  });

  it('keeps hashing when many passwords are hashed and verified at once (bounded slots, none lost)', async () => {
    const hashes = await Promise.all(
      Array.from({ length: 12 }, (_, i) => hashPassword(`passphrase number ${i}`)),
    );
    const verified = await Promise.all(hashes.map((h, i) => verifyPassword(h, `passphrase number ${i}`)));
    assert.deepEqual(verified, new Array(12).fill(true));
  });

  it('salts every hash', async () => {
    const [a, b] = await Promise.all([
      hashPassword('same password here'),
      hashPassword('same password here'),
    ]);
    assert.notEqual(a, b, 'two hashes of one password differ');
  });

  it('verifies the right password and refuses a wrong one', async () => {
    const hash = await hashPassword('correct horse battery staple');
    assert.equal(await verifyPassword(hash, 'correct horse battery staple'), true);
    assert.equal(await verifyPassword(hash, 'correct horse battery stapler'), false);
    assert.equal(await verifyPassword(hash, ''), false);
  });

  it('verifies a password typed in another Unicode form (NFKC before hashing)', async () => {
    const hash = await hashPassword('Ångström unit café');
    const decomposed = 'A\u030angstro\u0308m unit cafe\u0301';
    assert.notEqual(decomposed, 'Ångström unit café', 'the test input really is decomposed');
    assert.equal(await verifyPassword(hash, decomposed), true);
  });

  it('refuses, without throwing, a malformed hash or an over-long input', async () => {
    assert.equal(await verifyPassword('not a hash', 'whatever password'), false);
    const hash = await hashPassword('correct horse battery staple');
    assert.equal(await verifyPassword(hash, 'x'.repeat(1025)), false);
  });

  it('asks for a rehash when the stored hash used other parameters or another algorithm', async () => {
    const weaker = await argon2Hash('correct horse battery staple', {
      ...argon2idOptions(),
      memoryCost: 512,
    });
    const argon2i = await argon2Hash('correct horse battery staple', { ...argon2idOptions(), algorithm: 1 });
    assert.equal(needsRehash(weaker), true, 'm=512 is not today’s setting');
    assert.equal(needsRehash(argon2i), true, 'argon2i is not argon2id');
    assert.equal(needsRehash('$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234'), true, 'bcrypt');
    assert.equal(needsRehash(''), true, 'empty');
    assert.equal(
      await verifyPassword(weaker, 'correct horse battery staple'),
      true,
      'the old hash still verifies',
    );
  });
});
