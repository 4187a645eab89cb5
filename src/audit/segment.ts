/**
 * Sealed segments: an older range of the audit log, kept on every backup destination in the C2SP
 * tlog-tiles layout (tiles.ts), each object encrypted, and the whole segment signed by keyd.
 *
 *   audit-log/tile/0/<N>               the level-0 hash tiles of the range   ┐ sealed: AES-256-GCM
 *   audit-log/tile/entries/<N>         its entry bundles                     ┘ (src/objects/chunk-cipher.ts)
 *   audit-log/segments/<id>.json       the manifest (canonical JSON), written after every tile
 *   audit-log/segments/<id>.sig        keyd's signature of the manifest's statement, written last
 *
 * A segment covers whole full tiles, [first, end) with both multiples of 256. Its data key is a
 * backup data key from keyd, bound to the segment id (keyd wraps it bound to that id, like a
 * backup's), so a segment is unreadable without keyd. Each object is sealed as chunk i of the
 * segment — the AAD binds it to the segment id, its place in the manifest's list and the last one —
 * so an object moved, swapped or taken from another segment does not open.
 *
 * The manifest binds the range, each object's SHA-256 (of the tile as served, and of the bytes
 * stored), the peaks of the tree before `first` and the root at `end`. keyd signs the statement
 * `tresor-audit-segment/v1 \n <id> \n <SHA-256 of the manifest>` with its backup-manifest key, which
 * keyd only signs as a well-formed statement (src/keyd/signing-statements.ts). Reading a segment
 * back (openSegment) checks, in order: the signature, the manifest, every object's stored digest,
 * its decryption, its tile digest, every entry against its leaf hash, and the root at `end`
 * recomputed from the peaks and the leaf hashes. The first failure names what was tampered with.
 */
import { createPublicKey, verify } from 'node:crypto';
import { TresorError } from '../errors.ts';
import type { KeyService } from '../keyd/operations.ts';
import { openChunk, sealChunk } from '../objects/chunk-cipher.ts';
import { type Destination, putVerified, sha256Hex } from '../objects/destination.ts';
import { canonicalJson } from './canonical.ts';
import { leafHash, MerkleAccumulator } from './merkle.ts';
import {
  decodeEntryBundle,
  decodeHashTile,
  formatTilePath,
  TILE_WIDTH,
  type TileCoordinate,
} from './tiles.ts';

export const ARCHIVE_PREFIX = 'audit-log';
export const SEGMENT_FORMAT = 'tresor-audit-segment/v1';
const SIGNATURE_FORMAT = 'tresor-audit-segment-signature/v1';
const SEGMENT_ID = /^audit\.[0-9]{16}-[0-9]{16}$/;

export interface SegmentObject {
  /** The tlog-tiles path (`tile/0/…`, `tile/entries/…`). */
  path: string;
  /** SHA-256 (hex) of the tile or bundle itself, as a tlog-tiles client would fetch it. */
  sha256: string;
  /** SHA-256 (hex) of the sealed bytes stored at the destination. */
  storedSha256: string;
}

export interface SegmentManifest {
  format: typeof SEGMENT_FORMAT;
  segmentId: string;
  origin: string;
  first: number;
  end: number;
  /** The peaks (perfect-subtree roots, largest first) of the tree of `first` leaves, base64. */
  peaksBefore: string[];
  /** MTH(D[0:end]), base64. */
  rootAtEnd: string;
  dataKey: { keyId: string; wrapped: string };
  objects: SegmentObject[];
}

/** What a segment holds once opened and checked. */
export interface OpenedSegment {
  manifest: SegmentManifest;
  /** Level-0 hashes of [first, end). */
  leafHashes: Buffer[];
  /** Leaf bytes of [first, end). */
  leaves: Buffer[];
  /** The plaintext resources by tlog-tiles path. */
  tiles: Map<string, Buffer>;
}

export type SegmentErrorCode = 'TRESOR_ERR_AUDIT_SEGMENT_INVALID';

