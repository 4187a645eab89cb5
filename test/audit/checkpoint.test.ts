import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, test } from 'node:test';
import { leafBytes } from '../../src/audit/canonical.ts';
import {
  type Checkpoint,
  CheckpointError,
  formatCheckpoint,
  parseCheckpoint,
  signCheckpoint,
  verifyCheckpoint,
} from '../../src/audit/checkpoint.ts';
import {
  consistencyProof,
  emptyRoot,
  InMemoryMerkleTree,
  inclusionProof,
  leafHash,
  MerkleAccumulator,
} from '../../src/audit/merkle.ts';
import { ed25519NoteSigner, ed25519VerifierKey, parseNote, parseVerifierKey } from '../../src/audit/note.ts';
import { ed25519PublicKey, signEd25519 } from '../../src/keyd/signing.ts';
import {
  independentLeafHash,
  independentOpenCheckpoint,
  independentVerifyConsistency,
  independentVerifyInclusion,
} from './independent-verifier.ts';

// The example of c2sp.org/tlog-checkpoint (its signature is by a key the spec does not publish).
const SPEC_NOTE =
  'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n' +
  '— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n';

function freshLogKey(name: string) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  return {
    signer: ed25519NoteSigner({ name, publicKey: raw }, async (m) => sign(null, m, privateKey)),
    vkey: ed25519VerifierKey(name, raw),
  };
}

function malformedCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof CheckpointError ? err.code : `not a CheckpointError: ${String(err)}`;
  }
  return undefined;
}

