import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  ed25519KeyId,
  ed25519NoteSigner,
  ed25519VerifierKey,
  formatNote,
  MAX_NOTE_SIGNATURES,
  NoteError,
  type NoteVerifier,
  openNote,
  parseNote,
  parseVerifierKey,
  signNote,
} from '../../src/audit/note.ts';
import { ed25519PublicKey, noteKeyId, noteVerifierKey, signEd25519 } from '../../src/keyd/signing.ts';
import { independentOpenNote } from './independent-verifier.ts';

/** The example of golang.org/x/mod/sumdb/note (note.go package doc and note_test.go). */
const GO = {
  vkey: 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
  // PRIVATE+KEY+PeterNeumann+c74f20a3+<base64(0x01 || 32-byte Ed25519 seed)>
  skey: 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz',
  text: "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n",
  peterSig:
    '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n',
  enochVkey: 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop',
  enochSig:
    '— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n',
};
const GO_NOTE = `${GO.text}\n${GO.peterSig}`;
const GO_SEED = Buffer.from(GO.skey.split('+').slice(4).join('+'), 'base64').subarray(1); // base64 may hold '+'

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof NoteError ? err.code : `not a NoteError: ${String(err)}`;
  }
  return undefined;
}

/** A fresh Ed25519 key with a keyd-like asynchronous sign function. */
function freshKey(name: string) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  const signer = ed25519NoteSigner({ name, publicKey: raw }, async (m) => sign(null, m, privateKey));
  return { raw, signer, vkey: ed25519VerifierKey(name, raw) };
}

describe('the Go sumdb/note reference example', () => {
  test('parses the PeterNeumann verifier key: name, key ID c74f20a3, 32-byte Ed25519 key', () => {
    const v = parseVerifierKey(GO.vkey);
    assert.equal(v.name, 'PeterNeumann');
    assert.equal(v.keyId, 0xc74f20a3);
    assert.equal(v.publicKey.length, 32);
    assert.deepEqual(v.publicKey, ed25519PublicKey(GO_SEED), 'the public key of the example seed');
    assert.equal(ed25519VerifierKey('PeterNeumann', v.publicKey), GO.vkey, 'encodes back to the same string');
  });

  test('signing the example text with the example key reproduces the published note byte for byte', async () => {
    const signer = ed25519NoteSigner(
      { name: 'PeterNeumann', publicKey: ed25519PublicKey(GO_SEED) },
      async (m) => signEd25519(GO_SEED, m),
    );
    assert.equal(await signNote(GO.text, [signer]), GO_NOTE);
  });

  test('opens the published note with the PeterNeumann key, as does the independent verifier', () => {
    const opened = openNote(GO_NOTE, [parseVerifierKey(GO.vkey)]);
    assert.equal(opened.text, GO.text);
    assert.deepEqual(
      opened.verified.map((s) => [s.name, s.keyId]),
      [['PeterNeumann', 0xc74f20a3]],
    );
    assert.equal(independentOpenNote(GO_NOTE, GO.vkey), GO.text);
  });

  test('refuses every truncation and every single-byte change of the verifier key', () => {
    const b = Buffer.from(GO.vkey);
    const mangled: string[] = [];
    for (let i = 0; i <= b.length; i++) {
      for (let j = i + 1; j <= b.length; j++)
        if (i !== 0 || j !== b.length) mangled.push(b.subarray(i, j).toString());
    }
    for (let i = 0; i < b.length; i++) {
      const c = Buffer.from(b);
      c[i] = (c[i] as number) + 1;
      mangled.push(c.toString());
    }
    mangled.push('PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=='); // wrong key length
    mangled.push('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'); // unknown algorithm
    for (const k of mangled)
      assert.equal(
        codeOf(() => parseVerifierKey(k)),
        'TRESOR_ERR_NOTE_KEY_INVALID',
        k,
      );
  });

  test('verifies the signature of a known key and ignores the signature of an unknown key', () => {
    const note = `${GO.text}\n${GO.peterSig}${GO.enochSig}`;
    const peter = parseVerifierKey(GO.vkey);
    const enoch = parseVerifierKey(GO.enochVkey);
    const one = openNote(note, [peter]);
    assert.deepEqual(
      one.verified.map((s) => s.name),
      ['PeterNeumann'],
    );
    assert.deepEqual(
      one.unverified.map((s) => [s.name, s.keyId]),
      [['EnochRoot', 0xaf0cfe78]],
    );
    const both = openNote(note, [peter, enoch]);
    assert.deepEqual(
      both.verified.map((s) => s.name),
      ['PeterNeumann', 'EnochRoot'],
    );
    assert.equal(both.unverified.length, 0);
    assert.equal(
      codeOf(() => openNote(note, [])),
      'TRESOR_ERR_NOTE_UNVERIFIED',
    );
  });

  test('refuses the whole note when a signature by a known key does not verify', () => {
    const corrupt = `${GO.text}\n${GO.peterSig.slice(0, 60)}ABCD${GO.peterSig.slice(60)}`;
    assert.equal(
      codeOf(() => openNote(corrupt, [parseVerifierKey(GO.vkey)])),
      'TRESOR_ERR_NOTE_SIGNATURE_INVALID',
    );
    const tampered = GO_NOTE.replace('cryptography', 'cryptographY');
    assert.equal(
      codeOf(() => openNote(tampered, [parseVerifierKey(GO.vkey)])),
      'TRESOR_ERR_NOTE_SIGNATURE_INVALID',
    );
    assert.throws(
      () => independentOpenNote(tampered, GO.vkey),
      /bad signature/,
      'the independent verifier refuses it too',
    );
  });

  test('treats a signature whose name or key ID differs from the known key as unknown', () => {
    const peter = parseVerifierKey(GO.vkey);
    const misnamed = `${GO.text}\n${GO.peterSig.replace('PeterNeumann', 'CarmenSandiego')}`;
    assert.equal(
      codeOf(() => openNote(misnamed, [peter])),
      'TRESOR_ERR_NOTE_UNVERIFIED',
    );
    const wrongId = `${GO.text}\n${GO.peterSig.replace('x08g', 'xxxx')}`;
    assert.equal(
      codeOf(() => openNote(wrongId, [peter])),
      'TRESOR_ERR_NOTE_UNVERIFIED',
    );
  });

  test('lists repeated signatures by one key once', () => {
    const opened = openNote(`${GO.text}\n${GO.peterSig}${GO.peterSig}`, [parseVerifierKey(GO.vkey)]);
    assert.equal(opened.verified.length, 1);
  });

  test("refuses the Go reference's malformed notes", () => {
    const bad = [
      GO.text,
      `${GO.text}\n`,
      `${GO.text}\n${GO.peterSig.slice(0, -1)}`,
      `\u0001${GO.text}\n${GO.peterSig}`,
      `${GO.text}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${GO.text}\n${GO.peterSig}Unexpected line.\n`,
    ];
    for (const msg of bad) {
      assert.equal(
        codeOf(() => openNote(msg, [parseVerifierKey(GO.vkey)])),
        'TRESOR_ERR_NOTE_MALFORMED',
        msg,
      );
    }
    const invalidUtf8 = Buffer.concat([Buffer.of(0xff), Buffer.from(GO_NOTE)]);
    assert.equal(
      codeOf(() => parseNote(invalidUtf8)),
      'TRESOR_ERR_NOTE_MALFORMED',
      'a 0xff byte is not UTF-8',
    );
  });

  test(`refuses more than ${MAX_NOTE_SIGNATURES} signatures and accepts exactly that many`, () => {
    const peter = parseVerifierKey(GO.vkey);
    const tooMany = `${GO.text}\n${GO.peterSig.repeat(MAX_NOTE_SIGNATURES + 1)}`;
    assert.equal(
      codeOf(() => openNote(tooMany, [peter])),
      'TRESOR_ERR_NOTE_MALFORMED',
    );
    const enough = `${GO.text}\n${GO.peterSig.repeat(MAX_NOTE_SIGNATURES)}`;
    assert.equal(openNote(enough, [peter]).text, GO.text);
  });
});

