/**
 * Pruning the live audit log behind its sealed segments (archiver.ts, segment.ts): once a range of
 * the log is in segments on EVERY backup destination, the control store drops that range's leaf
 * blocks, tenant entries and tree nodes of levels 0–7, and raises the archived cursor
 * (archived-cursor.ts) over it. Nodes of level 8 and up stay: with them the live store still gives
 * the tree's root at any size, the peaks the sequencer appends to, the tlog-tiles tiles of level 1
 * and up, and every proof's upper part; the level-0 tiles of the range are in its segments.
 *
 * A pass, in order:
 *   1. the target: the end of the segments that follow the cursor without a gap on every
 *      destination, no further than the archiver's contiguous end, the tree size less
 *      `keepRecentEntries` (at least one entry stays), and the latest signed checkpoint (the checkpointer's consistency
 *      proof from it needs its lower peaks);
 *   2. every segment in (cursor, target] is read back from every destination and checked whole
 *      (openSegment), and its root at its end must be the live log's: a segment missing, tampered
 *      with or of another tree on any one destination stops the pass before anything is deleted;
 *   3. ONE control-store transaction raises the cursor, deletes the range's rows (the log's triggers
 *      refuse any row not wholly below the new cursor) and records `audit.pruned` in the control
 *      outbox, so the log itself says which range left it and for which segments. A longer range
 *      goes in several such transactions, SEGMENTS_PER_TRANSACTION segments each, steps 1–3 again
 *      for each.
 *
 * The append path never reads below the cursor: the sequencer restores from the peaks of its size
 * (levels ≥ 8 below the last multiple of 256, which is at or above the cursor) and rewrites only the
 * last, partial, leaf block, which lies above it.
 */
import { type Kysely, sql } from 'kysely';
import type { KeyService } from '../keyd/operations.ts';
import type { Destination } from '../objects/destination.ts';
import type { Store } from '../store/types.ts';
import { PRUNABLE_NODE_LEVELS, type WithAuditArchived } from './archived-cursor.ts';
import { readArchivedEnd } from './archived-end.ts';
import { appendAuditEvent, type WithAuditEvents } from './event.ts';
import type { AuditLogReader } from './log.ts';
import type { WithAuditLog } from './log-schema.ts';
import { listSegments, openSegment, SegmentError } from './segment.ts';
import { systemEvent } from './system-event.ts';

export type PruneDB = WithAuditLog & WithAuditArchived & WithAuditEvents;

export interface PruneArchivedDeps {
  control: Store<PruneDB>;
  /** The end of the segments present on every destination (the archiver's archivedEnd()). */
  archivedEnd(): Promise<number>;
  destinations(): readonly Destination[];
  keys: KeyService;
  origin: string;
  reader: Pick<AuditLogReader, 'rootAt' | 'latestCheckpoint'>;
  /** The size of the tree the log has durably reached. */
  treeSize(): number;
  /** Entries below the tree size that are never pruned (at least 1 is always kept). */
  keepRecentEntries: number;
  now(): Date;
  /**
   * Called with the new cursor once every segment up to it checked out, before the transaction that
   * deletes: this process's readers take the range from the segments from then on, so no read finds
   * its rows gone between the commit and the caller's learning of it (a read from checked segments
   * is right whether or not the delete then commits).
   */
  willPrune?(to: number): void;
  /** Segments per transaction (SEGMENTS_PER_TRANSACTION unless a test says otherwise). */
  segmentsPerTransaction?: number;
}

export interface PrunePass {
  /** The cursor before the pass. */
  from: number;
  /** The cursor after it (= from when nothing was pruned). */
  to: number;
  /** The segments whose range was pruned. */
  segments: string[];
}

/** The system actor of the archiving job's audit events. */
const ACTOR = 'audit-archive';

function rangeOf(id: string): [number, number] {
  const [first, end] = id.slice('audit.'.length).split('-').map(Number);
  return [first ?? Number.NaN, end ?? Number.NaN];
}

/** A destination's segment ids that follow `cursor` without a gap and end at or before `limit`. */
async function chainFrom(destination: Destination, cursor: number, limit: number): Promise<string[]> {
  const byFirst = new Map<number, string>();
  for (const id of await listSegments(destination)) byFirst.set(rangeOf(id)[0], id);
  const chain: string[] = [];
  for (let at = cursor; ; ) {
    const id = byFirst.get(at);
    if (id === undefined) break;
    const end = rangeOf(id)[1];
    if (end > limit || end <= at) break;
    chain.push(id);
    at = end;
  }
  return chain;
}

