/**
 * How the audit log STORES its leaves (audit_leaves, log-schema.ts): a block of consecutive leaves
 * compressed together. Only the storage is compressed: the leaf bytes hashed into the tree, served by
 * the API, the tiles and the exports stay exactly each entry's RFC 8785 canonical JSON, restored
 * byte for byte by decodeLeafBlock.
 *
 *   block = codec (1 byte) ‖ payload
 *   codec 1: payload = raw DEFLATE (RFC 1951; node:zlib) with the preset dictionary LEAF_DICTIONARY_V1
 *            of   leaf₀ ‖ 0x00 ‖ leaf₁ ‖ 0x00 ‖ … ‖ leafₙ₋₁ ‖ 0x00   (leaves as UTF-8)
 *
 * A leaf never holds a 0x00 byte (RFC 8785 writes U+0000 as \u0000), so 0x00 ends each one; with a
 * 0x00 put in front, the inflated bytes are the verifier's LeafBatch layout (verify.ts) as they are.
 * One inflate per block rather than per leaf: zlib's cost per call (its state and window, the
 * dictionary) is several times that of inflating one ~400-byte leaf, and consecutive entries share
 * most of their text (keys, tenant, actor, collection, user agent), which one stream finds.
 *
 * The codec byte lets the format evolve: a new dictionary or algorithm is a new codec number, and
 * decodeLeafBlock keeps reading every codec it ever wrote. Never change LEAF_DICTIONARY_V1.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';

/** The codec of blocks written now. */
export const LEAF_CODEC = 1;

/**
 * Codec 1's preset dictionary: the entry's keys and frequent values (event.ts, the vault's and the
 * system's events), the most frequent last (DEFLATE codes nearer matches in fewer bits). Fixed forever.
 */
export const LEAF_DICTIONARY_V1 = Buffer.from(
  '"grant":{"breakGlass":true,"id":"","reason":"","ticket":""},"tokenId":"' +
    '"kind":"operator-admin""kind":"staff""kind":"customer""kind":"system""searchedValues":[{"field":"","hmac":"","keyId":"' +
    '"action":"record.create""action":"record.delete""action":"record.search""action":"record.update"' +
    '"outcome":"failure""outcome":"denied""grantId":"' +
    '{"action":"record.read","actor":{"id":"ak_","kind":"api-key"},"at":"20' +
    '","index":,"outcome":"success","requestId":"","sourceAddress":"","target":{"collection":"","fields":["","recordIds":["' +
    '"]},"tenant":"","userAgent":"',
  'utf8',
);

const INFLATE_CHUNK = 64 * 1024;

const DICTIONARIES: ReadonlyMap<number, Buffer> = new Map([[1, LEAF_DICTIONARY_V1]]);

/** A stored block that cannot be read back (unknown codec, corrupt data): the verifier reports it. */
export class LeafBlockError extends Error {}

/**
 * The block that stores `leaves` (canonical JSON texts, or their UTF-8 bytes; none holding 0x00), in
 * the current codec.
 */
export function encodeLeafBlock(leaves: readonly (string | Uint8Array)[]): Buffer {
  if (leaves.length === 0) throw new RangeError('a leaf block holds at least one leaf');
  const parts: Uint8Array[] = [];
  for (const leaf of leaves) parts.push(typeof leaf === 'string' ? Buffer.from(leaf, 'utf8') : leaf, ZERO);
  const bytes = Buffer.concat(parts);
  if (countZeros(bytes) !== leaves.length) throw new RangeError('an audit leaf holds a 0x00 byte');
  const payload = deflateRawSync(bytes, { dictionary: LEAF_DICTIONARY_V1 });
  const block = Buffer.allocUnsafe(1 + payload.length);
  block[0] = LEAF_CODEC;
  payload.copy(block, 1);
  return block;
}

const ZERO = Buffer.alloc(1);

/**
 * The leaves of a block as leaf₀ ‖ 0x00 ‖ … ‖ leafₙ₋₁ ‖ 0x00 (UTF-8). Throws LeafBlockError for an
 * unknown codec or data that does not inflate; the caller checks the number of leaves.
 */
export function decodeLeafBlock(block: Uint8Array): Buffer {
  const codec = block[0];
  const dictionary = codec === undefined ? undefined : DICTIONARIES.get(codec);
  if (dictionary === undefined)
    throw new LeafBlockError(`unknown leaf block codec ${codec ?? '(empty block)'}`);
  try {
    // One output chunk for a whole block (64 leaves of ~400 B): zlib's default 16 KiB chunks, joined
    // afterwards, cost the verifier a third more per leaf.
    return inflateRawSync(block.subarray(1), { dictionary, chunkSize: INFLATE_CHUNK });
  } catch (err) {
    throw new LeafBlockError(`a leaf block does not inflate: ${(err as Error).message}`);
  }
}

/** The leaves of a block as strings (decodeLeafBlock split at each 0x00). */
export function leafTexts(block: Uint8Array): string[] {
  const bytes = decodeLeafBlock(block);
  const leaves: string[] = [];
  let from = 0;
  for (let at = bytes.indexOf(0); at >= 0; at = bytes.indexOf(0, from)) {
    leaves.push(bytes.toString('utf8', from, at));
    from = at + 1;
  }
  if (from !== bytes.length) throw new LeafBlockError('a leaf block does not end with 0x00');
  return leaves;
}

function countZeros(bytes: Buffer): number {
  let n = 0;
  for (let at = bytes.indexOf(0); at >= 0; at = bytes.indexOf(0, at + 1)) n += 1;
  return n;
}
