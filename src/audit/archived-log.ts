/**
 * The archived part of the audit log: leaves, leaf hashes and tlog-tiles resources of the ranges
 * sealed into segments (segment.ts) on the backup destinations, for the readers (log.ts,
 * tile-reader.ts) once the live store no longer holds them below the archived end.
 *
 * Every segment used is opened with openSegment, which checks ALL of it (signature, manifest, each
 * object, each entry against its leaf hash, the root at its end) before anything in it is served.
 * A segment that is missing or does not check out on one destination is read from the next; when
 * none holds a whole valid copy the read fails with TRESOR_ERR_AUDIT_ARCHIVE_UNAVAILABLE (503) —
 * never wrong data. Opened segments are kept in a small LRU cache, and concurrent reads of one
 * segment share a single open.
 */
import { TresorError } from '../errors.ts';
import type { KeyService } from '../keyd/operations.ts';
import type { Destination } from '../objects/destination.ts';
import { listSegments, type OpenedSegment, openSegment, type SegmentKey } from './segment.ts';
import { formatTilePath, parseTilePath, TILE_HEIGHT, TILE_WIDTH, tileLeafRange } from './tiles.ts';

/**
 * Below the archived end the store keeps the tree's nodes of this level and up (one node of level 8
 * is a whole tile, the level-1 tile hashes); levels 0–7 there come from the segments' leaf hashes.
 */
export const FIRST_LEVEL_KEPT_BELOW_ARCHIVE = TILE_HEIGHT;

export interface ArchivedLog {
  /** Level-0 (leaf) hashes of [from, from + count), all below the archived end. */
  leafHashes(from: number, count: number): Promise<Buffer[]>;
  /** Leaf bytes (the canonical JSON) of [from, from + count), all below the archived end. */
  leaves(from: number, count: number): Promise<Buffer[]>;
  /**
   * A tlog-tiles resource of an archived full tile as served: `tile/0/<N>` or `tile/entries/<N>`;
   * undefined for any other resource, or a tile no segment covers.
   */
  tile(path: string): Promise<Buffer | undefined>;
}

/** What the readers take: the archived log and where it ends (0: nothing archived, all live). */
export interface ArchivedRange {
  log: ArchivedLog;
  /** The archived end, a multiple of 256: below it the live store may hold no leaves. */
  end: () => number;
}

export interface ArchivedLogDeps {
  destinations: () => readonly Destination[];
  keys: KeyService;
  /** The log's origin: a segment of another log is refused. */
  origin: string;
  /** keyd's backup-manifest public key, which signs the segments. */
  key: () => Promise<SegmentKey>;
  /** Opened segments kept (LRU); default 4. */
  cachedSegments?: number;
}

interface SegmentRange {
  id: string;
  first: number;
  end: number;
}

const DEFAULT_CACHED_SEGMENTS = 4;

function unavailable(message: string): TresorError {
  return new TresorError('TRESOR_ERR_AUDIT_ARCHIVE_UNAVAILABLE', message);
}

/** keyd's outages are answered as such (503 with its own detail), not as a bad segment. */
function isKeydOutage(err: unknown): boolean {
  return (
    err instanceof TresorError &&
    (err.code === 'TRESOR_ERR_KEYD_SEALED' ||
      err.code === 'TRESOR_ERR_KEYD_UNAVAILABLE' ||
      err.code === 'TRESOR_ERR_KEY_EXHAUSTED')
  );
}

export function createArchivedLog(deps: ArchivedLogDeps): ArchivedLog {
  const capacity = Math.max(1, deps.cachedSegments ?? DEFAULT_CACHED_SEGMENTS);
  /** Opened (or opening) segments by id, least recently used first. */
  const opened = new Map<string, Promise<OpenedSegment>>();
  let known: SegmentRange[] = [];

  /** The segments whole on any destination, by range (a segment's range is in its id). */
  async function listAll(): Promise<SegmentRange[]> {
    const ids = new Set<string>();
    for (const destination of deps.destinations()) {
      try {
        for (const id of await listSegments(destination)) ids.add(id);
      } catch {
        // an unreachable destination lists nothing; the others may hold the segment
      }
    }
    return [...ids].sort().map((id) => {
      const [first, end] = id.slice('audit.'.length).split('-').map(Number);
      return { id, first: first as number, end: end as number };
    });
  }

  async function segmentOf(index: number): Promise<SegmentRange> {
    const find = () => known.find((s) => s.first <= index && index < s.end);
    let found = find();
    if (found === undefined) {
      known = await listAll();
      found = find();
    }
    if (found === undefined) throw unavailable(`no audit segment covers entry ${index}`);
    return found;
  }

  async function openAnywhere(id: string): Promise<OpenedSegment> {
    const key = await deps.key();
    for (const destination of deps.destinations()) {
      try {
        return await openSegment({ destination, id, key, keys: deps.keys, origin: deps.origin });
      } catch (err) {
        if (isKeydOutage(err)) throw err;
        // missing or not checking out here: the next destination may hold a whole copy
      }
    }
    throw unavailable(`no destination holds a valid copy of audit segment ${id}`);
  }

  function open(id: string): Promise<OpenedSegment> {
    let segment = opened.get(id);
    if (segment !== undefined) {
      opened.delete(id);
      opened.set(id, segment);
      return segment;
    }
    segment = openAnywhere(id);
    opened.set(id, segment);
    segment.catch(() => {
      if (opened.get(id) === segment) opened.delete(id);
    });
    for (const oldest of opened.keys()) {
      if (opened.size <= capacity) break;
      opened.delete(oldest);
    }
    return segment;
  }

  /** [from, from + count) of one of a segment's arrays, crossing segments as needed. */
  async function range(
    from: number,
    count: number,
    pick: (segment: OpenedSegment) => Buffer[],
  ): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (let at = from; at < from + count; ) {
      const { id, first, end } = await segmentOf(at);
      const upTo = Math.min(end, from + count);
      out.push(...pick(await open(id)).slice(at - first, upTo - first));
      at = upTo;
    }
    return out;
  }

  return {
    leafHashes: (from, count) => range(from, count, (s) => s.leafHashes),
    leaves: (from, count) => range(from, count, (s) => s.leaves),
    async tile(path) {
      const tile = parseTilePath(path);
      if ((tile.level !== 0 && tile.level !== 'entries') || tile.width !== TILE_WIDTH) return undefined;
      const { start } = tileLeafRange(tile);
      let segment: SegmentRange;
      try {
        segment = await segmentOf(start);
      } catch {
        return undefined;
      }
      return (await open(segment.id)).tiles.get(formatTilePath(tile));
    },
  };
}
