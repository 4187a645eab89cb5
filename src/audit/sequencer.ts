/**
 * The sequencer: the one writer of the audit log. Every store (the control store and each tenant's)
 * receives its audit events in an `audit_events` outbox, in the same transaction as the change they
 * describe (SQLite WAL gives no atomic commit across files, so the event must live beside the
 * change). The sequencer moves them, in batches, into the single global log of the control store:
 *
 *   1. take every source marked dirty since the last pass (a store committed events; or startup);
 *   2. read each source's events after its cursor (at most BATCH_PER_SOURCE);
 *   3. give them global indexes, canonicalise each entry (RFC 8785) = its leaf, hash the leaves and
 *      grow a staged copy of the tree, collecting the perfect subtrees each append completes;
 *   4. ONE control-store write: the entries, the new tree nodes and the advanced cursors, so a crash
 *      anywhere either moved a batch exactly once or not at all (the cursor is in the same
 *      transaction as the entries it covers);
 *   5. only after that write is durable, adopt the staged tree and tell the listeners (stream, sinks,
 *      checkpointer);
 *   6. about once a second (`removeEveryMs`), delete from each outbox the rows its durable cursor
 *      covers (src/audit/outbox-removal.ts) — one transaction per source, never one per event, and
 *      for a source with few moved rows only every 30 s (REMOVE_BATCH_ROWS, REMOVE_LINGER_PASSES).
 *
 * Passes never overlap (one chain of promises), so indexes are assigned by exactly one writer, and
 * hashing costs one leaf hash plus amortised one node hash per entry — no global lock per entry,
 * no chain walk. On a database that several server processes share (PostgreSQL), the sequencer
 * runs only while it holds the lease (`deps.lease`, sequencer-lease.ts): it resyncs the tree from the
 * store when it takes it, sweeps every source each `sweepMs` (other processes' commits cannot
 * notify it), fences each write against a lost lease, and stops at once when the lease is lost; a
 * process without the lease is a standby whose requests still commit their events to the outboxes.
 * Across processes (PostgreSQL), `follow()` is the standby's side: another process appended to the
 * log (its NOTIFY on `logChannel`, sent in the same transaction as the entries, so only once they are
 * durable; or the standby's own sweep each `sweepMs`), so the standby reloads its tree head from the
 * store and tells its listeners (its live stream, sinks, metrics) about the new entries; and the
 * holder's `notify()` is also called for other processes' outbox commits (their NOTIFY,
 * src/store/pg/group-commit.ts), so it need not wait for its sweep. Requests never wait for the sequencer: their events are already durable in their
 * outbox; `health()` turns red if the sequencer cannot move them for longer than a bound, and data
 * routes then fail closed.
 */
import { CompiledQuery, type Kysely } from 'kysely';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import type { WithAuditEvents } from './event.ts';
import {
  type LeafBlockRow,
  readLeaves,
  storedLogSize,
  tailBlockQuery,
  tailOf,
  tenantOfLeaf,
} from './leaf-store.ts';
import { readTreeNodes } from './log.ts';
import { type LogAppend, logStatements, numbered } from './log-append.ts';
import type { WithAuditLog } from './log-schema.ts';
import { MerkleAccumulator, peakPositions } from './merkle.ts';
import { removeMovedEvents } from './outbox-removal.ts';
import type { PendingSources, PendingToken } from './pending-sources.ts';
import { packHashes, sequenceBatch, unpackHashes } from './sequence-batch.ts';
import type { SequencerLease } from './sequencer-lease.ts';
import { createSequencerThread } from './sequencer-thread.ts';

/** The control store's own outbox; every other source is a tenant id. */
export const CONTROL_SOURCE = 'control';
/** Events read from one source per pass: bounds a pass's transaction. */
export const BATCH_PER_SOURCE = 4096;
export interface SequencedEntry {
  index: number;
  tenant: string | null;
  /** The entry's RFC 8785 canonical JSON: the leaf bytes, as UTF-8. */
  leaf: string;
}

export interface SequencerHealth {
  ok: boolean;
  /** Why not, for operators (never entry contents). */
  reason?: string;
  /** Events committed to an outbox but not yet in the log, as far as the sequencer knows. */
  pendingSources: number;
  /** The last pass that failed, if the failure is not yet recovered. */
  failingSince?: Date;
}