/** A segment that does not check out; the message names the first check that failed (no contents). */
export class SegmentError extends TresorError<SegmentErrorCode> {
  constructor(segmentId: string, why: string) {
    super('TRESOR_ERR_AUDIT_SEGMENT_INVALID', `audit segment ${segmentId}: ${why}`);
  }
}

export function segmentId(first: number, end: number): string {
  return `audit.${String(first).padStart(16, '0')}-${String(end).padStart(16, '0')}`;
}

export function isSegmentId(value: string): boolean {
  return SEGMENT_ID.test(value);
}

export const segmentManifestKey = (id: string) => `${ARCHIVE_PREFIX}/segments/${id}.json`;
export const segmentSignatureKey = (id: string) => `${ARCHIVE_PREFIX}/segments/${id}.sig`;
export const segmentObjectKey = (path: string) => `${ARCHIVE_PREFIX}/${path}`;

function statement(id: string, manifestSha256: string): Buffer {
  return Buffer.from(`${SEGMENT_FORMAT}\n${id}\n${manifestSha256}\n`, 'utf8');
}

/** The tlog-tiles resources of the full tiles in [first, end), in the order they are sealed. */
export function segmentTiles(first: number, end: number): TileCoordinate[] {
  const tiles: TileCoordinate[] = [];
  for (let n = first / TILE_WIDTH; n < end / TILE_WIDTH; n++) {
    tiles.push({ level: 0, index: n, width: TILE_WIDTH });
    tiles.push({ level: 'entries', index: n, width: TILE_WIDTH });
  }
  return tiles;
}

export interface SealSegmentInput {
  origin: string;
  first: number;
  end: number;
  peaksBefore: Buffer[];
  rootAtEnd: Buffer;
  /** The plaintext of each of segmentTiles(first, end), by path. */
  read(tile: TileCoordinate): Promise<Buffer>;
  keys: KeyService;
  destinations: readonly Destination[];
}

/**
 * Writes a segment to every destination: the sealed objects (each read back), then the manifest,
 * then keyd's signature — so a segment whose signature object is there is whole. Throws on the first
 * destination that fails; the caller tries again later (segments are rewritten whole, same paths).
 */
export async function sealSegment(input: SealSegmentInput): Promise<SegmentManifest> {
  const { first, end } = input;
  if (first % TILE_WIDTH !== 0 || end % TILE_WIDTH !== 0 || end <= first)
    throw new TresorError('TRESOR_ERR_INTERNAL', 'a segment covers whole tiles');
  const id = segmentId(first, end);
  const dataKey = await input.keys.call('generateBackupDataKey', { backupId: id });
  try {
    const tiles = segmentTiles(first, end);
    const objects: SegmentObject[] = [];
    const sealed: Buffer[] = [];
    for (const [index, tile] of tiles.entries()) {
      const plain = await input.read(tile);
      const stored = sealChunk(
        dataKey.key,
        { backupId: id, index, final: index === tiles.length - 1 },
        plain,
      );
      sealed.push(stored);
      objects.push({ path: formatTilePath(tile), sha256: sha256Hex(plain), storedSha256: sha256Hex(stored) });
    }
    const manifest: SegmentManifest = {
      format: SEGMENT_FORMAT,
      segmentId: id,
      origin: input.origin,
      first,
      end,
      peaksBefore: input.peaksBefore.map((p) => p.toString('base64')),
      rootAtEnd: input.rootAtEnd.toString('base64'),
      dataKey: { keyId: dataKey.keyId, wrapped: dataKey.wrapped.toString('base64') },
      objects,
    };
    const bytes = Buffer.from(canonicalJson(manifest), 'utf8');
    const digest = sha256Hex(bytes);
    const { signature, keyName } = await input.keys.call('sign', {
      purpose: 'backup-manifest',
      message: statement(id, digest),
    });
    const signatureBytes = Buffer.from(
      canonicalJson({
        format: SIGNATURE_FORMAT,
        keyName,
        manifestSha256: digest,
        signature: Buffer.from(signature).toString('base64'),
      }),
      'utf8',
    );
    for (const destination of input.destinations) {
      for (const [i, object] of objects.entries())
        await putVerified(destination, segmentObjectKey(object.path), sealed[i] as Buffer, {
          digest: object.storedSha256,
        });
      await putVerified(destination, segmentManifestKey(id), bytes);
      await putVerified(destination, segmentSignatureKey(id), signatureBytes);
    }
    return manifest;
  } finally {
    dataKey.key.fill(0);
  }
}

