/**
 * The audit log as C2SP tlog-tiles resources: hash tiles and entry bundles, their paths, and their
 * bytes. Pure functions only; tile-reader.ts reads what they describe from the live log.
 *
 * - Tile height 8: a full tile is 256 hashes (8,192 bytes). The n-th tile at level l holds, for i in
 *   0‥255, MTH(D[(n·256 + i)·256^l : (n·256 + i + 1)·256^l]) — the perfect subtree of tree level
 *   8·l at index n·256 + i (tlog-tiles, "Merkle Tree").
 * - Paths `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`: N in zero-padded 3-digit elements,
 *   all but the last prefixed `x` (1234067 → `x001/x234/067`); L decimal 0‥63, W decimal 1‥255,
 *   neither with leading zeroes. golang.org/x/mod/sumdb/tlog's Tile.Path writes the same N, after an
 *   extra height element (`tile/8/<L>/…`) that tlog-tiles leaves out.
 * - An entry bundle is the entries back to back, each behind its length as a big-endian uint16
 *   (tlog-tiles, "Log entries"); an entry longer than 65,535 bytes cannot be bundled.
 */
import { TresorError } from '../errors.ts';
import { HASH_SIZE } from './merkle.ts';

/** Tile height: 2^8 hashes per full tile (tlog-tiles). */
export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 2 ** TILE_HEIGHT;
/** tlog-tiles: "<L> … MUST be a decimal ASCII integer between 0 and 63". */
export const MAX_TILE_LEVEL = 63;
/** The largest entry a bundle can carry (its uint16 length prefix). */
export const MAX_BUNDLE_ENTRY_BYTES = 0xffff;

/** A hash tile (level ≥ 0) or an entry bundle (level 'entries'), of `width` 1‥256. */
export interface TileCoordinate {
  level: number | 'entries';
  index: number;
  width: number;
}

function malformed(reason: string): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `not a tlog-tiles path: ${reason}`);
}

/** N as tlog-tiles path elements: 0 → `000`, 1234067 → `x001/x234/067`. */
export function formatTileIndex(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0)
    throw new RangeError('tile index must be a safe integer ≥ 0');
  let path = String(index % 1000).padStart(3, '0');
  for (let n = Math.floor(index / 1000); n > 0; n = Math.floor(n / 1000))
    path = `x${String(n % 1000).padStart(3, '0')}/${path}`;
  return path;
}

/** The path of a tile or bundle, `tile/…`, with `.p/<W>` when it is partial. */
export function formatTilePath(tile: TileCoordinate): string {
  const { level, index, width } = tile;
  if (level !== 'entries' && (!Number.isInteger(level) || level < 0 || level > MAX_TILE_LEVEL))
    throw new RangeError('tile level must be 0‥63');
  if (!Number.isInteger(width) || width < 1 || width > TILE_WIDTH)
    throw new RangeError('tile width must be 1‥256');
  const partial = width < TILE_WIDTH ? `.p/${width}` : '';
  return `tile/${level}/${formatTileIndex(index)}${partial}`;
}

const LEVEL = /^(?:0|[1-9][0-9]?)$/;
const WIDTH = /^[1-9][0-9]{0,2}$/;

/**
 * Reads a tlog-tiles path, `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` (the leading
 * `tile/` optional). Refuses anything another spelling of the same resource could have — leading
 * zeroes, a missing `x`, an `x` on the last element, an index past 2^53 — with a validation error,
 * so one resource has exactly one path.
 */
export function parseTilePath(path: string): TileCoordinate {
  const parts = (path.startsWith('tile/') ? path.slice(5) : path).split('/');
  const levelPart = parts.shift();
  if (levelPart === undefined) throw malformed('no level');
  let level: number | 'entries';
  if (levelPart === 'entries') level = 'entries';
  else if (LEVEL.test(levelPart) && Number(levelPart) <= MAX_TILE_LEVEL) level = Number(levelPart);
  else throw malformed('the level must be 0‥63 or entries, without leading zeroes');
  let width = TILE_WIDTH;
  const last = parts[parts.length - 1];
  const beforeLast = parts[parts.length - 2];
  if (beforeLast?.endsWith('.p') && last !== undefined) {
    if (!WIDTH.test(last) || Number(last) >= TILE_WIDTH) throw malformed('a partial width must be 1‥255');
    width = Number(last);
    parts.pop();
    parts[parts.length - 1] = beforeLast.slice(0, -2);
  }
  if (parts.length === 0 || parts.length > 6) throw malformed('the index needs 1 to 6 elements');
  let index = 0;
  parts.forEach((part, i) => {
    const lastElement = i === parts.length - 1;
    const digits = lastElement ? part : part.slice(1);
    if ((!lastElement && !part.startsWith('x')) || !/^[0-9]{3}$/.test(digits))
      throw malformed('index elements are three digits, all but the last prefixed with x');
    index = index * 1000 + Number(digits);
  });
  if (!Number.isSafeInteger(index)) throw malformed('the index is too large');
  if (parts.length > 1 && parts[0] === 'x000') throw malformed('the index has a leading zero element');
  return { level, index, width };
}