export interface AuditSequencer {
  /** Restores the tree from the store and moves what every source still holds. */
  start(): Promise<void>;
  /** A store committed audit events: move them soon (never waits). */
  notify(source: string): void;
  /** Moves everything committed to `source` (or to every dirty source) before the call; for shutdown, tenant close and tests. */
  drain(source?: string): Promise<void>;
  /** The log's size and root now (only durable entries). */
  treeHead(): { size: number; root: Buffer };
  onAppended(listener: (entries: readonly SequencedEntry[]) => void): () => void;
  health(): SequencerHealth;
  /**
   * A standby (on a shared database, without the lease): another process may have appended to the
   * log; reload the tree head from the store and tell the listeners of the new entries. Nothing
   * while this process holds the lease (it appends itself) or without a lease.
   */
  follow(): Promise<void>;
  /** Deletes now every outbox row already in the log (else done by the removal passes); for tests. */
  removeMoved(): Promise<void>;
  /** Passes that appended entries, and how many of them ran on the worker thread (metrics, tests). */
  stats(): { passes: number; workerPasses: number };
  close(): Promise<void>;
}

type ControlStore = Store<WithAuditLog & WithAuditEvents>;

export interface AuditSequencerDeps {
  control: ControlStore;
  /** The outbox store of a source: CONTROL_SOURCE or a tenant id. */
  openSource(source: string): Promise<Store<WithAuditEvents>>;
  /**
   * Every source that may hold events not yet moved: at start and in each sweep. With `pending`, the
   * tenants it marked (pending-sources.ts), never every live tenant.
   */
  listSources(): Promise<string[]>;
  /** The tenants' pending marks: cleared here once a tenant's outbox is drained (pending-sources.ts). */
  pending?: Pick<PendingSources, 'before' | 'drained' | 'gone'>;
  now?: () => Date;
  /** A pass that keeps failing this long makes health() red (default 5 s). */
  failureBoundMs?: number;
  /** Delay between a notify() and the pass, to gather more events per batch (default 50 ms). */
  gatherMs?: number;
  /**
   * Where the control store is, for the sequencer's worker thread: batches of at least `workerFrom`
   * events (default 64) are canonicalised, hashed and written there, through the worker's own
   * connection, while `whileIdle` holds the main thread's writer of that store. Without it every pass
   * runs on the calling thread.
   */
  offload?: {
    path: string;
    whileIdle<T>(outside: () => Promise<T>): Promise<T>;
    workerFrom?: number;
  };
  /** On a database shared by several processes: sequence only while holding it (started and closed here). */
  lease?: SequencerLease;
  /** While holding the lease, every source is looked at this often (default 1 s). */
  sweepMs?: number;
  /** Raw statements with `$1, $2…` parameters (PostgreSQL) instead of `?` (SQLite). */
  numberedParameters?: boolean;
  /**
   * PostgreSQL: each log write NOTIFYs this channel with the log's new size, in its own transaction
   * (delivered at its commit), so the other processes' `follow()` runs at once.
   */
  logChannel?: string;
  /**
   * Removal passes run this often (default 1 s; src/audit/outbox-removal.ts). A pass clears an outbox
   * once REMOVE_BATCH_ROWS moved rows wait in it, or once its first waiting row has waited
   * REMOVE_LINGER_PASSES passes.
   */
  removeEveryMs?: number;
  /** How long a few moved rows may wait in an outbox (default REMOVE_LINGER_PASSES × removeEveryMs). */
  removeLingerMs?: number;
}

/**
 * An outbox is cleared once this many moved rows wait in it (a busy one: once a pass), else after
 * REMOVE_LINGER_PASSES passes. Each clearing is a transaction, on SQLite an fsync, of the outbox's
 * store: a write to each of 1,000 tenants a second would otherwise be followed by 1,000 clearing
 * transactions a second on the sequencer's chain, one per write.
 */
export const REMOVE_BATCH_ROWS = 64;
export const REMOVE_LINGER_PASSES = 30;

/** A standby's drain waits at most this long for the lease holder to move a source's events. */
const STANDBY_DRAIN_LIMIT_MS = 30_000;

/** Batches of at least this many events go to the worker thread, when there is one (deps.offload). */
export const DEFAULT_WORKER_FROM = 64;

