/**
 * A client of a C2SP tlog-tiles log written only from that spec and RFC 9162 §2.1, sharing nothing
 * with src/audit (like independent-verifier.ts): it names tiles by their paths, fetches only tiles
 * a checkpoint of `size` requires, rebuilds any Merkle Tree Hash from them and derives inclusion
 * proofs by the recursive definition of PATH (§2.1.3.1). The caller verifies the proof against the
 * checkpoint's root with independentVerifyInclusion.
 */
import { createHash } from 'node:crypto';

const WIDTH = 256n; // tlog-tiles: full tiles are 256 hashes

/** N in zero-padded 3-digit elements, all but the last prefixed with `x` (tlog-tiles). */
export function independentTileIndex(n: bigint): string {
  const groups: string[] = [];
  let rest = n;
  do {
    groups.unshift((rest % 1000n).toString().padStart(3, '0'));
    rest /= 1000n;
  } while (rest > 0n);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

/**
 * The path of the tile at `level` holding hash `n` of that level in a tree of `size`: full when the
 * tree has all 256 of its hashes, else partial of width floor(size / 256^level) mod 256.
 */
export function independentTilePath(level: number | 'entries', tileIndex: bigint, size: bigint): string {
  const l = level === 'entries' ? 0n : BigInt(level);
  const hashes = size / WIDTH ** l;
  const width = tileIndex < hashes / WIDTH ? WIDTH : hashes % WIDTH;
  const suffix = width === WIDTH ? '' : `.p/${width}`;
  return `tile/${level}/${independentTileIndex(tileIndex)}${suffix}`;
}

function interior(left: Buffer, right: Buffer): Buffer {
  return createHash('sha256')
    .update(Buffer.from([1]))
    .update(left)
    .update(right)
    .digest();
}

function largestPowerOfTwoBelow(n: bigint): bigint {
  let k = 1n;
  while (k << 1n < n) k <<= 1n;
  return k;
}

export type FetchTile = (path: string) => Promise<Buffer>;

/** A reader of one tree size's hashes from tiles, each tile fetched once. */
export function tiledTree(size: bigint, fetchTile: FetchTile) {
  const tiles = new Map<string, Promise<Buffer>>();
  function tile(path: string): Promise<Buffer> {
    let got = tiles.get(path);
    if (got === undefined) {
      got = fetchTile(path);
      tiles.set(path, got);
    }
    return got;
  }

  // The hash of perfect subtree `index` at tree height h (covering 2^h leaves): 2^(h mod 8) hashes
  // of tile level floor(h / 8), folded pairwise — "a tile represents the entire subtree of height 8".
  async function perfect(height: bigint, index: bigint): Promise<Buffer> {
    const tileLevel = height / 8n;
    const below = height % 8n;
    const first = index << below;
    let row: Buffer[] = [];
    for (let i = first; i < first + (1n << below); i++) {
      const bytes = await tile(independentTilePath(Number(tileLevel), i / WIDTH, size));
      const at = Number(i % WIDTH) * 32;
      if (bytes.length < at + 32) throw new Error(`tile too short for hash ${i} at level ${tileLevel}`);
      row.push(bytes.subarray(at, at + 32));
    }
    while (row.length > 1) {
      const next: Buffer[] = [];
      for (let i = 0; i < row.length; i += 2) next.push(interior(row[i] as Buffer, row[i + 1] as Buffer));
      row = next;
    }
    return row[0] as Buffer;
  }

  // MTH(D[start:end]) (§2.1.1): perfect aligned ranges from tiles, others split at the largest power of two.
  async function mth(start: bigint, end: bigint): Promise<Buffer> {
    const n = end - start;
    if ((n & (n - 1n)) === 0n && start % n === 0n) {
      let h = 0n;
      while (1n << h < n) h++;
      return perfect(h, start / n);
    }
    const k = largestPowerOfTwoBelow(n);
    return interior(await mth(start, start + k), await mth(start + k, end));
  }

  return {
    root: () => mth(0n, size),
    leafHash: (index: bigint) => perfect(0n, index),
    /** PATH(m, D[0:size]) by §2.1.3.1's recursion. */
    async inclusionProof(m: bigint): Promise<Buffer[]> {
      const path: Buffer[] = [];
      let start = 0n;
      let end = size;
      while (end - start > 1n) {
        const k = largestPowerOfTwoBelow(end - start);
        if (m < start + k) {
          path.unshift(await mth(start + k, end));
          end = start + k;
        } else {
          path.unshift(await mth(start, start + k));
          start += k;
        }
      }
      return path;
    },
    fetched: () => [...tiles.keys()],
  };
}

/** The entries of a bundle: big-endian uint16 length-prefixed (tlog-tiles "Log entries"). */
export function independentBundleEntries(bytes: Buffer): Buffer[] {
  const entries: Buffer[] = [];
  let at = 0;
  while (at < bytes.length) {
    const length = bytes.readUInt16BE(at);
    entries.push(bytes.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  if (at !== bytes.length) throw new Error('bundle overruns');
  return entries;
}
