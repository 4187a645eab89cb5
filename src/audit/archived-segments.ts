/**
 * The archived part of the audit log read back: entries [0, E) (archived-end.ts) live only in sealed
 * segments on the backup destinations, each opened and checked whole by openSegment (segment.ts).
 *
 * Two readers:
 * - checkedSegments, for `tresor audit verify` and the scheduled verification: every destination's
 *   copy of every segment below E is opened, so a tampered or missing copy anywhere is a problem
 *   named by its segment, destination and first index. The segments must run contiguously from 0,
 *   and each one's `peaksBefore` (which its signed root at `end` rests on) must equal the peaks of the
 *   tree of the leaf hashes of the segments before it. The leaves of the first copy that checks out
 *   are handed on; when no copy of a segment checks out the archive is broken there
 *   (ArchiveBrokenError): nothing after it can be recomputed.
 * - archivedEntries, for `tresor audit export`: the entries of an index range, each segment from the
 *   first destination whose copy checks out; none does: an error naming it. archivedSegments gives
 *   the same segments unopened, for the access review, which keeps its findings per segment.
 */
import { TresorError } from '../errors.ts';
import type { KeyService } from '../keyd/operations.ts';
import type { Destination } from '../objects/destination.ts';
import { MerkleAccumulator } from './merkle.ts';
import { listSegments, type OpenedSegment, openSegment, type SegmentKey } from './segment.ts';

/** What reading segments back needs: where they are, keyd (their data keys), its key, the log's origin. */
export interface AuditArchive {
  destinations: readonly Destination[];
  keys: KeyService;
  /** keyd's backup-manifest key, which signs segments. */
  key: SegmentKey;
  origin: string;
}

/** A problem with one copy of the archive (never an entry's content). */
export interface ArchiveProblem {
  /** The first index the problem implicates: the segment's start, or where segments stop. */
  index: number;
  /** The segment concerned, when there is one. */
  segment: string | null;
  destination: string;
  message: string;
}

/** A segment's entries as checked: leaves and level-0 hashes of [first, first + leaves.length). */
export interface ArchivedSegment {
  id: string;
  first: number;
  leaves: Buffer[];
  leafHashes: Buffer[];
}

/** No copy of a segment below E checks out: the archive cannot be read past `index`. */
export class ArchiveBrokenError extends TresorError<'TRESOR_ERR_AUDIT_SEGMENT_INVALID'> {
  readonly index: number;

  constructor(index: number, message: string) {
    super('TRESOR_ERR_AUDIT_SEGMENT_INVALID', message);
    this.index = index;
  }
}

/** A segment id's range (`audit.<first>-<end>`, segment.ts). */
function rangeOf(id: string): { first: number; end: number } {
  const [first, end] = id.slice('audit.'.length).split('-').map(Number);
  return { first: first ?? Number.NaN, end: end ?? Number.NaN };
}