export function createAuditSequencer(deps: AuditSequencerDeps): AuditSequencer {
  const now = deps.now ?? (() => new Date());
  const failureBoundMs = deps.failureBoundMs ?? 5_000;
  const gatherMs = deps.gatherMs ?? 50;
  const control = deps.control as unknown as Store<WithAuditLog>;

  let tree = new MerkleAccumulator();
  let head: { tree: typeof tree; value: { size: number; root: Buffer } } | undefined;
  const cursors = new Map<string, number>();
  const dirty = new Set<string>();
  const listeners = new Set<(entries: readonly SequencedEntry[]) => void>();
  let chain: Promise<void> = Promise.resolve();
  let scheduled: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let failingSince: Date | undefined;
  let lastFailure: string | undefined;
  let retryDelayMs = 50;
  let closed = false;
  let resync = false;
  const counts = { passes: 0, workerPasses: 0 };
  const removeEveryMs = deps.removeEveryMs ?? 1_000;
  const removeLingerMs = deps.removeLingerMs ?? REMOVE_LINGER_PASSES * removeEveryMs;
  /** Per source, the durable cursor whose rows are still to be deleted from its outbox. */
  const removable = new Map<string, number>();
  /** Per source, how far its outbox was cleared by this process. */
  const removed = new Map<string, number>();
  /** Per source in `removable`, when its first uncleared moved row was seen (ms). */
  const waitingSince = new Map<string, number>();
  let removalTimer: NodeJS.Timeout | undefined;
  const offload = deps.offload;
  const workerFrom = offload?.workerFrom ?? DEFAULT_WORKER_FROM;
  const thread = createSequencerThread();
  const lease = deps.lease;
  const sweepMs = deps.sweepMs ?? 1_000;
  let sweepTimer: NodeJS.Timeout | undefined;
  let stopLeaseWatch: (() => void) | undefined;
  let followTimer: NodeJS.Timeout | undefined;
  /** Whether this process may write the log now. */
  const leading = () => lease === undefined || lease.held();

  function storedSize(): Promise<number> {
    return storedLogSize(control.db as Kysely<WithAuditLog>);
  }

  async function restore(known?: number): Promise<void> {
    const db = control.db as Kysely<WithAuditLog>;
    const size = known ?? (await storedSize());
    const peaks: Buffer[] = [];
    const positions = peakPositions(size);
    const nodes = await readTreeNodes(
      db,
      positions.map((p) => ({ level: p.level, idx: p.index })),
    );
    for (const p of positions) {
      const hash = nodes.get(`${p.level}/${p.index}`);
      if (!hash)
        throw new TresorError('TRESOR_ERR_INTERNAL', `audit tree node ${p.level}/${p.index} is missing`);
      peaks.push(hash);
    }
    tree = MerkleAccumulator.restore(size, peaks);
    for (const row of await db.selectFrom('audit_cursors').select(['source', 'seq']).execute()) {
      cursors.set(row.source, Number(row.seq));
    }
  }

  /** One pass over the sources dirty now. */
  async function pass(only?: string): Promise<void> {
    // Without the lease the sources stay dirty: taking it resyncs and moves them.
    if (!leading()) return;
    const sources = only !== undefined ? [only] : [...dirty];
    for (const s of sources) dirty.delete(s);
    if (sources.length === 0) return;
    // After a failed pass, start again from what the store holds: a write whose answer was lost (the
    // worker stopped after its COMMIT) must not be appended a second time.
    if (resync) {
      await restore().catch((error: unknown) => {
        for (const s of sources) dirty.add(s);
        scheduleRetry();
        throw error;
      });
      resync = false;
    }

    let staged = tree;
    let entries: SequencedEntry[] = [];
    const advanced = new Map<string, number>();
    /** Tenants read to their end in this pass (their marks may go once the pass is durable), or gone. */
    const drained: Array<{ source: string; token: PendingToken; gone: boolean }> = [];
    try {
      const events: string[] = [];
      const tenants: (string | null)[] = [];
      for (const source of sources) {
        const token = source === CONTROL_SOURCE ? undefined : deps.pending?.before(source);
        const store = await deps.openSource(source).catch((error: unknown) => {
          // A destroyed tenant store has nothing left to move (close drains it first).
          if (error instanceof TresorError && error.code === 'TRESOR_ERR_NOT_FOUND') return null;
          throw error;
        });
        if (store === null) {
          if (source !== CONTROL_SOURCE) drained.push({ source, token, gone: true });
          continue;
        }
        const after = cursors.get(source) ?? 0;
        const rows = await store.db
          .selectFrom('audit_events')
          .select(['seq', 'tenant', 'event'])
          .where('seq', '>', after)
          .orderBy('seq')
          .limit(BATCH_PER_SOURCE)
          .execute();
        if (rows.length === BATCH_PER_SOURCE)
          dirty.add(source); // more to move: next pass
        else if (source !== CONTROL_SOURCE) drained.push({ source, token, gone: false });
        for (const row of rows) {
          events.push(row.event);
          tenants.push(row.tenant);
        }
        const last = rows[rows.length - 1];
        if (last) advanced.set(source, Number(last.seq));
      }
      if (events.length > 0) {
        const size = tree.size;
        const peaks = packHashes(tree.peaks());
        let leaves: string[];
        let grown: Uint8Array;
        if (offload !== undefined && events.length >= workerFrom) {
          // Leaves, nodes and the write on the worker thread; here only two messages.
          const sequenced = await thread.request({ op: 'sequence', size, peaks, events }, [
            peaks.buffer as ArrayBuffer,
          ]);
          leaves = sequenced.leaves as string[];
          grown = sequenced.peaks as Uint8Array;
          const request = { op: 'write', batch: sequenced.id, path: offload.path, tenants } as const;
          await offload.whileIdle(() => thread.request({ ...request, cursors: [...advanced] }));
          counts.workerPasses += 1;
        } else {
          const batch = sequenceBatch({ size, peaks, events });
          leaves = batch.leaves;
          grown = batch.peaks;
          const hashes = unpackHashes(batch.nodeHashes);
          const entries = leaves.map((leaf, i) => [size + i, tenants[i] ?? null, leaf] as const);
          const nodes = hashes.map(
            (hash, i) => [batch.nodeLevels[i] as number, batch.nodeIndexes[i] as number, hash] as const,
          );
          await control.write(async (trx) => {
            await lease?.fence(trx as unknown as Parameters<SequencerLease['fence']>[0]);
            // The block the log ends inside, read in this transaction: the new leaves complete it.
            const tailQuery = tailBlockQuery(size);
            const tailRows =
              tailQuery === null
                ? []
                : (
                    await trx.executeQuery<LeafBlockRow>(
                      CompiledQuery.raw(
                        deps.numberedParameters ? numbered(tailQuery.sql) : tailQuery.sql,
                        tailQuery.parameters,
                      ),
                    )
                  ).rows;
            const append: LogAppend = {
              entries,
              tail: tailOf(tailRows, size),
              nodes,
              cursors: [...advanced],
            };
            for (const { sql, parameters } of logStatements(append))
              await trx.executeQuery(
                CompiledQuery.raw(deps.numberedParameters ? numbered(sql) : sql, parameters),
              );
            if (deps.logChannel !== undefined)
              await trx.executeQuery(
                CompiledQuery.raw('SELECT pg_notify($1, $2)', [
                  deps.logChannel,
                  String(size + leaves.length),
                ]),
              );
          });
        }
        counts.passes += 1;
        entries = leaves.map((leaf, i) => ({ index: size + i, tenant: tenants[i] ?? null, leaf }));
        staged = MerkleAccumulator.restore(size + leaves.length, unpackHashes(grown));
      }
    } catch (error) {
      for (const s of sources) dirty.add(s);
      failingSince ??= now();
      resync = true;
      lastFailure = error instanceof Error ? ((error as { code?: string }).code ?? error.name) : 'error';
      scheduleRetry();
      throw error;
    }
    tree = staged;
    for (const [source, seq] of advanced) cursors.set(source, seq);
    // Every source looked at whose durable cursor is past what was cleared (after a restart: every
    // one, so rows left by a crash before their removal go too).
    for (const source of sources) {
      const cursor = cursors.get(source);
      if (cursor !== undefined && cursor > (removed.get(source) ?? 0)) {
        removable.set(source, cursor);
        if (!waitingSince.has(source)) waitingSince.set(source, Date.now());
      }
    }
    if (removable.size > 0) scheduleRemoval();
    failingSince = undefined;
    lastFailure = undefined;
    retryDelayMs = 50;
    if (entries.length > 0) tell(entries);
    if (dirty.size > 0) schedule();
    const pending = deps.pending;
    if (pending !== undefined && drained.length > 0) {
      // After the log write is durable; a mark left in place is harmless, so failures are ignored.
      await Promise.all(
        drained.map(({ source, token, gone }) =>
          gone ? pending.gone(source, token) : pending.drained(source, token, cursors.get(source) ?? 0),
        ),
      ).catch(() => undefined);
    }
  }

  /**
   * Clears the outboxes of what the log holds: those due (REMOVE_BATCH_ROWS waiting, or waiting
   * REMOVE_LINGER_PASSES passes), or all of them when `all`. A source that fails, or is not due yet,
   * stays for a later pass.
   */
  async function removalPass(all: boolean): Promise<void> {
    if (!leading()) return;
    const at = Date.now();
    const round = [...removable].filter(
      ([source, cursor]) =>
        all ||
        cursor - (removed.get(source) ?? 0) >= REMOVE_BATCH_ROWS ||
        at - (waitingSince.get(source) ?? at) >= removeLingerMs,
    );
    for (const [source] of round) removable.delete(source);
    for (const [source, cursor] of round) {
      try {
        const store = await deps.openSource(source);
        await removeMovedEvents(store, cursor);
        removed.set(source, Math.max(cursor, removed.get(source) ?? 0));
        if (!removable.has(source)) waitingSince.delete(source);
      } catch (error) {
        // A destroyed tenant store has nothing left to clear; anything else is tried again later.
        if (error instanceof TresorError && error.code === 'TRESOR_ERR_NOT_FOUND') {
          if (!removable.has(source)) waitingSince.delete(source);
          continue;
        }
        if (cursor > (removable.get(source) ?? 0)) removable.set(source, cursor);
      }
    }
    if (removable.size > 0) scheduleRemoval();
  }

  function removeMoved(): Promise<void> {
    const run = chain.then(() => removalPass(true));
    chain = run.catch(() => undefined);
    return run;
  }

  function scheduleRemoval(): void {
    if (removalTimer || closed) return;
    removalTimer = setTimeout(() => {
      removalTimer = undefined;
      const run = chain.then(() => removalPass(false));
      chain = run.catch(() => undefined);
    }, removeEveryMs);
    removalTimer.unref();
  }

  function enqueue(only?: string): Promise<void> {
    const run = chain.then(() => pass(only));
    chain = run.catch(() => undefined);
    return run;
  }

  function schedule(): void {
    if (scheduled || closed) return;
    scheduled = setTimeout(() => {
      scheduled = undefined;
      void enqueue().catch(() => undefined);
    }, gatherMs);
  }

  function scheduleRetry(): void {
    if (retryTimer || closed) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void enqueue().catch(() => undefined);
    }, retryDelayMs);
    retryDelayMs = Math.min(retryDelayMs * 2, 2_000);
  }

  /** Marks every source dirty (at start, on taking the lease, and each sweep while holding it). */
  async function sweep(): Promise<void> {
    dirty.add(CONTROL_SOURCE);
    try {
      for (const source of await deps.listSources()) dirty.add(source);
    } finally {
      schedule();
    }
  }

  /** The standby's side: reload the head if the log grew, and tell the listeners of the new entries. */
  async function followPass(): Promise<void> {
    if (closed || lease === undefined || leading()) return;
    const before = tree.size;
    const size = await storedSize();
    if (size <= before) return;
    await restore(size);
    const db = control.db as Kysely<WithAuditLog>;
    for (let from = before; from < size && !closed; from += BATCH_PER_SOURCE) {
      const rows = await readLeaves(db, from, Math.min(size, from + BATCH_PER_SOURCE));
      const entries = rows.map((r) => ({ index: r.index, tenant: tenantOfLeaf(r.leaf), leaf: r.leaf }));
      if (entries.length > 0) tell(entries);
    }
  }

  function follow(): Promise<void> {
    const run = chain.then(followPass);
    chain = run.catch(() => undefined);
    return run;
  }

  function tell(entries: readonly SequencedEntry[]): void {
    for (const listener of listeners) {
      try {
        listener(entries);
      } catch {
        // A listener's failure is its own; the log is already durable.
      }
    }
  }

  function leaseChanged(held: boolean): void {
    if (closed) return;
    if (sweepTimer) clearInterval(sweepTimer);
    sweepTimer = undefined;
    if (followTimer) clearInterval(followTimer);
    followTimer = undefined;
    if (!held) {
      // A standby looks at the log each sweep too: the holder's NOTIFY is a wake-up, not a promise.
      followTimer = setInterval(() => void follow().catch(() => undefined), sweepMs);
      followTimer.unref();
      return;
    }
    // Another process may have appended while this one did not hold the lease: start from the store.
    resync = true;
    void sweep().catch(() => scheduleRetry());
    sweepTimer = setInterval(() => void sweep().catch(() => undefined), sweepMs);
    sweepTimer.unref();
  }

  /** A standby's drain: waits until the lease holder has moved every event `source` holds now. */
  async function awaitMoved(source: string): Promise<void> {
    const store = await deps.openSource(source).catch((error: unknown) => {
      if (error instanceof TresorError && error.code === 'TRESOR_ERR_NOT_FOUND') return null;
      throw error;
    });
    if (store === null) return;
    const last = await store.db
      .selectFrom('audit_events')
      .select((eb) => eb.fn.max('seq').as('max'))
      .executeTakeFirst();
    const target = last?.max === null || last?.max === undefined ? 0 : Number(last.max);
    const db = control.db as Kysely<WithAuditLog>;
    const deadline = now().getTime() + STANDBY_DRAIN_LIMIT_MS;
    while (!closed && !leading()) {
      const cursor = await db
        .selectFrom('audit_cursors')
        .select('seq')
        .where('source', '=', source)
        .executeTakeFirst();
      if (Number(cursor?.seq ?? 0) >= target) return;
      if (now().getTime() > deadline)
        throw new TresorError(
          'TRESOR_ERR_UNAVAILABLE',
          'the audit sequencer of another server did not move the events in time',
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (leading()) await drainHere(source);
  }

  async function drainHere(source?: string): Promise<void> {
    if (source !== undefined) {
      dirty.add(source);
      // Repeat while the source still has more than one batch.
      do await enqueue(source);
      while (dirty.has(source) && leading());
      return;
    }
    do await enqueue();
    while (dirty.size > 0 && leading());
  }

  return {
    async start() {
      await restore();
      if (lease) {
        stopLeaseWatch = lease.onChange(leaseChanged);
        await lease.start();
        if (!lease.held()) leaseChanged(false);
      }
      for (const source of await deps.listSources()) dirty.add(source);
      dirty.add(CONTROL_SOURCE);
      await enqueue().catch(() => undefined); // health() reports a failure; the retry timer goes on
    },
    notify(source) {
      if (closed) return;
      dirty.add(source);
      schedule();
    },
    async drain(source) {
      if (leading()) return drainHere(source);
      // A standby moves nothing itself: a source's events must be moved by the lease holder.
      if (source !== undefined) await awaitMoved(source);
    },
    treeHead() {
      // The tree is replaced, never changed, by a pass: its head is computed once per pass, not per
      // call (every audited request asks the audit log's health, which reads the head).
      if (head === undefined || head.tree !== tree)
        head = { tree, value: { size: tree.size, root: tree.root() } };
      return head.value;
    },
    onAppended(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    health() {
      const pendingSources = dirty.size;
      // A standby's requests commit their events to the outboxes; the lease holder moves them.
      if (!leading()) return { ok: true, pendingSources };
      if (failingSince && now().getTime() - failingSince.getTime() >= failureBoundMs) {
        return {
          ok: false,
          reason: `the audit sequencer cannot write the log (${lastFailure ?? 'error'})`,
          pendingSources,
          failingSince,
        };
      }
      return failingSince ? { ok: true, pendingSources, failingSince } : { ok: true, pendingSources };
    },
    follow,
    removeMoved,
    stats: () => ({ ...counts }),
    async close() {
      closed = true;
      if (sweepTimer) clearInterval(sweepTimer);
      if (followTimer) clearInterval(followTimer);
      stopLeaseWatch?.();
      if (retryTimer) clearTimeout(retryTimer);
      if (removalTimer) clearTimeout(removalTimer);
      removalTimer = undefined;
      scheduled = undefined;
      retryTimer = undefined;
      await chain;
      await thread.close();
      await lease?.close();
    },
  };
}
