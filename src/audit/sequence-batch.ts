/**
 * The CPU part of a sequencer pass, apart from its reads and writes: turn the events of a batch into
 * leaves and grow the tree by them. Each event's JSON gets its global index, is canonicalised
 * (RFC 8785) into its leaf, the leaf is hashed (RFC 9162 §2.1.1) and appended to a tree restored from
 * the size and peaks the pass started with. The result carries every perfect subtree completed (the
 * rows of audit_nodes) and the new peaks, packed in a few typed arrays so a worker thread can hand it
 * back without copying (sequence-hasher.ts); nothing here touches a store.
 */
import { canonicalJson } from './canonical.ts';
import { storedLevel } from './log-schema.ts';
import { HASH_SIZE, leafHash, MerkleAccumulator } from './merkle.ts';

export interface SequenceBatchInput {
  /** The tree's size and peaks before the batch (MerkleAccumulator.peaks()), peaks packed end to end. */
  size: number;
  peaks: Uint8Array;
  /** The events' JSON as their outboxes hold it, in the order they get indexes. */
  events: string[];
}

export interface SequencedBatch {
  /** Each event's leaf: the canonical JSON of the event with its `index`. */
  leaves: string[];
  /** The perfect subtrees the appends completed that audit_nodes keeps (storedLevel), in order: level, index and 32-byte hash of each. */
  nodeLevels: Uint8Array;
  nodeIndexes: Float64Array;
  nodeHashes: Uint8Array;
  /** The grown tree's peaks, packed end to end (its size is input.size + leaves.length). */
  peaks: Uint8Array;
}

export function packHashes(hashes: readonly Uint8Array[]): Uint8Array {
  const packed = new Uint8Array(hashes.length * HASH_SIZE);
  for (const [i, h] of hashes.entries()) packed.set(h, i * HASH_SIZE);
  return packed;
}

export function unpackHashes(packed: Uint8Array): Buffer[] {
  const hashes: Buffer[] = [];
  for (let at = 0; at < packed.length; at += HASH_SIZE)
    hashes.push(Buffer.from(packed.buffer, packed.byteOffset + at, HASH_SIZE));
  return hashes;
}

export function sequenceBatch(input: SequenceBatchInput): SequencedBatch {
  const tree = MerkleAccumulator.restore(input.size, unpackHashes(input.peaks));
  const n = input.events.length;
  const leaves = new Array<string>(n);
  // Appending n leaves completes n + (the carries of the binary counter) < 2n + log2 subtrees.
  const capacity = 2 * n + 64;
  const nodeLevels = new Uint8Array(capacity);
  const nodeIndexes = new Float64Array(capacity);
  const nodeHashes = new Uint8Array(capacity * HASH_SIZE);
  let count = 0;
  for (let i = 0; i < n; i++) {
    const leaf = canonicalJson({
      ...(JSON.parse(input.events[i] as string) as object),
      index: input.size + i,
    });
    leaves[i] = leaf;
    for (const node of tree.appendNodes(leafHash(Buffer.from(leaf, 'utf8')))) {
      if (!storedLevel(node.level)) continue;
      nodeLevels[count] = node.level;
      nodeIndexes[count] = node.index;
      nodeHashes.set(node.hash, count * HASH_SIZE);
      count += 1;
    }
  }
  return {
    leaves,
    nodeLevels: nodeLevels.slice(0, count),
    nodeIndexes: nodeIndexes.slice(0, count),
    nodeHashes: nodeHashes.slice(0, count * HASH_SIZE),
    peaks: packHashes(tree.peaks()),
  };
}
