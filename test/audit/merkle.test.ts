import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { CanonicalJsonError, canonicalJson, leafBytes } from '../../src/audit/canonical.ts';
import {
  consistencyProof,
  emptyRoot,
  type HashSource,
  InMemoryMerkleTree,
  inclusionProof,
  leafHash,
  MerkleAccumulator,
  MerkleError,
  nodeHash,
  rootFromLeafHashes,
  subtreeRoot,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle.ts';
import {
  independentLeafHash,
  independentVerifyConsistency,
  independentVerifyInclusion,
} from './independent-verifier.ts';

const hex = (h: string) => Buffer.from(h, 'hex');
const b64 = (s: string) => Buffer.from(s, 'base64');

// A naive MTH straight from RFC 9162 §2.1.1, over leaf inputs, for comparison.
function naiveMth(inputs: readonly Buffer[]): Buffer {
  const sha = (...parts: Buffer[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();
  if (inputs.length === 0) return sha();
  if (inputs.length === 1) return sha(Buffer.of(0), inputs[0] as Buffer);
  let k = 1;
  while (k * 2 < inputs.length) k *= 2;
  return sha(Buffer.of(1), naiveMth(inputs.slice(0, k)), naiveMth(inputs.slice(k)));
}

// Deterministic pseudo-random leaf inputs of varying length.
function leafInputs(count: number, seed: string): Buffer[] {
  return Array.from({ length: count }, (_, i) =>
    Buffer.concat([
      Buffer.from(`${i}:`),
      createHash('sha256')
        .update(`${seed}/${i}`)
        .digest()
        .subarray(0, i % 33),
    ]),
  );
}

/**
 * Certificate Transparency's 8-leaf reference tree, as kept by transparency-dev/merkle
 * (testonly/constants.go: LeafInputs, NodeHashes, RootHashes; proof/verify_test.go: inclusionProofs,
 * consistencyProofs), which carries over the test data of the RFC 6962 C++ implementation
 * (google/certificate-transparency, merkletree test).
 */
const CT = {
  leaves: [
    '',
    '00',
    '10',
    '2021',
    '3031',
    '40414243',
    '5051525354555657',
    '606162636465666768696a6b6c6d6e6f',
  ].map(hex),
  roots: [
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
    '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
    'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
    '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
  ],
  nodes: [
    [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
      '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      '4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      '46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1',
    ],
    [
      'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
    ],
    [
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
    ['5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328'],
  ],
  // Leaf numbers are 1-based there: { leaf: 1, size: 8 } is index 0.
  inclusion: [
    {
      leaf: 1,
      size: 8,
      proof: [
        '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
        '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
        '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
      ],
    },
    {
      leaf: 6,
      size: 8,
      proof: [
        'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
        'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
        'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
      ],
    },
    { leaf: 3, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
    {
      leaf: 2,
      size: 5,
      proof: [
        '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
        '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
        'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      ],
    },
  ],
  consistency: [
    { size1: 1, size2: 1, proof: [] },
    {
      size1: 1,
      size2: 8,
      proof: [
        '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
        '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
        '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
      ],
    },
    {
      size1: 6,
      size2: 8,
      proof: [
        '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
        'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
        'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
      ],
    },
    {
      size1: 2,
      size2: 5,
      proof: [
        '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
        'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      ],
    },
    {
      size1: 6,
      size2: 7,
      proof: [
        '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
        'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
        'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
      ],
    },
  ],
};

describe('RFC 9162 §2.1.1 hashing', () => {
  test('the empty tree hashes to SHA-256 of the empty string', () => {
    assert.equal(emptyRoot().toString('hex'), CT.roots[0]);
    assert.equal(rootFromLeafHashes([]).toString('hex'), CT.roots[0]);
    assert.equal(new MerkleAccumulator().root().toString('hex'), CT.roots[0]);
  });

  test('a leaf hash is SHA-256 of 0x00 and the leaf, an interior node SHA-256 of 0x01, left and right', () => {
    const sha = (b: Buffer) => createHash('sha256').update(b).digest();
    const [a, b] = [Buffer.from('left'), Buffer.from('right')];
    assert.deepEqual(leafHash(a), sha(Buffer.concat([Buffer.of(0), a])));
    assert.deepEqual(nodeHash(a, b), sha(Buffer.concat([Buffer.of(1), a, b])));
    assert.equal(leafHash(Buffer.alloc(0)).toString('hex'), CT.roots[1]);
  });
});

describe("Certificate Transparency's 8-leaf reference tree", () => {
  const hashes = CT.leaves.map(leafHash);
  const tree = new InMemoryMerkleTree();
  for (const h of hashes) tree.append(h);

  test('the root at every size 0..8 is the reference root', () => {
    const acc = new MerkleAccumulator();
    for (let size = 0; size <= 8; size++) {
      const want = CT.roots[size];
      assert.equal(
        rootFromLeafHashes(hashes.slice(0, size)).toString('hex'),
        want,
        `rootFromLeafHashes(${size})`,
      );
      assert.equal(acc.root().toString('hex'), want, `accumulator at ${size}`);
      assert.equal(tree.root(size).toString('hex'), want, `in-memory tree at ${size}`);
      assert.equal(naiveMth(CT.leaves.slice(0, size)).toString('hex'), want, `naive MTH at ${size}`);
      if (size < 8) acc.append(hashes[size] as Buffer);
    }
  });

  test('every complete subtree has the reference node hash', () => {
    CT.nodes.forEach((level, l) => {
      level.forEach((want, i) => {
        assert.equal(tree.perfectSubtreeHash(l, i).toString('hex'), want, `node level ${l} index ${i}`);
      });
    });
  });

  test('inclusion proofs are generated exactly as the reference proofs and verify', () => {
    for (const v of CT.inclusion) {
      const index = v.leaf - 1;
      const want = v.proof;
      assert.deepEqual(
        inclusionProof(hashes, index, v.size).map((h) => h.toString('hex')),
        want,
        `${index}/${v.size}`,
      );
      assert.deepEqual(
        inclusionProof(tree, index, v.size).map((h) => h.toString('hex')),
        want,
        `${index}/${v.size}`,
      );
      const root = hex(CT.roots[v.size] as string);
      const ok = verifyInclusion(hashes[index] as Buffer, index, v.size, want.map(hex), root);
      assert.equal(ok, true, `reference inclusion proof ${index}/${v.size} verifies`);
    }
  });

  test('consistency proofs are generated exactly as the reference proofs and verify', () => {
    for (const v of CT.consistency) {
      const label = `${v.size1} → ${v.size2}`;
      assert.deepEqual(
        consistencyProof(hashes, v.size1, v.size2).map((h) => h.toString('hex')),
        v.proof,
        label,
      );
      assert.deepEqual(
        consistencyProof(tree, v.size1, v.size2).map((h) => h.toString('hex')),
        v.proof,
        label,
      );
      const [root1, root2] = [hex(CT.roots[v.size1] as string), hex(CT.roots[v.size2] as string)];
      assert.equal(verifyConsistency(v.size1, v.size2, v.proof.map(hex), root1, root2), true, label);
    }
  });
});

describe('transparency-dev/merkle proof vectors (test/fixtures/rfc9162)', () => {
  const root = join(import.meta.dirname, '..', 'fixtures', 'rfc9162');
  const walk = (dir: string): string[] =>
    readdirSync(dir)
      .sort()
      .flatMap((name) => {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) return walk(path);
        return name.endsWith('.json') ? [path] : [];
      });
  const inclusionFiles = walk(join(root, 'inclusion'));
  const consistencyFiles = walk(join(root, 'consistency'));

  test('every vector file is found: 98 inclusion and 98 consistency vectors', () => {
    assert.equal(inclusionFiles.length, 98, 'inclusion vector count');
    assert.equal(consistencyFiles.length, 98, 'consistency vector count');
  });

  describe('inclusion: the verifier accepts exactly the vectors with wantErr false', () => {
    for (const file of inclusionFiles) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as {
        leafIdx: number;
        treeSize: number;
        root: string;
        leafHash: string;
        proof: string[] | null;
        wantErr: boolean;
      };
      test(`${relative(root, file)} is ${v.wantErr ? 'refused' : 'accepted'}`, () => {
        const proof = (v.proof ?? []).map(b64);
        const ok = verifyInclusion(b64(v.leafHash), v.leafIdx, v.treeSize, proof, b64(v.root));
        assert.equal(ok, !v.wantErr, 'src/audit verifier');
        const other = independentVerifyInclusion(
          b64(v.leafHash),
          BigInt(v.leafIdx),
          BigInt(v.treeSize),
          proof,
          b64(v.root),
        );
        assert.equal(other, !v.wantErr, 'independent verifier');
      });
    }
  });

  describe('consistency: the verifier accepts exactly the vectors with wantErr false', () => {
    for (const file of consistencyFiles) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as {
        size1: number;
        size2: number;
        root1: string;
        root2: string;
        proof: string[] | null;
        wantErr: boolean;
      };
      test(`${relative(root, file)} is ${v.wantErr ? 'refused' : 'accepted'}`, () => {
        const proof = (v.proof ?? []).map(b64);
        const ok = verifyConsistency(v.size1, v.size2, proof, b64(v.root1), b64(v.root2));
        assert.equal(ok, !v.wantErr, 'src/audit verifier');
        const other = independentVerifyConsistency(
          BigInt(v.size1),
          BigInt(v.size2),
          proof,
          b64(v.root1),
          b64(v.root2),
        );
        assert.equal(other, !v.wantErr, 'independent verifier');
      });
    }
  });
});

describe('random trees of 1..300 leaves', () => {
  const inputs = leafInputs(300, 'random-trees');
  const hashes = inputs.map(leafHash);
  const tree = new InMemoryMerkleTree();
  for (const h of hashes) tree.append(h);
  const roots = [emptyRoot()];
  const acc = new MerkleAccumulator();
  for (const h of hashes) {
    acc.append(h);
    roots.push(acc.root());
  }

  test('the root at every size matches a naive recursive MTH and the leaf-array root', () => {
    for (let n = 0; n <= 300; n++) {
      const want = naiveMth(inputs.slice(0, n));
      assert.deepEqual(roots[n], want, `accumulator root at ${n}`);
      assert.deepEqual(tree.root(n), want, `in-memory tree root at ${n}`);
      assert.deepEqual(subtreeRoot(hashes, 0, n), want, `subtreeRoot of the leaf array at ${n}`);
    }
  });

  test('every inclusion proof of every leaf at every size verifies, and fails for a neighbour leaf', () => {
    let checked = 0;
    for (let n = 1; n <= 300; n++) {
      const root = roots[n] as Buffer;
      for (let i = 0; i < n; i++) {
        const proof = inclusionProof(tree, i, n);
        assert.ok(verifyInclusion(hashes[i] as Buffer, i, n, proof, root), `inclusion ${i}/${n} verifies`);
        if (n > 1) {
          const j = (i + 1) % n;
          assert.equal(
            verifyInclusion(hashes[j] as Buffer, i, n, proof, root),
            false,
            `leaf ${j} is not at ${i}/${n}`,
          );
        }
        checked += 1;
      }
    }
    assert.equal(checked, (300 * 301) / 2, 'every (leaf, size) pair was checked');
  });

  test('every consistency proof between sizes 1 <= m <= n <= 300 verifies, and fails with a wrong old root', () => {
    let checked = 0;
    for (let n = 1; n <= 300; n++) {
      for (let m = 1; m <= n; m++) {
        const proof = consistencyProof(tree, m, n);
        const [r1, r2] = [roots[m] as Buffer, roots[n] as Buffer];
        assert.ok(verifyConsistency(m, n, proof, r1, r2), `consistency ${m} → ${n} verifies`);
        if (m < n) {
          const wrong = roots[m - 1] as Buffer;
          assert.equal(
            verifyConsistency(m, n, proof, wrong, r2),
            false,
            `${m} → ${n} with the root of ${m - 1}`,
          );
        }
        checked += 1;
      }
    }
    assert.equal(checked, (300 * 301) / 2, 'every (m, n) pair was checked');
  });

  test('proofs from the leaf array (O(n) path) equal proofs from the stored tree (O(log² n) path)', () => {
    for (const n of [1, 2, 3, 7, 8, 9, 63, 64, 65, 127, 200, 255, 256, 257, 300]) {
      for (const i of [0, Math.floor(n / 3), n - 1]) {
        assert.deepEqual(inclusionProof(hashes, i, n), inclusionProof(tree, i, n), `inclusion ${i}/${n}`);
        if (i > 0)
          assert.deepEqual(
            consistencyProof(hashes, i, n),
            consistencyProof(tree, i, n),
            `consistency ${i}/${n}`,
          );
      }
    }
  });

  test('the independent verifier accepts the generated proofs', () => {
    for (let n = 1; n <= 300; n += 7) {
      for (let i = 0; i < n; i += 3) {
        const ok = independentVerifyInclusion(
          independentLeafHash(inputs[i] as Buffer),
          BigInt(i),
          BigInt(n),
          inclusionProof(tree, i, n),
          roots[n] as Buffer,
        );
        assert.ok(ok, `independent inclusion ${i}/${n}`);
        if (i > 0) {
          const proof = consistencyProof(tree, i, n);
          const okC = independentVerifyConsistency(
            BigInt(i),
            BigInt(n),
            proof,
            roots[i] as Buffer,
            roots[n] as Buffer,
          );
          assert.ok(okC, `independent consistency ${i} → ${n}`);
        }
      }
    }
  });

  test('flipping one bit of any proof element makes the proof fail', () => {
    const n = 300;
    const flipped = (proof: Buffer[], k: number, bit: number) =>
      proof.map((h, j) => {
        const copy = Buffer.from(h);
        if (j === k) copy.writeUInt8(copy.readUInt8(bit >> 3) ^ (1 << (bit & 7)), bit >> 3);
        return copy;
      });
    for (const i of [0, 1, 150, 255, 256, 299]) {
      const proof = inclusionProof(tree, i, n);
      for (let k = 0; k < proof.length; k++) {
        const ok = verifyInclusion(
          hashes[i] as Buffer,
          i,
          n,
          flipped(proof, k, (k * 37) % 256),
          roots[n] as Buffer,
        );
        assert.equal(ok, false, `inclusion ${i}, element ${k}`);
      }
      if (i === 0) continue;
      const cproof = consistencyProof(tree, i, n);
      for (let k = 0; k < cproof.length; k++) {
        const bad = flipped(cproof, k, 255 - ((k * 29) % 256));
        assert.equal(
          verifyConsistency(i, n, bad, roots[i] as Buffer, roots[n] as Buffer),
          false,
          `consistency ${i}, element ${k}`,
        );
      }
    }
  });
});

describe('trees beyond 2^32 leaves', () => {
  // Every leaf is the same hash, so a perfect subtree's root depends only on its level and a
  // source can answer for a tree of any size without storing it.
  const leaf = leafHash(Buffer.from('same'));
  const other = leafHash(Buffer.from('other'));
  const levels = [leaf];
  for (let l = 1; l <= 52; l++) levels.push(nodeHash(levels[l - 1] as Buffer, levels[l - 1] as Buffer));
  const source: HashSource = {
    leafHash: () => leaf,
    perfectSubtreeHash: (level) => levels[level] as Buffer,
  };

  test('proofs for sizes past 2^32 and up to 2^52 are generated, verify, and agree with a bigint verifier', () => {
    for (const size of [2 ** 32 + 1, 2 ** 33 + 12_345, 2 ** 40 + 2 ** 39 + 3, 2 ** 52 + 7]) {
      const root = subtreeRoot(source, 0, size);
      for (const index of [0, 2 ** 31 - 1, 2 ** 32, size - 2, size - 1]) {
        const proof = inclusionProof(source, index, size);
        assert.ok(verifyInclusion(leaf, index, size, proof, root), `inclusion ${index}/${size}`);
        assert.ok(
          independentVerifyInclusion(leaf, BigInt(index), BigInt(size), proof, root),
          `independent inclusion ${index}/${size}`,
        );
        assert.equal(
          verifyInclusion(other, index, size, proof, root),
          false,
          `another leaf at ${index}/${size}`,
        );
      }
      for (const from of [1, 2 ** 32 - 1, 2 ** 32, size - 1]) {
        const proof = consistencyProof(source, from, size);
        const root1 = subtreeRoot(source, 0, from);
        assert.ok(verifyConsistency(from, size, proof, root1, root), `consistency ${from} → ${size}`);
        const ok = independentVerifyConsistency(BigInt(from), BigInt(size), proof, root1, root);
        assert.ok(ok, `independent consistency ${from} → ${size}`);
      }
    }
  });
});

describe('MerkleAccumulator', () => {
  test('restored from its size and peaks, it continues exactly like the original', () => {
    const hashes = leafInputs(100, 'restore').map(leafHash);
    const original = new MerkleAccumulator();
    for (const h of hashes.slice(0, 37)) original.append(h);
    const restored = MerkleAccumulator.restore(original.size, original.peaks());
    assert.equal(original.peaks().length, 3, '37 = 32 + 4 + 1 has three peaks');
    for (const h of hashes.slice(37)) {
      original.append(h);
      restored.append(h);
      assert.deepEqual(restored.root(), original.root(), `root at ${original.size}`);
    }
    assert.deepEqual(restored.root(), rootFromLeafHashes(hashes), 'restored root equals the whole-tree root');
  });

  test('refuses peaks that do not match the size, and leaf hashes that are not 32 bytes', () => {
    const peaks = [leafHash(Buffer.from('a')), leafHash(Buffer.from('b'))];
    assert.throws(() => MerkleAccumulator.restore(4, peaks), { code: 'TRESOR_ERR_MERKLE_ARGUMENT' });
    assert.throws(() => MerkleAccumulator.restore(3, [peaks[0] as Buffer, Buffer.alloc(31)]), MerkleError);
    assert.throws(() => MerkleAccumulator.restore(-1, []), MerkleError);
    assert.throws(() => new MerkleAccumulator().append(Buffer.alloc(33)), {
      code: 'TRESOR_ERR_MERKLE_ARGUMENT',
    });
    assert.throws(() => new InMemoryMerkleTree().append(Buffer.alloc(0)), {
      code: 'TRESOR_ERR_MERKLE_ARGUMENT',
    });
  });

  test('appends 100,000 leaf hashes keeping only one peak per one-bit of its size, and the right root', () => {
    // What makes appends cheap: the accumulator never holds more than log2(size) hashes.
    const h = leafHash(Buffer.from('x'));
    const acc = new MerkleAccumulator();
    let mostPeaks = 0;
    for (let i = 0; i < 100_000; i++) {
      acc.append(h);
      mostPeaks = Math.max(mostPeaks, acc.peaks().length);
    }
    assert.equal(acc.size, 100_000);
    assert.equal(acc.peaks().length, 6, '100000 has six one-bits');
    assert.ok(mostPeaks <= 17, `never more peaks than 17 (log2 of 100000, rounded up): ${mostPeaks}`);
    assert.deepEqual(acc.root(), rootFromLeafHashes(Array(100_000).fill(h)), 'the root of the whole tree');
  });
});

describe('proof generation refuses bad arguments with a MerkleError code', () => {
  const hashes = leafInputs(8, 'args').map(leafHash);

  test('an inclusion proof needs 0 <= index < size <= available leaves', () => {
    assert.throws(() => inclusionProof(hashes, 8, 8), { code: 'TRESOR_ERR_MERKLE_ARGUMENT' });
    assert.throws(() => inclusionProof(hashes, 0, 0), { code: 'TRESOR_ERR_MERKLE_ARGUMENT' });
    assert.throws(() => inclusionProof(hashes, -1, 4), { code: 'TRESOR_ERR_MERKLE_ARGUMENT' });
    assert.throws(() => inclusionProof(hashes, 1.5, 4), { code: 'TRESOR_ERR_MERKLE_ARGUMENT' });
    assert.throws(() => inclusionProof(hashes, 0, 9), { code: 'TRESOR_ERR_MERKLE_ARGUMENT' });
  });

  test('a consistency proof needs 0 < from <= to; from = to gives the empty proof', () => {
    assert.throws(() => consistencyProof(hashes, 0, 4), { code: 'TRESOR_ERR_MERKLE_ARGUMENT' });
    assert.throws(() => consistencyProof(hashes, 5, 4), { code: 'TRESOR_ERR_MERKLE_ARGUMENT' });
    assert.deepEqual(consistencyProof(hashes, 4, 4), []);
  });

  test('a hash source that returns a malformed hash is reported, not hashed', () => {
    const broken: HashSource = { leafHash: () => Buffer.alloc(20) };
    assert.throws(() => inclusionProof(broken, 0, 2), { code: 'TRESOR_ERR_MERKLE_HASH_SOURCE' });
    assert.throws(() => new InMemoryMerkleTree().perfectSubtreeHash(0, 0), {
      code: 'TRESOR_ERR_MERKLE_HASH_SOURCE',
    });
  });
});

describe('verifiers answer false, never throw, on malformed input', () => {
  const hashes = leafInputs(5, 'malformed').map(leafHash);
  const root = rootFromLeafHashes(hashes);
  const proof = inclusionProof(hashes, 2, 5);

  test('impossible sizes and indices are refused', () => {
    const h = hashes[2] as Buffer;
    for (const [index, size] of [
      [Number.NaN, 5],
      [2, Number.POSITIVE_INFINITY],
      [-1, 5],
      [2.5, 5],
      [2, 2 ** 53],
      [5, 5],
    ] as const) {
      assert.equal(verifyInclusion(h, index, size, proof, root), false, `index ${index}, size ${size}`);
    }
    const c = consistencyProof(hashes, 3, 5);
    const r3 = rootFromLeafHashes(hashes.slice(0, 3));
    assert.equal(verifyConsistency(3, 5, c, r3, root), true, 'the well-formed proof verifies');
    for (const [s1, s2] of [
      [0, 5],
      [-3, 5],
      [3, 2 ** 53],
      [3.5, 5],
      [5, 3],
    ] as const) {
      assert.equal(verifyConsistency(s1, s2, c, r3, root), false, `sizes ${s1} → ${s2}`);
    }
  });

  test('hashes of the wrong length are refused', () => {
    assert.equal(verifyInclusion(Buffer.alloc(31), 2, 5, proof, root), false, 'short leaf hash');
    const longProof = proof.map((p, i) => (i === 0 ? Buffer.concat([p, Buffer.of(0)]) : p));
    assert.equal(verifyInclusion(hashes[2] as Buffer, 2, 5, longProof, root), false, 'long proof element');
    assert.equal(
      verifyInclusion(hashes[2] as Buffer, 2, 5, proof, root.subarray(0, 16)),
      false,
      'short root',
    );
  });

  test('equal sizes are consistent only with an empty proof and identical roots', () => {
    assert.equal(verifyConsistency(5, 5, [], root, Buffer.from(root)), true, 'same root, empty proof');
    assert.equal(verifyConsistency(5, 5, [root], root, root), false, 'non-empty proof');
    assert.equal(verifyConsistency(5, 5, [], root, emptyRoot()), false, 'different roots');
  });
});

describe('leaf bytes are RFC 8785 (JCS) canonical JSON', () => {
  // RFC 8785 §3.2.2 / §3.2.3 examples, as published in cyberphone/json-canonicalization testdata.
  test('serialises numbers, strings and literals as the RFC example (values.json)', () => {
    const input = JSON.parse(
      '{"numbers":[1E30,4.50,333333333.33333329,2e-3,0.000000000000000000000000001],' +
        '"escaping":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}',
    );
    assert.equal(
      canonicalJson(input),
      '{"escaping":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/","literals":[null,true,false],' +
        '"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}',
    );
  });

  test('sorts properties by UTF-16 code units (weird.json)', () => {
    const input = JSON.parse(
      '{"\\u20ac":"Euro Sign","1":"One","\\u0080":"Control\\u007f","\\ud83d\\ude02":"Smiley",' +
        '"\\u00f6":"Latin Small Letter O With Diaeresis","\\ufb33":"Hebrew Letter Dalet With Dagesh",' +
        '"</script>":"Browser Challenge"}',
    );
    assert.equal(
      canonicalJson(input),
      '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f","ö":"Latin Small Letter O With Diaeresis",' +
        '"€":"Euro Sign","😂":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  test('an entry hashes the same whatever the order of its properties', () => {
    const a = {
      action: 'record.read',
      actor: { id: 'u1', kind: 'staff' },
      at: '2026-01-01T00:00:00Z',
      n: 1.0,
    };
    const b = { n: 1, at: '2026-01-01T00:00:00Z', actor: { kind: 'staff', id: 'u1' }, action: 'record.read' };
    assert.deepEqual(leafBytes(a), leafBytes(b));
    assert.equal(
      leafBytes(a).toString('utf8'),
      '{"action":"record.read","actor":{"id":"u1","kind":"staff"},"at":"2026-01-01T00:00:00Z","n":1}',
    );
    assert.deepEqual(leafHash(leafBytes(a)), independentLeafHash(Buffer.from(canonicalJson(b), 'utf8')));
  });

  test('refuses values JSON cannot carry: NaN, Infinity, lone surrogates, bigint, undefined', () => {
    for (const bad of [Number.NaN, { x: Number.POSITIVE_INFINITY }, { s: '\ud800' }, { n: 10n }, undefined]) {
      assert.throws(() => leafBytes(bad), CanonicalJsonError);
    }
    assert.throws(() => canonicalJson(() => 1), { code: 'TRESOR_ERR_CANONICAL_JSON' });
  });
});