/** The ids of the whole segments (signature object present) at a destination, in log order. */
export async function listSegments(destination: Destination): Promise<string[]> {
  const ids: string[] = [];
  for (const key of await destination.list(`${ARCHIVE_PREFIX}/segments/`)) {
    const name = key.slice(`${ARCHIVE_PREFIX}/segments/`.length);
    if (name.endsWith('.sig') && isSegmentId(name.slice(0, -4))) ids.push(name.slice(0, -4));
  }
  return ids.sort();
}

/** keyd's published backup-manifest key (publicKey operation, purpose backup-manifest). */
export interface SegmentKey {
  name: string;
  publicKey: Uint8Array;
}

export interface OpenSegmentInput {
  destination: Destination;
  id: string;
  key: SegmentKey;
  keys: KeyService;
  /** The log's origin: a segment of another log is refused. */
  origin: string;
}

/** Reads a segment back from a destination and checks all of it (the header comment's order). */
export async function openSegment(input: OpenSegmentInput): Promise<OpenedSegment> {
  const { destination, id } = input;
  const refuse = (why: string) => new SegmentError(id, why);
  if (!isSegmentId(id)) throw refuse('not a segment id');
  const bytes = await destination.get(segmentManifestKey(id));
  signedBy(id, bytes, await destination.get(segmentSignatureKey(id)), input.key);
  const manifest = parseManifest(bytes);
  if (manifest === undefined || manifest.segmentId !== id) throw refuse('the manifest is malformed');
  if (manifest.origin !== input.origin) throw refuse('the segment belongs to another log');
  const tiles = segmentTiles(manifest.first, manifest.end);
  if (
    manifest.objects.length !== tiles.length ||
    tiles.some((t, i) => formatTilePath(t) !== manifest.objects[i]?.path)
  )
    throw refuse('the manifest does not list the tiles of its range');

  const { key } = await input.keys.call('unwrapBackupDataKey', {
    backupId: id,
    keyId: manifest.dataKey.keyId,
    wrapped: Buffer.from(manifest.dataKey.wrapped, 'base64'),
  });
  const plain = new Map<string, Buffer>();
  try {
    for (const [index, object] of manifest.objects.entries()) {
      const stored = await destination.get(segmentObjectKey(object.path));
      if (sha256Hex(stored) !== object.storedSha256) throw refuse(`${object.path} is not the object written`);
      let tile: Buffer;
      try {
        tile = openChunk(key, { backupId: id, index, final: index === tiles.length - 1 }, stored);
      } catch {
        throw refuse(`${object.path} does not decrypt at its place`);
      }
      if (sha256Hex(tile) !== object.sha256) throw refuse(`${object.path} is not the tile signed`);
      plain.set(object.path, tile);
    }
  } finally {
    key.fill(0);
  }

  const leafHashes: Buffer[] = [];
  const leaves: Buffer[] = [];
  for (let n = manifest.first / TILE_WIDTH; n < manifest.end / TILE_WIDTH; n++) {
    const hashPath = formatTilePath({ level: 0, index: n, width: TILE_WIDTH });
    const bundlePath = formatTilePath({ level: 'entries', index: n, width: TILE_WIDTH });
    const hashes = decodeHashTile(plain.get(hashPath) ?? Buffer.alloc(0), TILE_WIDTH);
    const entries = decodeEntryBundle(plain.get(bundlePath) ?? Buffer.alloc(0));
    if (hashes === null || entries === null || entries.length !== TILE_WIDTH)
      throw refuse(`${hashPath} or ${bundlePath} is not a full tile`);
    entries.forEach((entry, i) => {
      if (!leafHash(entry).equals(hashes[i] as Buffer))
        throw refuse(`entry ${n * TILE_WIDTH + i} does not hash to its leaf hash`);
    });
    leafHashes.push(...hashes);
    leaves.push(...entries);
  }
  let tree: MerkleAccumulator;
  try {
    tree = MerkleAccumulator.restore(
      manifest.first,
      manifest.peaksBefore.map((p) => Buffer.from(p, 'base64')),
    );
  } catch {
    throw refuse('the peaks before the segment do not fit its start');
  }
  for (const h of leafHashes) tree.append(h);
  if (!tree.root().equals(Buffer.from(manifest.rootAtEnd, 'base64')))
    throw refuse('the tiles do not give the root the manifest names');
  return { manifest, leafHashes, leaves, tiles: plain };
}