describe('c2sp.org/signed-note', () => {
  test('separates the text from the signatures at the last blank line (the spec example)', () => {
    const note =
      'Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n' +
      '— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n';
    const parsed = parseNote(note);
    assert.equal(
      parsed.text,
      'Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n',
    );
    assert.equal(parsed.signatures.length, 1);
    const [sig] = parsed.signatures;
    assert.equal(sig?.name, 'quasimodo.example/salvatore');
    assert.equal(sig?.keyId, 0x367ba04b, 'key ID is the first four signature bytes, big-endian');
    assert.equal(sig?.signature.length, 64);
    assert.equal(formatNote(parsed), note, 'formatting the parsed note gives it back');
  });

  test('a note signed with a fresh Ed25519 key opens with its verifier key and with the independent verifier', async () => {
    const key = freshKey('tresor.example/test-log');
    const text = 'line one\n\nline three after an empty line\n';
    const note = await signNote(text, [key.signer]);
    assert.ok(note.startsWith(`${text}\n— tresor.example/test-log `), 'text, blank line, signature line');
    const opened = openNote(note, [parseVerifierKey(key.vkey)]);
    assert.equal(opened.text, text);
    assert.equal(opened.verified[0]?.keyId, ed25519KeyId('tresor.example/test-log', key.raw));
    assert.equal(independentOpenNote(note, key.vkey), text);
  });

  test("agrees with keyd's note key helpers (src/keyd/signing.ts)", () => {
    const key = freshKey('tresor-keyd/audit-checkpoint');
    assert.equal(noteVerifierKey('tresor-keyd/audit-checkpoint', key.raw), key.vkey);
    assert.equal(noteKeyId('tresor-keyd/audit-checkpoint', key.raw).readUInt32BE(0), key.signer.keyId);
  });

  test('a signer whose signature does not verify under its public key is refused before anything is written', async () => {
    const key = freshKey('tresor.example/log');
    const other = generateKeyPairSync('ed25519').privateKey;
    const wrong = ed25519NoteSigner({ name: 'tresor.example/log', publicKey: key.raw }, async (m) =>
      sign(null, m, other),
    );
    await assert.rejects(signNote('text\n', [wrong]), { code: 'TRESOR_ERR_NOTE_SIGNATURE_INVALID' });
  });

  test('signing needs text ending in a newline, without control characters, and at least one signer', async () => {
    const key = freshKey('tresor.example/log');
    await assert.rejects(signNote('no newline', [key.signer]), { code: 'TRESOR_ERR_NOTE_MALFORMED' });
    await assert.rejects(signNote('tab\there\n', [key.signer]), { code: 'TRESOR_ERR_NOTE_MALFORMED' });
    await assert.rejects(signNote('lone \ud800 surrogate\n', [key.signer]), {
      code: 'TRESOR_ERR_NOTE_MALFORMED',
    });
    await assert.rejects(signNote('text\n', []), { code: 'TRESOR_ERR_NOTE_MALFORMED' });
  });

  test('refuses key names with a space or a plus, in signature lines and in verifier keys', async () => {
    const key = freshKey('ok');
    for (const name of ['has space', 'has+plus', 'no\u00a0break', '']) {
      assert.equal(
        codeOf(() => ed25519VerifierKey(name, key.raw)),
        'TRESOR_ERR_NOTE_KEY_INVALID',
        `name ${name}`,
      );
    }
    const note = await signNote('text\n', [key.signer]);
    assert.equal(
      codeOf(() => parseNote(note.replace('— ok ', '— o+k '))),
      'TRESOR_ERR_NOTE_MALFORMED',
    );
    assert.equal(
      codeOf(() => parseNote(note.replace('— ok ', '— ok  '))),
      'TRESOR_ERR_NOTE_MALFORMED',
    );
  });

  test('refuses signatures that are not canonical base64 of a key ID and at least one signature byte', async () => {
    const key = freshKey('k');
    const note = await signNote('text\n', [key.signer]);
    const b64 = note.slice(note.lastIndexOf(' ') + 1, -1);
    for (const bad of [
      b64.replace(/=+$/, ''),
      `${b64}=`,
      `${b64} `,
      b64.replace(/^./, '*'),
      'AAAAAA==',
      '',
    ]) {
      assert.equal(
        codeOf(() => parseNote(note.replace(b64, bad))),
        'TRESOR_ERR_NOTE_MALFORMED',
        `signature ${bad}`,
      );
    }
    // Four key ID bytes and one signature byte is well-formed (then fails verification, not parsing).
    assert.equal(parseNote(note.replace(b64, 'AAAAAAA=')).signatures[0]?.signature.length, 1);
  });

  test('refuses carriage returns and other control characters anywhere in the note', async () => {
    const key = freshKey('k');
    const note = await signNote('text\n', [key.signer]);
    for (const bad of [
      note.replace('text', 'te\rxt'),
      note.replace('\n— ', '\r\n— '),
      `${note.slice(0, -1)}\r\n`,
    ]) {
      assert.equal(
        codeOf(() => parseNote(bad)),
        'TRESOR_ERR_NOTE_MALFORMED',
        JSON.stringify(bad),
      );
    }
    assert.equal(
      codeOf(() => parseNote(`${note.slice(0, 4)}\ud800${note.slice(4)}`)),
      'TRESOR_ERR_NOTE_MALFORMED',
    );
  });

  test('refuses verifier keys with an unsupported signature type or a key of the wrong length', () => {
    const key = freshKey('k');
    const data = Buffer.concat([Buffer.of(0x02), key.raw]);
    const ecdsaLike = `k+${keyIdHex('k', data)}+${data.toString('base64')}`;
    assert.equal(
      codeOf(() => parseVerifierKey(ecdsaLike)),
      'TRESOR_ERR_NOTE_KEY_INVALID',
    );
    assert.equal(
      codeOf(() => ed25519VerifierKey('k', key.raw.subarray(1))),
      'TRESOR_ERR_NOTE_KEY_INVALID',
    );
  });

  test('refuses to choose between two different verifiers with the same name and key ID', async () => {
    const a = freshKey('log');
    const real = parseVerifierKey(a.vkey);
    const impostor: NoteVerifier = { ...real, publicKey: Buffer.alloc(32, 7), verify: () => true };
    const note = await signNote('text\n', [a.signer]);
    assert.equal(
      codeOf(() => openNote(note, [real, impostor])),
      'TRESOR_ERR_NOTE_KEY_INVALID',
    );
    assert.equal(
      openNote(note, [real, parseVerifierKey(a.vkey)]).verified.length,
      1,
      'the same key twice is fine',
    );
  });
});

// The key ID of arbitrary key data (type byte included), to build verifier keys of other signature types.
function keyIdHex(name: string, data: Buffer): string {
  return createHash('sha256').update(`${name}\n`).update(data).digest().subarray(0, 4).toString('hex');
}
