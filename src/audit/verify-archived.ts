/**
 * Verifying a log whose oldest part is archived (docs/audit.md, "Verify"): entries [0, E) come from
 * the sealed segments on the backup destinations (archived-segments.ts checkedSegments: every copy
 * opened and checked, contiguous from 0, each segment's peaks before it those of the segments
 * before), the rest from the live store's snapshot from E on. Both feed ONE run of the verifier
 * (verify.ts), so an archived entry gets every check a live one gets — its leaf hash against the
 * segment's level-0 hash, canonical form, its own index — the tree goes on from the peaks at E
 * recomputed from the segments' leaf hashes, and a checkpoint of size ≤ E is compared with the root
 * recomputed from them.
 *
 * A problem with a copy of a segment is reported as kind `segment` at the segment's first index,
 * naming the segment and the destination. When no copy of a segment checks out, nothing after it can
 * be recomputed: the report stops there, naming it.
 *
 * E = 0 (nothing archived, or a store without `audit_archived`) is exactly verifyAuditLogSnapshot.
 * The snapshot is opened before E is read: E only grows, so the snapshot holds every live row from E
 * on; rows below E it may still hold (pruned since) are passed over, the segments being their record.
 */

import {
  ArchiveBrokenError,
  type ArchivedSegment,
  type ArchiveProblem,
  type AuditArchive,
  checkedSegments,
} from './archived-segments.ts';
import { type Checkpoint, verifyCheckpoint } from './checkpoint.ts';
import { leafStarts } from './leaf-batch-read.ts';
import type { AuditLogSnapshot } from './log-reader.ts';
import { verifyAuditLogSnapshot } from './log-reader.ts';
import { parseVerifierKey } from './note.ts';
import {
  type LeafBatch,
  type VerifyEntry,
  type VerifyInput,
  type VerifyProblem,
  type VerifyReport,
  verifyAuditLogAsync,
  verifyAuditLogInParallel,
} from './verify.ts';

/** Rows per batch handed to the verifier from a segment, as the store readers' batches. */
const SEGMENT_BATCH_ROWS = 4096;

export interface ArchivedLog {
  /** The archived end E. */
  end: number;
  /** How to read the segments: asked only when E > 0, with the log's origin. */
  archive(origin: string): Promise<AuditArchive>;
}

export async function verifyAuditLogWithArchive(
  snapshot: AuditLogSnapshot,
  archived: ArchivedLog,
  input: Omit<VerifyInput, 'entries' | 'checkpoints'>,
  options: { workers?: number; nice?: number } = {},
): Promise<VerifyReport> {
  const end = archived.end;
  if (end === 0) return verifyAuditLogSnapshot(snapshot, input, options);
  const checkpoints = await snapshot.checkpoints();
  const origin = input.origin ?? originOf(checkpoints, input.verifierKey);
  if (origin === null)
    return stopped(
      0,
      null,
      0,
      [],
      `entries [0, ${end}) are archived, but no checkpoint signed by the key names the log's origin to read them with: give --origin`,
    );
  const problems: ArchiveProblem[] = [];
  let archive: AuditArchive;
  try {
    archive = await archived.archive(origin);
  } catch (error) {
    return stopped(
      0,
      origin,
      0,
      [],
      `entries [0, ${end}) are archived, but the segments cannot be read: ${(error as Error).message}`,
    );
  }
  const live = snapshot.leafBatches();
  const entries = (async function* () {
    for await (const segment of checkedSegments(archive, end, (p) => problems.push(p)))
      yield* batchesOf(segment);
    for await (const e of live) {
      if (!('starts' in e)) {
        if (e.index >= end) yield e;
      } else if (e.first >= end) yield e;
      else if (e.first + e.count > end) yield* entriesOf(e, end);
    }
  })();
  let report: VerifyReport;
  try {
    report =
      Symbol.iterator in live
        ? await verifyAuditLogInParallel({ ...input, origin, entries, checkpoints }, options)
        : await verifyAuditLogAsync({ ...input, origin, entries, checkpoints });
  } catch (error) {
    if (!(error instanceof ArchiveBrokenError)) throw error;
    return stopped(error.index, origin, error.index, problems, error.message);
  }
  if (problems.length === 0) return report;
  const listed = problems.map(problemOf);
  const first = Math.min(...listed.map((p) => p.index as number));
  return {
    ...report,
    ok: false,
    problems: [...listed, ...report.problems],
    firstBadIndex: report.firstBadIndex === null ? first : Math.min(first, report.firstBadIndex),
  };
}