/**
 * The cheap half of openSegment's first check, for a trial restore that runs after every backup:
 * the segment's signature object names keyd's key and the digest of the manifest stored beside it,
 * and keyd's signature of that statement verifies. Nothing is decrypted. Answers the manifest's
 * SHA-256 (hex); throws SegmentError otherwise.
 */
export async function verifySegmentSignature(
  input: Pick<OpenSegmentInput, 'destination' | 'id' | 'key'>,
): Promise<string> {
  const { destination, id } = input;
  if (!isSegmentId(id)) throw new SegmentError(id, 'not a segment id');
  return signedBy(
    id,
    await destination.get(segmentManifestKey(id)),
    await destination.get(segmentSignatureKey(id)),
    input.key,
  );
}

/**
 * The segment's signature object names keyd's key and the manifest's SHA-256, and keyd's signature of
 * the statement verifies: answers that digest (hex), else throws SegmentError.
 */
function signedBy(id: string, manifest: Buffer, signature: Buffer, key: SegmentKey): string {
  const signed = parseObject(signature);
  const digest = sha256Hex(manifest);
  const ok =
    signed?.format === SIGNATURE_FORMAT &&
    signed.keyName === key.name &&
    signed.manifestSha256 === digest &&
    typeof signed.signature === 'string' &&
    verify(
      null,
      statement(id, digest),
      createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(key.publicKey).toString('base64url') },
        format: 'jwk',
      }),
      Buffer.from(signed.signature, 'base64'),
    );
  if (!ok) throw new SegmentError(id, 'the manifest is not the one keyd signed (signature, key or digest)');
  return digest;
}

function parseObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

const HEX = /^[0-9a-f]{64}$/;
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

function parseManifest(bytes: Buffer): SegmentManifest | undefined {
  const v = parseObject(bytes);
  if (v === undefined || v.format !== SEGMENT_FORMAT) return undefined;
  const { segmentId: id, origin, first, end, peaksBefore, rootAtEnd, dataKey, objects } = v;
  const ok =
    typeof id === 'string' &&
    typeof origin === 'string' &&
    isCount(first) &&
    isCount(end) &&
    Array.isArray(peaksBefore) &&
    peaksBefore.every((p) => typeof p === 'string') &&
    typeof rootAtEnd === 'string' &&
    typeof dataKey === 'object' &&
    dataKey !== null &&
    typeof (dataKey as Record<string, unknown>).keyId === 'string' &&
    typeof (dataKey as Record<string, unknown>).wrapped === 'string' &&
    Array.isArray(objects) &&
    objects.every(
      (o) =>
        typeof o === 'object' &&
        o !== null &&
        typeof o.path === 'string' &&
        HEX.test(String(o.sha256)) &&
        HEX.test(String(o.storedSha256)),
    );
  return ok ? (v as unknown as SegmentManifest) : undefined;
}
