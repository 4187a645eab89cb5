/**
 * Stored leaf blocks (leaf-store.ts) as the verifier's input (verify.ts), for both readers
 * (log-reader.ts, log-reader-pg.ts): one inflate per block, and a run of blocks that is clean —
 * consecutive indices from a safe one up, each block inflating to exactly its `n` leaves, a 32-byte
 * level-0 hash stored for each — is handed over as ONE LeafBatch, the inflated bytes used as they are.
 * Anything else goes leaf by leaf as VerifyEntry rows, so the verifier sees and names a gap, a
 * reordering, a missing hash or a block that does not inflate (its leaves read as empty text, which
 * is not canonical JSON), never smoothed over.
 */
import { decodeLeafBlock } from './leaf-codec.ts';
import type { LeafBatch, VerifyEntry } from './verify.ts';

export interface StoredBlock {
  idx: number;
  n: number;
  block: Uint8Array;
}

export interface StoredLeafHashes {
  /** The level-0 hashes of [first, first + count) as one latin1 string, or null unless all are there, 32 bytes each. */
  range(first: number, count: number): string | null;
  /** The level-0 hash of one index, or null. */
  one(index: number): Buffer | string | null;
}

const ZERO = Buffer.alloc(1);

export function* leafBatchesOf(
  blocks: readonly StoredBlock[],
  hashes: StoredLeafHashes,
): Generator<LeafBatch | VerifyEntry> {
  const first = blocks[0]?.idx;
  if (first === undefined) return;
  const parts: Buffer[] = [ZERO];
  let clean = Number.isSafeInteger(first) && first >= 0;
  let count = 0;
  const decoded: (Buffer | null)[] = [];
  for (const b of blocks) {
    let bytes: Buffer | null = null;
    try {
      bytes = decodeLeafBlock(b.block);
    } catch {
      clean = false;
    }
    decoded.push(bytes);
    if (!clean) continue;
    if (b.idx !== first + count || bytes === null || bytes[bytes.length - 1] !== 0) clean = false;
    else {
      parts.push(bytes);
      count += b.n;
    }
  }
  if (clean && Number.isSafeInteger(first + count)) {
    const bytes = Buffer.concat(parts);
    const starts = leafStarts(bytes, count);
    const stored = starts === null ? null : hashes.range(first, count);
    if (starts !== null && stored !== null) {
      yield { first, count, bytes, starts, storedLeafHashes: stored };
      return;
    }
  }
  for (const [k, b] of blocks.entries()) {
    const bytes = decoded[k] ?? null;
    if (bytes === null) {
      for (let i = 0; i < b.n; i++)
        yield { index: b.idx + i, leaf: '', storedLeafHash: hashes.one(b.idx + i) };
      continue;
    }
    let from = 0;
    for (let i = 0; from < bytes.length; i++) {
      let at = bytes.indexOf(0, from);
      if (at < 0) at = bytes.length;
      yield {
        index: b.idx + i,
        leaf: bytes.toString('utf8', from, at),
        storedLeafHash: hashes.one(b.idx + i),
      };
      from = at + 1;
    }
  }
}

/** The offsets of the count + 1 zero bytes of a batch, or null if there are more or fewer. */
export function leafStarts(bytes: Buffer, count: number): Uint32Array | null {
  const starts = new Uint32Array(count + 1);
  if (bytes[0] !== 0) return null;
  let at = 0;
  for (let i = 1; i <= count; i++) {
    at = bytes.indexOf(0, at + 1);
    if (at < 0) return null;
    starts[i] = at;
  }
  return at === bytes.length - 1 ? starts : null;
}

/** The entries one item of leafBatches stands for: a LeafBatch's leaves one by one, or the entry itself. */
export function* entriesOf(item: LeafBatch | VerifyEntry): IterableIterator<VerifyEntry> {
  if (!('starts' in item)) {
    yield item;
    return;
  }
  const bytes = Buffer.from(item.bytes.buffer, item.bytes.byteOffset, item.bytes.length);
  for (let i = 0; i < item.count; i++) {
    yield {
      index: item.first + i,
      leaf: bytes.toString('utf8', (item.starts[i] as number) + 1, item.starts[i + 1] as number),
      storedLeafHash: item.storedLeafHashes.slice(i * 32, i * 32 + 32),
    };
  }
}
