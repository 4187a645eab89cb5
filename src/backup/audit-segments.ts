/**
 * A backup's audit segments (issue 19): the sealed segments of the audit log (src/audit/segment.ts)
 * a backup's manifest names, and what taking, copying and restoring a backup does with them.
 *
 *   segmentsAt / commonSegments   at backup time: the segments each destination holds, contiguous
 *                                 from entry 0, and the run of them that every destination holds
 *                                 with the same manifest bytes (the list the manifest signs);
 *   copySegments                  the named segments a destination lacks, copied byte for byte from
 *                                 another (they are sealed already): tiles, manifest, signature last,
 *                                 as sealSegment writes them, so a segment counts only once whole;
 *   checkSegments                 at restore: each named segment present, its manifest the one the
 *                                 backup names (SHA-256), and then either openSegment (every check:
 *                                 signature, each tile's digests and decryption through keyd, every
 *                                 entry, the root) or, for the trial restore after each backup, only
 *                                 the signature (verifySegmentSignature).
 *
 * Segments are shared by every backup that names them and are never deleted here (retention deletes
 * only `<backup id>/` objects). A segment a destination already holds in another version (the same
 * range sealed again, with another data key) is left alone: overwriting it would break the backups
 * there that name it, so the copy is refused instead.
 */
import { parseCheckpoint } from '../audit/checkpoint.ts';
import { parseNote } from '../audit/note.ts';
import {
  listSegments,
  openSegment,
  SegmentError,
  segmentManifestKey,
  segmentObjectKey,
  segmentSignatureKey,
  segmentTiles,
  verifySegmentSignature,
} from '../audit/segment.ts';
import { formatTilePath } from '../audit/tiles.ts';
import type { KeyService } from '../keyd/operations.ts';
import { type Destination, putVerified, sha256Hex } from '../objects/destination.ts';
import { BackupError, invalidBackup } from './errors.ts';
import type { BackupManifest, ManifestKey, ManifestSegment } from './manifest.ts';

/** [first, end) of a segment id `audit.<first>-<end>` (16 digits each). */
function segmentRange(id: string): { first: number; end: number } {
  const [first = Number.NaN, end = Number.NaN] = id.slice('audit.'.length).split('-').map(Number);
  return { first, end };
}

/** The segment manifest's digest at a destination; undefined when the destination has none. */
async function manifestDigest(destination: Destination, id: string): Promise<string | undefined> {
  try {
    return sha256Hex(await destination.get(segmentManifestKey(id)));
  } catch (err) {
    if (err instanceof BackupError && err.code === 'TRESOR_ERR_BACKUP_NOT_FOUND') return undefined;
    throw err;
  }
}

/** The whole segments at a destination, contiguous from entry 0 (the first gap ends the list). */
export async function segmentsAt(destination: Destination): Promise<ManifestSegment[]> {
  const out: ManifestSegment[] = [];
  let end = 0;
  for (const id of await listSegments(destination)) {
    const range = segmentRange(id);
    if (range.first !== end) break;
    const digest = await manifestDigest(destination, id);
    if (digest === undefined) break;
    out.push({ id, manifestSha256: digest });
    end = range.end;
  }
  return out;
}

/** The leading run of segments every list holds alike (same id, same manifest digest). */
export function commonSegments(lists: readonly ManifestSegment[][]): ManifestSegment[] {
  const [head, ...rest] = lists;
  if (head === undefined) return [];
  const out: ManifestSegment[] = [];
  for (const [i, s] of head.entries()) {
    if (!rest.every((l) => l[i]?.id === s.id && l[i]?.manifestSha256 === s.manifestSha256)) break;
    out.push(s);
  }
  return out;
}

/**
 * Copies the named segments `to` lacks from `from`, byte for byte, each read back (putVerified).
 * One `from` holds in another version than named refuses the backup (invalidBackup); one `to` holds
 * in another version is left alone and the copy fails (TRESOR_ERR_BACKUP_DESTINATION). Answers the
 * ids copied.
 */
export async function copySegments(
  from: Destination,
  to: Destination,
  backupId: string,
  segments: readonly ManifestSegment[],
): Promise<string[]> {
  const copied: string[] = [];
  if (segments.length === 0) return copied;
  const present = new Set(await listSegments(to));
  for (const segment of segments) {
    const { id } = segment;
    if (present.has(id)) {
      if ((await manifestDigest(to, id)) === segment.manifestSha256) continue;
      throw new BackupError(
        'TRESOR_ERR_BACKUP_DESTINATION',
        `${to.name}: audit segment ${id} is there in another version than backup ${backupId} names; left alone`,
      );
    }
    const manifest = await getSegmentObject(from, backupId, id, segmentManifestKey(id));
    if (sha256Hex(manifest) !== segment.manifestSha256) {
      throw invalidBackup(backupId, `audit segment ${id} at ${from.name} is not the one the backup names`);
    }
    const signature = await getSegmentObject(from, backupId, id, segmentSignatureKey(id));
    const { first, end } = segmentRange(id);
    for (const tile of segmentTiles(first, end)) {
      const key = segmentObjectKey(formatTilePath(tile));
      await putVerified(to, key, await getSegmentObject(from, backupId, id, key));
    }
    await putVerified(to, segmentManifestKey(id), manifest);
    await putVerified(to, segmentSignatureKey(id), signature);
    copied.push(id);
  }
  return copied;
}

async function getSegmentObject(
  from: Destination,
  backupId: string,
  id: string,
  key: string,
): Promise<Buffer> {
  try {
    return await from.get(key);
  } catch (err) {
    if (err instanceof BackupError && err.code === 'TRESOR_ERR_BACKUP_NOT_FOUND') {
      throw invalidBackup(backupId, `audit segment ${id} is missing at ${from.name} (${key})`);
    }
    throw err;
  }
}

export interface CheckSegmentsOptions {
  destination: Destination;
  manifest: BackupManifest;
  keys: KeyService;
  /** keyd's backup-manifest key: it signs segments too. */
  manifestKey: ManifestKey;
  /** 'open': openSegment, every check; 'signature': the signature only (the trial restore). */
  depth: 'open' | 'signature';
}

/**
 * Checks every segment the backup names at the destination; the first that fails refuses the backup
 * (TRESOR_ERR_BACKUP_INVALID) with a message naming the segment and the check. Answers the count.
 */
export async function checkSegments(options: CheckSegmentsOptions): Promise<number> {
  const { destination, manifest } = options;
  const segments = manifest.auditSegments ?? [];
  if (segments.length === 0) return 0;
  const refuse = (why: string) => invalidBackup(manifest.backupId, why);
  const origin = parseCheckpoint(parseNote(manifest.auditCheckpoint).text).origin;
  const present = new Set(await listSegments(destination));
  for (const { id, manifestSha256 } of segments) {
    if (!present.has(id)) throw refuse(`audit segment ${id} is missing at ${destination.name}`);
    if ((await manifestDigest(destination, id)) !== manifestSha256) {
      throw refuse(`audit segment ${id} at ${destination.name} is not the one the backup names`);
    }
    try {
      if (options.depth === 'open') {
        await openSegment({ destination, id, key: options.manifestKey, keys: options.keys, origin });
      } else {
        await verifySegmentSignature({ destination, id, key: options.manifestKey });
      }
    } catch (err) {
      if (err instanceof SegmentError) throw refuse(err.message);
      if (err instanceof BackupError && err.code === 'TRESOR_ERR_BACKUP_NOT_FOUND') {
        throw refuse(`audit segment ${id} is incomplete at ${destination.name} (an object is missing)`);
      }
      throw err;
    }
  }
  return segments.length;
}