/** The tree level (RFC 9162 perfect-subtree level) of the hashes in a hash tile of `level`. */
export function treeLevelOfTile(level: number): number {
  return level * TILE_HEIGHT;
}

/**
 * The width of the rightmost tile of `level` in a tree of `size` leaves, and its index: tlog-tiles,
 * "the partial tile at level l for a tree of size s has floor(s / 256^l) mod 256 entries".
 * Width 0 means that level has no partial tile at this size.
 */
export function partialTile(level: number, size: number): { index: number; width: number } {
  const hashes = Math.floor(size / TILE_WIDTH ** level);
  return { index: Math.floor(hashes / TILE_WIDTH), width: hashes % TILE_WIDTH };
}

/** Whether a tree of `size` leaves holds the tile `tile` (full, or partial of exactly that width). */
export function tileExistsAt(tile: TileCoordinate, size: number): boolean {
  const level = tile.level === 'entries' ? 0 : tile.level;
  const hashes = Math.floor(size / TILE_WIDTH ** level);
  const fullTiles = Math.floor(hashes / TILE_WIDTH);
  if (tile.width === TILE_WIDTH) return tile.index < fullTiles;
  return tile.index === fullTiles && tile.width <= hashes % TILE_WIDTH;
}

/** The leaf range [start, end) a tile or bundle covers. */
export function tileLeafRange(tile: TileCoordinate): { start: number; end: number } {
  const level = tile.level === 'entries' ? 0 : tile.level;
  const perHash = TILE_WIDTH ** level;
  const start = tile.index * TILE_WIDTH * perHash;
  return { start, end: start + tile.width * perHash };
}

/** A hash tile's bytes: its hashes back to back. */
export function encodeHashTile(hashes: readonly Uint8Array[]): Buffer {
  if (hashes.length === 0 || hashes.length > TILE_WIDTH) throw new RangeError('a tile holds 1‥256 hashes');
  for (const h of hashes) if (h.length !== HASH_SIZE) throw new RangeError('tile hashes are 32 bytes');
  return Buffer.concat(hashes);
}

/** The hashes of a tile of `width`, or null when the bytes are not exactly that many hashes. */
export function decodeHashTile(bytes: Uint8Array, width: number): Buffer[] | null {
  if (bytes.length !== width * HASH_SIZE) return null;
  const hashes: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += HASH_SIZE)
    hashes.push(Buffer.from(bytes.subarray(at, at + HASH_SIZE)));
  return hashes;
}

/** An entry bundle: each entry behind its big-endian uint16 length (tlog-tiles, "Log entries"). */
export function encodeEntryBundle(entries: readonly Uint8Array[]): Buffer {
  if (entries.length === 0 || entries.length > TILE_WIDTH)
    throw new RangeError('a bundle holds 1‥256 entries');
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    if (entry.length > MAX_BUNDLE_ENTRY_BYTES)
      throw new TresorError('TRESOR_ERR_INTERNAL', 'an audit entry is too long for an entry bundle');
    const length = Buffer.alloc(2);
    length.writeUInt16BE(entry.length);
    parts.push(length, entry);
  }
  return Buffer.concat(parts);
}

/** The entries of a bundle, or null when its bytes are not whole length-prefixed entries. */
export function decodeEntryBundle(bytes: Uint8Array): Buffer[] | null {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries: Buffer[] = [];
  for (let at = 0; at < buffer.length; ) {
    if (at + 2 > buffer.length) return null;
    const length = buffer.readUInt16BE(at);
    if (at + 2 + length > buffer.length) return null;
    entries.push(Buffer.from(buffer.subarray(at + 2, at + 2 + length)));
    at += 2 + length;
  }
  return entries;
}