/** A segment's entries as LeafBatches (0x00 ‖ leaf ‖ 0x00 …), or one by one if a leaf holds a 0x00. */
function* batchesOf(segment: ArchivedSegment): Generator<LeafBatch | VerifyEntry> {
  for (let k = 0; k < segment.leaves.length; k += SEGMENT_BATCH_ROWS) {
    const leaves = segment.leaves.slice(k, k + SEGMENT_BATCH_ROWS);
    const hashes = segment.leafHashes.slice(k, k + SEGMENT_BATCH_ROWS);
    const first = segment.first + k;
    const zero = Buffer.alloc(1);
    const bytes = Buffer.concat([zero, ...leaves.flatMap((leaf) => [leaf, zero])]);
    const starts = leafStarts(bytes, leaves.length);
    if (starts !== null) {
      yield {
        first,
        count: leaves.length,
        bytes,
        starts,
        storedLeafHashes: Buffer.concat(hashes).toString('latin1'),
      };
      continue;
    }
    for (const [i, leaf] of leaves.entries())
      yield { index: first + i, leaf: leaf.toString('utf8'), storedLeafHash: hashes[i] as Buffer };
  }
}

/** The rows of `batch` from index `from` on, one by one. */
function* entriesOf(batch: LeafBatch, from: number): Generator<VerifyEntry> {
  const bytes = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.length);
  for (let i = from - batch.first; i < batch.count; i++) {
    yield {
      index: batch.first + i,
      leaf: bytes.toString('utf8', (batch.starts[i] as number) + 1, batch.starts[i + 1] as number),
      storedLeafHash: batch.storedLeafHashes.slice(i * 32, i * 32 + 32),
    };
  }
}

function problemOf(p: ArchiveProblem): VerifyProblem {
  const prefix = p.segment === null ? '' : `audit segment ${p.segment}: `;
  const why = p.message.startsWith(prefix) ? p.message.slice(prefix.length) : p.message;
  return {
    kind: 'segment',
    index: p.index,
    message: `${p.segment === null ? 'archive' : `segment ${p.segment}`} on destination ${p.destination}: ${why}`,
  };
}

/** The report of a verification that could not go past `at` in the archive. */
function stopped(
  at: number,
  origin: string | null,
  size: number,
  problems: ArchiveProblem[],
  message: string,
): VerifyReport {
  const listed = [...problems.map(problemOf), { kind: 'segment' as const, index: at, message }];
  return {
    ok: false,
    size,
    checkpoints: 0,
    witnessCheckpoints: 0,
    verifiedSize: 0,
    origin,
    firstBadIndex: Math.min(...listed.map((p) => p.index ?? at)),
    problems: listed,
    omittedProblems: 0,
  };
}

/** The origin of the smallest store checkpoint signed by the key (as the verifier picks it), or null. */
function originOf(notes: readonly string[], verifierKey: string): string | null {
  const verifier = parseVerifierKey(verifierKey);
  let best: Checkpoint | null = null;
  for (const note of notes) {
    try {
      const { checkpoint } = verifyCheckpoint(note, [verifier]);
      if (best === null || checkpoint.size < best.size) best = checkpoint;
    } catch {
      // not signed by the key: the verifier reports it
    }
  }
  return best?.origin ?? null;
}