describe('c2sp.org/tlog-checkpoint note text', () => {
  test('parses the spec example: origin, tree size, root hash', () => {
    const { text } = parseNote(SPEC_NOTE);
    const cp = parseCheckpoint(text);
    assert.equal(cp.origin, 'example.com/behind-the-sofa');
    assert.equal(cp.size, 20852163);
    assert.equal(cp.rootHash.toString('base64'), 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=');
    assert.deepEqual(cp.extensions, []);
    assert.equal(formatCheckpoint(cp), text, 'formatting gives the same text back');
  });

  test('formats origin, decimal size and base64 root hash one per line, then extension lines', () => {
    const cp: Checkpoint = {
      origin: 'tresor.example/audit',
      size: 0,
      rootHash: emptyRoot(),
      extensions: ['ext one', 'ext two'],
    };
    const text = formatCheckpoint(cp);
    assert.equal(
      text,
      'tresor.example/audit\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\next two\n',
    );
    assert.deepEqual(parseCheckpoint(text), cp);
  });

  test('refuses sizes that are not canonical decimals or exceed 2^53 - 1', () => {
    const root = 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=';
    for (const size of ['007', '+5', '-1', '1e3', ' 5', '5 ', '0x10', '', '١٢', '9007199254740992']) {
      const code = malformedCode(() => parseCheckpoint(`o\n${size}\n${root}\n`));
      assert.equal(code, 'TRESOR_ERR_CHECKPOINT_MALFORMED', `size ${JSON.stringify(size)}`);
    }
    assert.equal(parseCheckpoint(`o\n9007199254740991\n${root}\n`).size, Number.MAX_SAFE_INTEGER);
  });

  test('refuses root hashes that are not canonical base64 of 32 bytes', () => {
    const good = 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=';
    const short = Buffer.alloc(31).toString('base64');
    for (const root of [
      short,
      good.slice(0, -1),
      `${good}=`,
      good.replace('2I=', '2J='),
      good.replace('/', '_'),
      '',
    ]) {
      assert.equal(
        malformedCode(() => parseCheckpoint(`o\n1\n${root}\n`)),
        'TRESOR_ERR_CHECKPOINT_MALFORMED',
        `root ${JSON.stringify(root)}`,
      );
    }
  });

  test('refuses fewer than three lines, empty lines, a missing final newline and control characters', () => {
    const root = 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=';
    for (const text of [
      'o\n1\n',
      `o\n1\n${root}`,
      `\n1\n${root}\n`,
      `o\n1\n${root}\n\next\n`,
      `o\n1\n${root}\n\n`,
      `o\r\n1\n${root}\n`,
      `o\n1\n${root}\next\there\n`,
    ]) {
      assert.equal(
        malformedCode(() => parseCheckpoint(text)),
        'TRESOR_ERR_CHECKPOINT_MALFORMED',
        JSON.stringify(text),
      );
    }
  });

  test('refuses to format an origin with a space or plus, a bad size, a short root, or an empty extension', () => {
    const base: Checkpoint = {
      origin: 'tresor.example/audit',
      size: 1,
      rootHash: emptyRoot(),
      extensions: [],
    };
    for (const bad of [
      { ...base, origin: 'has space' },
      { ...base, origin: 'a+b' },
      { ...base, origin: '' },
      { ...base, size: -1 },
      { ...base, size: 1.5 },
      { ...base, rootHash: Buffer.alloc(31) },
      { ...base, extensions: [''] },
      { ...base, extensions: ['two\nlines'] },
    ]) {
      assert.equal(
        malformedCode(() => formatCheckpoint(bad)),
        'TRESOR_ERR_CHECKPOINT_MALFORMED',
        JSON.stringify(bad),
      );
    }
  });
});

describe('signed checkpoints', () => {
  const origin = 'tresor.example/audit';
  const checkpoint: Checkpoint = {
    origin,
    size: 3,
    rootHash: leafHash(Buffer.from('not a real root')),
    extensions: [],
  };

  test('sign and verify round-trip; the key name may equal the origin', async () => {
    const key = freshLogKey(origin);
    const note = await signCheckpoint(checkpoint, [key.signer]);
    const { checkpoint: got, verified } = verifyCheckpoint(note, [parseVerifierKey(key.vkey)], { origin });
    assert.deepEqual(got, checkpoint);
    assert.equal(verified[0]?.name, origin);
  });

  test('refuses a checkpoint of another origin when the origin is pinned', async () => {
    const key = freshLogKey('tresor-keyd/audit-checkpoint');
    const note = await signCheckpoint({ ...checkpoint, origin: 'other.example/log' }, [key.signer]);
    assert.throws(() => verifyCheckpoint(note, [parseVerifierKey(key.vkey)], { origin }), {
      code: 'TRESOR_ERR_CHECKPOINT_ORIGIN_MISMATCH',
    });
  });

  test('refuses a checkpoint whose size or root was changed after signing', async () => {
    const key = freshLogKey(origin);
    const note = await signCheckpoint(checkpoint, [key.signer]);
    const verifier = parseVerifierKey(key.vkey);
    assert.throws(() => verifyCheckpoint(note.replace('\n3\n', '\n4\n'), [verifier]), {
      code: 'TRESOR_ERR_NOTE_SIGNATURE_INVALID',
    });
    const root = checkpoint.rootHash.toString('base64');
    const otherRoot = emptyRoot().toString('base64');
    assert.throws(() => verifyCheckpoint(note.replace(root, otherRoot), [verifier]), {
      code: 'TRESOR_ERR_NOTE_SIGNATURE_INVALID',
    });
  });

  test('refuses a checkpoint signed only by an unknown key, and ignores extra cosignatures', async () => {
    const log = freshLogKey(origin);
    const witness = freshLogKey('witness.example/w1');
    const note = await signCheckpoint(checkpoint, [log.signer, witness.signer]);
    const result = verifyCheckpoint(note, [parseVerifierKey(log.vkey)]);
    assert.deepEqual(
      result.unverified.map((s) => s.name),
      ['witness.example/w1'],
    );
    assert.throws(() => verifyCheckpoint(note, [parseVerifierKey(freshLogKey(origin).vkey)]), {
      code: 'TRESOR_ERR_NOTE_UNVERIFIED',
    });
  });

  test('the spec example parses as a note but, its key unpublished, does not verify', () => {
    assert.throws(
      () => verifyCheckpoint(SPEC_NOTE, [parseVerifierKey(freshLogKey('example.com/behind-the-sofa').vkey)]),
      {
        code: 'TRESOR_ERR_NOTE_UNVERIFIED',
      },
    );
  });

  test('a checkpoint signed with the Go example key opens with the Go verifier key in the independent verifier', async () => {
    const seed = Buffer.from('AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz', 'base64').subarray(1);
    const signer = ed25519NoteSigner({ name: 'PeterNeumann', publicKey: ed25519PublicKey(seed) }, async (m) =>
      signEd25519(seed, m),
    );
    const note = await signCheckpoint({ ...checkpoint, origin: 'PeterNeumann' }, [signer]);
    const cp = independentOpenCheckpoint(
      note,
      'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    );
    assert.equal(cp.origin, 'PeterNeumann');
    assert.equal(cp.size, 3n);
    assert.deepEqual(cp.root, checkpoint.rootHash);
  });
});

describe('an outside verifier checks a Tresor log with nothing of ours', () => {
  test('checkpoints, inclusion and consistency proofs of a 1000-entry log verify independently', async () => {
    const origin = 'tresor.example/audit';
    const key = freshLogKey('tresor-keyd/audit-checkpoint');
    const entries = Array.from({ length: 1000 }, (_, i) => ({
      seq: i + 1,
      at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
      actor: { kind: 'staff', id: `st_${i % 7}` },
      tenant: `tn_${i % 3}`,
      action: i % 2 ? 'record.read' : 'record.update',
      outcome: 'success',
    }));
    const tree = new InMemoryMerkleTree();
    const acc = new MerkleAccumulator();
    const notes = new Map<number, string>();
    for (const entry of entries) {
      const h = leafHash(leafBytes(entry));
      tree.append(h);
      acc.append(h);
      if ([1, 2, 17, 512, 999, 1000].includes(acc.size)) {
        notes.set(
          acc.size,
          await signCheckpoint({ origin, size: acc.size, rootHash: acc.root(), extensions: [] }, [
            key.signer,
          ]),
        );
      }
    }

    const opened = new Map(
      [...notes].map(([size, note]) => [size, independentOpenCheckpoint(note, key.vkey)]),
    );
    for (const [size, cp] of opened) {
      assert.equal(cp.origin, origin);
      assert.equal(cp.size, BigInt(size));
    }

    let inclusions = 0;
    for (const [size, cp] of opened) {
      for (const index of [0, Math.floor(size / 2), size - 1]) {
        // The outside verifier holds the entry as JSON and hashes its canonical form itself.
        const leaf = independentLeafHash(Buffer.from(JSON.stringify(sortKeysDeep(entries[index])), 'utf8'));
        const proof = inclusionProof(tree, index, size);
        assert.ok(
          independentVerifyInclusion(leaf, BigInt(index), cp.size, proof, cp.root),
          `entry ${index} in ${size}`,
        );
        inclusions += 1;
      }
    }
    assert.equal(inclusions, 18);

    const sizes = [...opened.keys()];
    for (const from of sizes) {
      for (const to of sizes) {
        if (from > to) continue;
        const a = opened.get(from);
        const b = opened.get(to);
        assert.ok(a !== undefined && b !== undefined, 'both checkpoints were opened');
        const proof = consistencyProof(tree, from, to);
        assert.ok(
          independentVerifyConsistency(a.size, b.size, proof, a.root, b.root),
          `consistency ${from} → ${to}`,
        );
      }
    }
  });
});

// For these ASCII-keyed entries JSON.stringify with sorted keys is their RFC 8785 form.
function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(obj)
        .sort()
        .map((k) => [k, sortKeysDeep(obj[k])]),
    );
  }
  return value;
}