function commonPrefix(chains: readonly string[][]): string[] {
  const [first = [], ...rest] = chains;
  let n = first.length;
  for (const chain of rest) {
    let i = 0;
    while (i < n && chain[i] === first[i]) i++;
    n = i;
  }
  return first.slice(0, n);
}

/**
 * Segments pruned by one transaction at most. A log that turns pruning on after years holds
 * hundreds of segments behind the archiver; one transaction deleting all their rows (millions, each
 * through the log's refusing trigger on PostgreSQL) would hold the control store's writer for
 * minutes. A pass prunes them in transactions of this many segments (16,384 entries each by
 * default), one after another, each with its own `audit.pruned` entry.
 */
export const SEGMENTS_PER_TRANSACTION = 16;

/** Prunes what is safely archived (the header comment's steps). Throws when a segment does not check out. */
export async function pruneArchived(deps: PruneArchivedDeps): Promise<PrunePass> {
  const db = deps.control.db as Kysely<PruneDB>;
  const from = await readArchivedEnd(db);
  const pruned: string[] = [];
  let to = from;
  for (;;) {
    const step = await pruneStep(deps, to);
    if (step.to === to) break;
    pruned.push(...step.segments);
    to = step.to;
  }
  return { from, to, segments: pruned };
}

/** One transaction's worth: at most SEGMENTS_PER_TRANSACTION segments from `cursor` on. */
async function pruneStep(deps: PruneArchivedDeps, cursor: number): Promise<PrunePass> {
  const nothing: PrunePass = { from: cursor, to: cursor, segments: [] };
  const destinations = deps.destinations();
  if (destinations.length === 0) return nothing;
  const signed = (await deps.reader.latestCheckpoint())?.size ?? 0;
  // At least the last entry stays: the log's size is read from its last leaf block (storedLogSize).
  const kept = Math.max(deps.keepRecentEntries, 1);
  const limit = Math.min(await deps.archivedEnd(), deps.treeSize() - kept, signed);
  if (limit <= cursor) return nothing;
  const segments = commonPrefix(
    await Promise.all(destinations.map((d) => chainFrom(d, cursor, limit))),
  ).slice(0, deps.segmentsPerTransaction ?? SEGMENTS_PER_TRANSACTION);
  const last = segments[segments.length - 1];
  if (last === undefined) return nothing;
  const target = rangeOf(last)[1];

  const key = await deps.keys.call('publicKey', { purpose: 'backup-manifest' });
  for (const id of segments) {
    const live = (await deps.reader.rootAt(rangeOf(id)[1])).toString('base64');
    for (const destination of destinations) {
      const opened = await openSegment({
        destination,
        id,
        key: { name: key.name, publicKey: key.publicKey },
        keys: deps.keys,
        origin: deps.origin,
      });
      if (opened.manifest.rootAtEnd !== live)
        throw new SegmentError(id, 'its root at its end is not the live log’s');
    }
  }

  deps.willPrune?.(target);
  const event = systemEvent(
    { id: ACTOR, action: 'audit.pruned', target: { from: cursor, to: target, segments } },
    deps.now(),
  );
  const pruned = await deps.control.write(async (trx) => {
    const before = await trx
      .selectFrom('audit_archived')
      .select('end_idx')
      .where('id', '=', 1)
      .executeTakeFirstOrThrow();
    // Another process pruned since this pass read the cursor: its pass stands, this one is void.
    if (Number(before.end_idx) !== cursor) return false;
    const raised = await trx
      .updateTable('audit_archived')
      .set({ end_idx: target })
      .where('id', '=', 1)
      .where('end_idx', '=', cursor)
      .executeTakeFirst();
    if (Number(raised.numUpdatedRows) !== 1) return false;
    await trx.deleteFrom('audit_leaves').where('idx', '>=', cursor).where('idx', '<', target).execute();
    // By tenant ref first: the table's key is (ref, idx).
    await sql`DELETE FROM audit_tenant_entries WHERE ref IN (SELECT ref FROM audit_tenants)
      AND idx >= ${cursor} AND idx < ${target}`.execute(trx);
    for (let level = 0; level < PRUNABLE_NODE_LEVELS; level++) {
      const span = 2 ** level;
      await trx
        .deleteFrom('audit_nodes')
        .where('level', '=', level)
        .where('idx', '>=', Math.floor(cursor / span))
        .where('idx', '<', Math.floor(target / span))
        .execute();
    }
    await appendAuditEvent(trx, event);
    return true;
  });
  return pruned ? { from: cursor, to: target, segments } : nothing;
}