/** A destination's whole segments by their first index, or why they cannot be listed. */
async function segmentsByFirst(destination: Destination): Promise<Map<number, string> | Error> {
  try {
    const byFirst = new Map<number, string>();
    for (const id of await listSegments(destination)) byFirst.set(rangeOf(id).first, id);
    return byFirst;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

const reasonOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * Every segment below `end` in log order, each copy checked (the header comment); `report` is told
 * each problem. The last segment may reach past `end`: only its leaves below `end` are handed on.
 */
export async function* checkedSegments(
  archive: AuditArchive,
  end: number,
  report: (problem: ArchiveProblem) => void,
): AsyncGenerator<ArchivedSegment> {
  const { destinations } = archive;
  if (end > 0 && destinations.length === 0)
    throw new ArchiveBrokenError(
      0,
      `entries [0, ${end}) are archived in segments, but no backup destination is configured to read them from`,
    );
  const listings = await Promise.all(destinations.map(segmentsByFirst));
  for (const [i, listing] of listings.entries()) {
    if (listing instanceof Error)
      report({
        index: 0,
        segment: null,
        destination: (destinations[i] as Destination).name,
        message: `the segments cannot be listed: ${listing.message}`,
      });
  }
  const tree = new MerkleAccumulator();
  for (let at = 0; at < end; ) {
    let chosen: OpenedSegment | undefined;
    const failures: string[] = [];
    for (const [i, destination] of destinations.entries()) {
      const listing = listings[i];
      if (listing instanceof Error || listing === undefined) {
        failures.push(`${destination.name}: unreadable`);
        continue;
      }
      const id = listing.get(at);
      const fail = (segment: string | null, message: string) => {
        report({ index: at, segment, destination: destination.name, message });
        failures.push(`${destination.name}: ${message}`);
      };
      if (id === undefined) {
        fail(null, `no segment starts at index ${at}, though entries [${at}, ${end}) are archived`);
        continue;
      }
      let opened: OpenedSegment;
      try {
        opened = await openSegment({
          destination,
          id,
          key: archive.key,
          keys: archive.keys,
          origin: archive.origin,
        });
      } catch (error) {
        fail(id, reasonOf(error));
        continue;
      }
      if (opened.manifest.first !== at || opened.manifest.end <= at) {
        fail(id, `audit segment ${id}: its manifest does not start at index ${at}`);
        continue;
      }
      const peaks = tree.peaks().map((p) => p.toString('base64'));
      const before = opened.manifest.peaksBefore;
      if (before.length !== peaks.length || before.some((p, k) => p !== peaks[k])) {
        fail(id, `audit segment ${id}: its peaks before index ${at} are not those of the segments before it`);
        continue;
      }
      if (chosen === undefined) chosen = opened;
      else if (chosen.manifest.rootAtEnd !== opened.manifest.rootAtEnd)
        fail(id, `audit segment ${id}: this copy's root differs from the copy on another destination`);
    }
    if (chosen === undefined)
      throw new ArchiveBrokenError(
        at,
        `no copy of the archived entries from index ${at} checks out (${failures.join('; ')}): the log cannot be verified past it`,
      );
    const take = Math.min(chosen.leaves.length, end - at);
    const leafHashes = chosen.leafHashes.slice(0, take);
    for (const h of leafHashes) tree.append(h);
    yield { id: chosen.manifest.segmentId, first: at, leaves: chosen.leaves.slice(0, take), leafHashes };
    at = chosen.manifest.end;
  }
}

/** A segment of an archived range, found but not opened yet (archivedSegments). */
export interface ArchivedRangeSegment {
  /** The id of the copy tried first: what a reader that keeps its findings per segment is keyed by. */
  id: string;
  first: number;
  /** Where the copy tried first ends. */
  end: number;
  /** The first copy that checks out, opened whole (openSegment); none does: ArchiveBrokenError. */
  open(): Promise<{ id: string; end: number; leaves: Buffer[] }>;
}

/**
 * The segments holding the archived entries with index in [from, to) (to ≤ E), in order, each
 * opened only when its reader asks: a reader that already holds what it needs of an immutable
 * segment (its id) goes on without opening it. Segments wholly before `from` are skipped.
 */
export async function* archivedSegments(
  archive: AuditArchive,
  from: number,
  to: number,
): AsyncGenerator<ArchivedRangeSegment> {
  if (from >= to) return;
  if (archive.destinations.length === 0)
    throw new ArchiveBrokenError(
      from,
      `entries from ${from} are archived, but no backup destination is configured`,
    );
  const listings = await Promise.all(archive.destinations.map(segmentsByFirst));
  for (let at = 0; at < to; ) {
    const copies: { destination: Destination; id: string; end: number }[] = [];
    const failures: string[] = [];
    for (const [i, destination] of archive.destinations.entries()) {
      const listing = listings[i];
      const id = listing instanceof Error ? undefined : listing?.get(at);
      if (id === undefined) failures.push(`${destination.name}: no segment starts at ${at}`);
      else if (!(rangeOf(id).end > at)) failures.push(`${destination.name}: ${id} is not a range`);
      else copies.push({ destination, id, end: rangeOf(id).end });
    }
    const tried = copies[0];
    if (tried === undefined)
      throw new ArchiveBrokenError(
        at,
        `the archived entries from index ${at} cannot be read (${failures.join('; ')})`,
      );
    const first = at;
    let next = tried.end;
    if (next > from)
      yield {
        id: tried.id,
        first,
        end: tried.end,
        async open() {
          for (const { destination, id, end } of copies) {
            try {
              const opened = await openSegment({
                destination,
                id,
                key: archive.key,
                keys: archive.keys,
                origin: archive.origin,
              });
              next = end;
              return { id, end: opened.manifest.end, leaves: opened.leaves };
            } catch (error) {
              failures.push(`${destination.name}: ${reasonOf(error)}`);
            }
          }
          throw new ArchiveBrokenError(
            first,
            `the archived entries from index ${first} cannot be read (${failures.join('; ')})`,
          );
        },
      };
    at = next;
  }
}

/**
 * The archived entries with index in [from, to) (to ≤ E), in order, as their canonical JSON text;
 * each segment read from the first destination whose copy checks out.
 */
export async function* archivedEntries(
  archive: AuditArchive,
  from: number,
  to: number,
): AsyncGenerator<{ index: number; leaf: string }> {
  for await (const segment of archivedSegments(archive, from, to)) {
    const { end, leaves } = await segment.open();
    const last = Math.min(end, to);
    for (let index = Math.max(segment.first, from); index < last; index++)
      yield { index, leaf: (leaves[index - segment.first] as Buffer).toString('utf8') };
  }
}
