import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type AadContext,
  CryptoError,
  type CryptoErrorCode,
  NONCE_BYTES,
  openEnvelope,
  readEnvelopeHeader,
  sealEnvelope,
  TAG_BYTES,
} from '../../src/crypto/index.ts';

const KEY = randomBytes(32);
const KEY_ID = 'dk_tenant-acme.v3';
const PURPOSE = 'field-value';
const CONTEXT = {
  tenant: 'acme',
  collection: 'patients',
  record: 'rec-0001',
  field: 'email',
  version: 3,
} as const;
const PLAINTEXT = Buffer.from('ada@example.org');
const HEADER_BYTES = 3 + KEY_ID.length;

function seal(plaintext: Uint8Array = PLAINTEXT, context: AadContext = CONTEXT): Buffer {
  return sealEnvelope(KEY, KEY_ID, plaintext, PURPOSE, context);
}

/** Runs `fn` and asserts it throws a CryptoError with one of `codes`: never success, never another error. */
function assertRefused(fn: () => unknown, codes: readonly CryptoErrorCode[], what = ''): void {
  let result: unknown;
  try {
    result = fn();
  } catch (err) {
    assert.ok(err instanceof CryptoError, `${what}: expected a CryptoError, got ${String(err)}`);
    assert.ok(codes.includes(err.code), `${what}: unexpected code ${err.code}`);
    return;
  }
  assert.fail(`${what}: expected a refusal, but it returned ${String(result)}`);
}

const TAMPER_CODES = [
  'TRESOR_ERR_DECRYPT_FAILED',
  'TRESOR_ERR_CIPHERTEXT_MALFORMED',
  'TRESOR_ERR_KEY_ID_MISMATCH',
] as const;
const TRUNCATION_CODES = ['TRESOR_ERR_CIPHERTEXT_MALFORMED', 'TRESOR_ERR_DECRYPT_FAILED'] as const;

