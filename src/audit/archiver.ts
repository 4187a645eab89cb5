/**
 * The archiving job: moves older parts of the audit log into sealed segments on every backup
 * destination (segment.ts). A pass seals the next segment — `segmentTiles` full tiles of 256
 * entries, from where the segments present on EVERY destination end — whenever that whole segment
 * lies more than `keepRecentEntries` below the tree size, and repeats while one does.
 *
 * Segments are contiguous from index 0: each destination's segments are counted from 0 until the
 * first gap, and the next segment starts where the least advanced destination stops, so a
 * destination added later, or one that failed a pass, is filled from the start again — only there:
 * a destination that holds a segment keeps its bytes (sealing again would use a new data key, and a
 * backup there names the digest of the segment's manifest, docs/backup.md).
 *
 * Nothing here deletes from the live log: a segment written and read back everywhere is what allows
 * the live store to drop its range afterwards (log-prune.ts; docs/audit.md, "Sealed segments").
 */
import type { KeyService } from '../keyd/operations.ts';
import type { Destination } from '../objects/destination.ts';
import type { AuditLogReader } from './log.ts';
import { peakPositions } from './merkle.ts';
import { listSegments, sealSegment } from './segment.ts';
import type { AuditTileReader } from './tile-reader.ts';
import { TILE_WIDTH } from './tiles.ts';

export interface AuditArchiverDeps {
  reader: Pick<AuditLogReader, 'levelHashes' | 'rootAt'>;
  tiles: AuditTileReader;
  /** The size of the tree the log has durably reached. */
  treeSize(): number;
  origin: string;
  keys: KeyService;
  destinations(): readonly Destination[];
  /** Entries below the tree size that stay out of segments. */
  keepRecentEntries: number;
  /** Full tiles (256 entries each) per segment. */
  segmentTiles: number;
}

export interface ArchivePass {
  /** Where the segments on every destination ended before the pass. */
  from: number;
  /** Segment ids sealed in this pass. */
  sealed: string[];
}

export interface AuditArchiver {
  /** One pass: seals every segment that is due. Throws on the first failure (the next pass retries). */
  run(): Promise<ArchivePass>;
  /** The end of the segments present on every destination (0 when there are none). */
  archivedEnd(): Promise<number>;
}

export function createAuditArchiver(deps: AuditArchiverDeps): AuditArchiver {
  const span = deps.segmentTiles * TILE_WIDTH;

  async function contiguousEnd(destination: Destination): Promise<number> {
    let end = 0;
    for (const id of await listSegments(destination)) {
      const [first, last] = id.slice('audit.'.length).split('-').map(Number);
      if (first !== end || last === undefined) break;
      end = last;
    }
    return end;
  }

  async function archivedEnd(): Promise<number> {
    const destinations = deps.destinations();
    if (destinations.length === 0) return 0;
    const ends = await Promise.all(destinations.map(contiguousEnd));
    return Math.min(...ends);
  }

  async function peaksOf(size: number): Promise<Buffer[]> {
    const peaks: Buffer[] = [];
    for (const { level, index } of peakPositions(size)) {
      const [hash] = await deps.reader.levelHashes(level, index, 1);
      if (hash) peaks.push(hash);
    }
    return peaks;
  }

  return {
    archivedEnd,
    async run() {
      const destinations = deps.destinations();
      const ends = await Promise.all(destinations.map(contiguousEnd));
      const from = destinations.length === 0 ? 0 : Math.min(...ends);
      const sealed: string[] = [];
      if (destinations.length === 0) return { from, sealed };
      for (let first = from; ; first += span) {
        const size = deps.treeSize();
        const end = first + span;
        if (end + deps.keepRecentEntries > size) break;
        // Only where it is missing: a segment a destination holds is never rewritten (a new seal
        // has a new data key, so new bytes, and a backup there names the old ones' digest).
        const lacking = destinations.filter((_, i) => (ends[i] ?? 0) <= first);
        const manifest = await sealSegment({
          origin: deps.origin,
          first,
          end,
          peaksBefore: await peaksOf(first),
          rootAtEnd: await deps.reader.rootAt(end),
          read: (tile) => deps.tiles.read(tile, size),
          keys: deps.keys,
          destinations: lacking,
        });
        sealed.push(manifest.segmentId);
      }
      return { from, sealed };
    },
  };
}