describe('sealEnvelope / openEnvelope', () => {
  test('opens what it sealed', () => {
    assert.deepEqual(openEnvelope(KEY, KEY_ID, seal(), PURPOSE, CONTEXT), PLAINTEXT);
  });

  test('round-trips an empty plaintext', () => {
    assert.equal(openEnvelope(KEY, KEY_ID, seal(Buffer.alloc(0)), PURPOSE, CONTEXT).length, 0);
  });

  test('opens an envelope that sits at an offset inside a larger buffer', () => {
    const envelope = seal();
    const storage = Buffer.concat([Buffer.from('prefix'), envelope, Buffer.from('suffix')]);
    const view = new Uint8Array(storage.buffer, storage.byteOffset + 6, envelope.length);
    assert.deepEqual(openEnvelope(KEY, KEY_ID, view, PURPOSE, CONTEXT), PLAINTEXT);
  });

  test('lays out magic, version, key id, nonce, ciphertext and tag', () => {
    const envelope = seal();
    assert.equal(envelope[0], 0x54);
    assert.equal(envelope[1], 1);
    assert.equal(envelope[2], KEY_ID.length);
    assert.equal(envelope.subarray(3, HEADER_BYTES).toString('ascii'), KEY_ID);
    assert.equal(envelope.length, HEADER_BYTES + NONCE_BYTES + PLAINTEXT.length + TAG_BYTES);
    assert.equal(envelope.indexOf(PLAINTEXT), -1, 'plaintext must not appear in the envelope');
  });

  test('the header names the key id, readable without the key', () => {
    assert.deepEqual(readEnvelopeHeader(seal()), { format: 1, keyId: KEY_ID, headerLength: HEADER_BYTES });
  });

  test('refuses to seal under an invalid key id', () => {
    assertRefused(() => sealEnvelope(KEY, 'bad id', PLAINTEXT, PURPOSE, CONTEXT), ['TRESOR_ERR_KEY_INVALID']);
  });

  test('refuses to open with a key id other than the one in the header', () => {
    assertRefused(
      () => openEnvelope(KEY, 'dk_other', seal(), PURPOSE, CONTEXT),
      ['TRESOR_ERR_KEY_ID_MISMATCH'],
    );
  });

  test('refuses an envelope whose key id was rewritten, even when opened under the rewritten id', () => {
    const envelope = seal();
    const rewritten = Buffer.from(envelope);
    rewritten.write('dk_tenant-acme.v4', 3, 'ascii');
    assert.equal(readEnvelopeHeader(rewritten).keyId, 'dk_tenant-acme.v4');
    assertRefused(
      () => openEnvelope(KEY, 'dk_tenant-acme.v4', rewritten, PURPOSE, CONTEXT),
      ['TRESOR_ERR_DECRYPT_FAILED'],
    );
  });

  test('refuses the wrong key', () => {
    assertRefused(
      () => openEnvelope(randomBytes(32), KEY_ID, seal(), PURPOSE, CONTEXT),
      ['TRESOR_ERR_DECRYPT_FAILED'],
    );
  });

  test('refuses a different purpose', () => {
    assertRefused(
      () => openEnvelope(KEY, KEY_ID, seal(), 'blind-index', CONTEXT),
      ['TRESOR_ERR_DECRYPT_FAILED'],
    );
  });

  for (const component of Object.keys(CONTEXT) as (keyof typeof CONTEXT)[]) {
    test(`refuses the envelope when the context's ${component} is changed`, () => {
      const original = CONTEXT[component];
      const changed = typeof original === 'number' ? original + 1 : `${original}x`;
      assertRefused(
        () => openEnvelope(KEY, KEY_ID, seal(), PURPOSE, { ...CONTEXT, [component]: changed }),
        ['TRESOR_ERR_DECRYPT_FAILED'],
      );
    });

    test(`refuses the envelope when the context's ${component} is missing`, () => {
      const { [component]: _dropped, ...rest } = CONTEXT;
      assertRefused(() => openEnvelope(KEY, KEY_ID, seal(), PURPOSE, rest), ['TRESOR_ERR_DECRYPT_FAILED']);
    });
  }

  test('refuses the envelope when the version is given as a string instead of a number', () => {
    assertRefused(
      () => openEnvelope(KEY, KEY_ID, seal(), PURPOSE, { ...CONTEXT, version: '3' }),
      ['TRESOR_ERR_DECRYPT_FAILED'],
    );
  });

  test('refuses the envelope when the context gains an extra component', () => {
    assertRefused(
      () => openEnvelope(KEY, KEY_ID, seal(), PURPOSE, { ...CONTEXT, extra: '' }),
      ['TRESOR_ERR_DECRYPT_FAILED'],
    );
  });

  test('refuses a ciphertext moved to another record', () => {
    const fromRecordA = seal(PLAINTEXT, { ...CONTEXT, record: 'rec-A' });
    assertRefused(
      () => openEnvelope(KEY, KEY_ID, fromRecordA, PURPOSE, { ...CONTEXT, record: 'rec-B' }),
      ['TRESOR_ERR_DECRYPT_FAILED'],
    );
  });

  test('refuses a ciphertext moved to another tenant, even under the same key', () => {
    const fromTenantA = seal(PLAINTEXT, { ...CONTEXT, tenant: 'tenant-a' });
    assertRefused(
      () => openEnvelope(KEY, KEY_ID, fromTenantA, PURPOSE, { ...CONTEXT, tenant: 'tenant-b' }),
      ['TRESOR_ERR_DECRYPT_FAILED'],
    );
  });

  test('refuses every single-bit flip and every whole-byte flip at every position', () => {
    const envelope = seal();
    for (let i = 0; i < envelope.length; i++) {
      for (const mask of [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff]) {
        const tampered = Buffer.from(envelope);
        tampered[i] = (tampered[i] ?? 0) ^ mask;
        assertRefused(
          () => openEnvelope(KEY, KEY_ID, tampered, PURPOSE, CONTEXT),
          TAMPER_CODES,
          `byte ${i} ^ 0x${mask.toString(16)}`,
        );
      }
    }
  });

  test('refuses the envelope truncated to every shorter length', () => {
    const envelope = seal();
    for (let length = 0; length < envelope.length; length++) {
      assertRefused(
        () => openEnvelope(KEY, KEY_ID, envelope.subarray(0, length), PURPOSE, CONTEXT),
        TRUNCATION_CODES,
        `length ${length}`,
      );
    }
  });

  test('refuses the envelope with bytes appended', () => {
    const extended = Buffer.concat([seal(), Buffer.of(0)]);
    assertRefused(() => openEnvelope(KEY, KEY_ID, extended, PURPOSE, CONTEXT), ['TRESOR_ERR_DECRYPT_FAILED']);
  });

  test('refuses every unknown format version byte as malformed', () => {
    const envelope = seal();
    for (let version = 0; version < 256; version++) {
      if (version === 1) continue;
      const other = Buffer.from(envelope);
      other[1] = version;
      assertRefused(
        () => openEnvelope(KEY, KEY_ID, other, PURPOSE, CONTEXT),
        ['TRESOR_ERR_CIPHERTEXT_MALFORMED'],
        `version ${version}`,
      );
    }
  });

  test('uses a distinct nonce in each of 100,000 encryptions', () => {
    const nonces = new Set<string>();
    const count = 100_000;
    const plaintext = Buffer.from('x');
    for (let i = 0; i < count; i++) {
      const envelope = sealEnvelope(KEY, KEY_ID, plaintext, PURPOSE, CONTEXT);
      nonces.add(envelope.toString('hex', HEADER_BYTES, HEADER_BYTES + NONCE_BYTES));
    }
    assert.equal(nonces.size, count);
  });

  test('opens what it sealed and refuses any single-bit flip, for random plaintexts and contexts (property)', () => {
    const text = fc.string({ unit: 'binary', maxLength: 24 });
    const context = fc.record({
      tenant: text,
      collection: text,
      record: text,
      field: text,
      version: fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
    });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), context, fc.nat(), (plaintext, ctx, flip) => {
        const envelope = sealEnvelope(KEY, KEY_ID, plaintext, PURPOSE, ctx);
        assert.deepEqual(new Uint8Array(openEnvelope(KEY, KEY_ID, envelope, PURPOSE, ctx)), plaintext);
        const bit = flip % (envelope.length * 8);
        const tampered = Buffer.from(envelope);
        tampered[bit >> 3] = (tampered[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        assertRefused(() => openEnvelope(KEY, KEY_ID, tampered, PURPOSE, ctx), TAMPER_CODES, `bit ${bit}`);
      }),
      { numRuns: 500 },
    );
  });
});

describe('readEnvelopeHeader', () => {
  const malformed = (bytes: Uint8Array, what: string) =>
    assertRefused(() => readEnvelopeHeader(bytes), ['TRESOR_ERR_CIPHERTEXT_MALFORMED'], what);

  test('refuses input that is empty, too short or lacks the magic byte', () => {
    malformed(Buffer.alloc(0), 'empty');
    malformed(Buffer.of(0x54, 1), 'two bytes');
    const envelope = seal();
    const noMagic = Buffer.from(envelope);
    noMagic[0] = 0x55;
    malformed(noMagic, 'magic');
  });

  test('refuses a zero-length key id', () => {
    const envelope = seal();
    const empty = Buffer.concat([Buffer.of(0x54, 1, 0), envelope.subarray(HEADER_BYTES)]);
    malformed(empty, 'empty key id');
  });

  test('refuses a key id with characters outside [A-Za-z0-9._:-] as malformed', () => {
    const envelope = seal();
    for (const byte of [0x20, 0x2f, 0x5f + 1, 0x00, 0x7f]) {
      const bad = Buffer.from(envelope);
      bad[5] = byte;
      malformed(bad, `byte 0x${byte.toString(16)}`);
    }
  });

  test('refuses a key id byte with the high bit set instead of reading it as ASCII', () => {
    const envelope = seal();
    for (let i = 3; i < HEADER_BYTES; i++) {
      const bad = Buffer.from(envelope);
      bad[i] = (bad[i] ?? 0) | 0x80;
      malformed(bad, `byte ${i}`);
    }
  });

  test('refuses a key id length that runs past the end of the envelope', () => {
    const envelope = seal(Buffer.alloc(0));
    const bad = Buffer.from(envelope);
    bad[2] = 255;
    malformed(bad, 'length 255');
  });
});
