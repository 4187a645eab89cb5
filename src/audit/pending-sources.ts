/**
 * Which tenants' outboxes may hold events the sequencer has not moved yet: a row per tenant in the
 * control store's `audit_pending_sources`, so that the sequencer's start (and, on PostgreSQL, the
 * lease holder's sweeps) open only those tenants' stores instead of every live tenant's.
 *
 * The rule: a mark is durable before any write to the tenant's store commits, and is removed only
 * once the sequencer has moved everything the outbox held and no write of the tenant is in flight.
 * A stale mark costs one store opened for nothing; a missing one would leave events unmoved after a
 * crash (until the tenant's next write). SQLite cannot write the mark in the tenant's transaction
 * (two files, no atomic commit across them), so each backend keeps the rule its own way:
 *
 * - SQLite (one process writes the tenant stores): before a tenant's first write, one control-store
 *   write inserts the mark; later writes find it marked in memory and cost nothing. A generation is
 *   bumped as each write starts and ends; the sequencer takes it before it reads the outbox, and
 *   clears the mark after its log write only if it is unchanged and no write is in flight — and
 *   only once the tenant has had no write for keepMarkMs (a timer re-checks then), so a tenant written
 *   every few seconds keeps its mark. The clear and any later mark are control-store writes,
 *   committed in the order they were asked.
 * - PostgreSQL (several processes, one database): every tenant write inserts a mark in its own
 *   transaction, unless one is there already, after taking a shared transaction-level advisory lock
 *   of the tenant. The table has no unique key, so the insert never waits for another transaction
 *   (two processes marking two tenants at once could otherwise deadlock); a race leaves two rows
 *   for a tenant, which a clear removes together. The sequencer clears a mark in one control transaction that takes that lock
 *   exclusively without waiting (a write in flight holds it shared: then the mark stays) and deletes
 *   the mark only if the outbox holds nothing after the sequencer's cursor.
 */
import { type Kysely, type Migration, sql, type Transaction } from 'kysely';
import type { Store } from '../store/types.ts';

export interface AuditPendingSourcesTable {
  source: string;
}

export interface WithPendingSources {
  audit_pending_sources: AuditPendingSourcesTable;
}

/**
 * The table, seeded with every tenant whose store may exist (active or closing): the first start
 * after the upgrade looks at each once, as starts did before, and clears what holds nothing.
 */
export const pendingSourcesMigration: Migration = {
  async up(db: Kysely<unknown>) {
    // No unique key: a PostgreSQL writer's insert then never waits for another transaction's insert
    // of the same tenant (two processes' batches inserting two tenants in opposite orders would
    // deadlock on a unique index). A tenant may have several rows; a clear deletes them all.
    await db.schema
      .createTable('audit_pending_sources')
      .addColumn('source', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('audit_pending_sources_source')
      .on('audit_pending_sources')
      .column('source')
      .execute();
    await sql`INSERT INTO audit_pending_sources (source) SELECT id FROM tenants WHERE state IN ('active', 'closing')`.execute(
      db,
    );
  },
};

/** The same on PostgreSQL (the builder's DDL is the same on both). */
export const pendingSourcesPgMigration: Migration = pendingSourcesMigration;

/** What the sequencer takes before reading a source's outbox, and hands back to drained(). */
export type PendingToken = unknown;

export interface PendingSources {
  /** Runs `work` as a write of `tenant`'s store, its mark durable before the write commits. */
  write<DB, T>(tenant: string, store: Store<DB>, work: (trx: Transaction<DB>) => Promise<T>): Promise<T>;
  /** Makes the tenant's mark durable (before something other than write() fills its outbox). */
  mark(tenant: string): Promise<void>;
  /** Every marked tenant: the tenants whose outbox may hold events. */
  list(): Promise<string[]>;
  /** The sequencer, before it reads the tenant's outbox. */
  before(tenant: string): PendingToken;
  /**
   * The sequencer, after its log write moved the tenant's outbox up to `cursor` and it read less than
   * a full batch: clears the mark if nothing can have been added since (never throws; a mark left
   * in place is harmless).
   */
  drained(tenant: string, token: PendingToken, cursor: number): Promise<void>;
  /** The sequencer found no store for the tenant (destroyed): clears its mark, as drained() would. */
  gone(tenant: string, token: PendingToken): Promise<void>;
  /** Marks cleared and written since start (tests, metrics). */
  stats(): { cleared: number; marked: number };
  /** Stops pending clears (shutdown); the marks stay as they are. */
  close(): void;
}

type ControlStore = Store<WithPendingSources>;

async function listMarks(control: ControlStore): Promise<string[]> {
  const rows = await control.db
    .selectFrom('audit_pending_sources')
    .select('source')
    .distinct()
    .orderBy('source')
    .execute();
  return rows.map((r) => r.source);
}

/** A SQLite mark is kept this long after the tenant's last write, so a tenant written every few
 * seconds does not pay a control-store write before each of its writes. */
export const DEFAULT_KEEP_MARK_MS = 60_000;

/** SQLite: marks written through the control store before a tenant's first write, cleared in-process. */
export function createSqlitePendingSources(
  control: ControlStore,
  options: { keepMarkMs?: number; now?: () => number } = {},
): PendingSources {
  const keepMarkMs = options.keepMarkMs ?? DEFAULT_KEEP_MARK_MS;
  const now = options.now ?? Date.now;
  /** Tenants whose mark is durable (as far as this process knows). */
  const marked = new Set<string>();
  /** A mark being written: later writers wait for the same one. */
  const marking = new Map<string, Promise<void>>();
  /** Per tenant: bumped when a write (or a mark) starts and when it ends; writes in flight; last end. */
  const activity = new Map<string, { gen: number; inflight: number; lastEnd: number }>();
  const retries = new Map<string, NodeJS.Timeout>();
  const counts = { cleared: 0, marked: 0 };
  let closed = false;

  const activityOf = (tenant: string) => {
    let a = activity.get(tenant);
    if (a === undefined) {
      a = { gen: 0, inflight: 0, lastEnd: 0 };
      activity.set(tenant, a);
    }
    return a;
  };

  function mark(tenant: string): Promise<void> {
    activityOf(tenant).gen++;
    if (marked.has(tenant)) return Promise.resolve();
    let pending = marking.get(tenant);
    if (pending === undefined) {
      pending = control
        .write(async (trx) => {
          await trx.insertInto('audit_pending_sources').values({ source: tenant }).execute();
        })
        .then(() => {
          marked.add(tenant);
          counts.marked++;
        })
        .finally(() => marking.delete(tenant));
      marking.set(tenant, pending);
    }
    return pending;
  }

  async function clearIfQuiet(tenant: string, token: PendingToken): Promise<void> {
    if (closed) return;
    const a = activity.get(tenant);
    if (a !== undefined) {
      // A write started or ended since the outbox was read, or is in flight: keep the mark (the
      // sequencer's pass for that write decides again).
      if (a.gen !== token || a.inflight > 0 || marking.has(tenant)) return;
      const wait = a.lastEnd + keepMarkMs - now();
      if (wait > 0) {
        clearTimeout(retries.get(tenant));
        const timer = setTimeout(() => {
          retries.delete(tenant);
          void clearIfQuiet(tenant, token);
        }, wait);
        timer.unref();
        retries.set(tenant, timer);
        return;
      }
    }
    // Forgotten now, in the same turn as the check: the next write marks again, and its control
    // write is queued after this delete.
    marked.delete(tenant);
    activity.delete(tenant);
    try {
      await control.write(async (trx) => {
        await trx.deleteFrom('audit_pending_sources').where('source', '=', tenant).execute();
      });
      counts.cleared++;
    } catch {
      // The mark stays: the next start looks at the tenant once more.
    }
  }

  return {
    async write(tenant, store, work) {
      // Counted before anything is awaited: a clear decided from now on sees this write.
      const a = activityOf(tenant);
      a.gen++;
      a.inflight++;
      try {
        await mark(tenant);
        return await store.write(work);
      } finally {
        const b = activityOf(tenant);
        b.gen++;
        b.inflight = Math.max(0, b.inflight - 1);
        b.lastEnd = now();
      }
    },
    mark,
    list: () => listMarks(control),
    before: (tenant) => activity.get(tenant)?.gen ?? 0,
    drained: (tenant, token) => clearIfQuiet(tenant, token),
    gone: (tenant, token) => clearIfQuiet(tenant, token),
    stats: () => ({ ...counts }),
    close() {
      closed = true;
      for (const timer of retries.values()) clearTimeout(timer);
      retries.clear();
    },
  };
}

export interface PgPendingSourcesOptions {
  control: ControlStore;
  /** The control store's schema (tenant writes run with the tenant's search_path). */
  controlSchema: string;
  /** The tenant's schema (checked against the schema-name pattern by the caller). */
  tenantSchema(tenant: string): string;
}

/** Advisory lock class of the pending marks (the second key is hashtext(tenant)). */
const PENDING_LOCK_CLASS = 0x7e50_0a01;

/** PostgreSQL: the mark in each tenant write's own transaction; cleared under the tenant's lock. */
export function createPgPendingSources(options: PgPendingSourcesOptions): PendingSources {
  const { control } = options;
  const table = `"${options.controlSchema}".audit_pending_sources`;
  const counts = { cleared: 0, marked: 0 };

  async function markIn(trx: Transaction<unknown>, tenant: string): Promise<void> {
    await sql`SELECT pg_advisory_xact_lock_shared(${PENDING_LOCK_CLASS}::int, hashtext(${tenant}))`.execute(
      trx,
    );
    // Only if no mark is there yet (a plain insert: it waits for no other transaction).
    await sql`INSERT INTO ${sql.raw(table)} (source) SELECT ${tenant} WHERE NOT EXISTS (SELECT 1 FROM ${sql.raw(table)} WHERE source = ${tenant})`.execute(
      trx,
    );
  }

  return {
    write(tenant, store, work) {
      return store.write(async (trx) => {
        await markIn(trx as unknown as Transaction<unknown>, tenant);
        return work(trx);
      });
    },
    async mark(tenant) {
      await control.write((trx) => markIn(trx as unknown as Transaction<unknown>, tenant));
      counts.marked++;
    },
    list: () => listMarks(control),
    before: () => undefined,
    drained: (tenant, _token, cursor) => clear(tenant, cursor),
    gone: (tenant) => clear(tenant, undefined),
    stats: () => ({ ...counts }),
    close: () => undefined,
  };

  /** `cursor`: delete if the outbox holds nothing after it; undefined: if the schema is gone. */
  async function clear(tenant: string, cursor: number | undefined): Promise<void> {
    const schema = options.tenantSchema(tenant);
    try {
      const cleared = await control.write(async (trx) => {
        const { rows } = await sql<{
          locked: boolean;
        }>`SELECT pg_try_advisory_xact_lock(${PENDING_LOCK_CLASS}::int, hashtext(${tenant})) AS locked`.execute(
          trx,
        );
        if (rows[0]?.locked !== true) return false;
        const deleted =
          cursor === undefined
            ? await sql`DELETE FROM ${sql.raw(table)} WHERE source = ${tenant} AND NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ${schema})`.execute(
                trx,
              )
            : await sql`DELETE FROM ${sql.raw(table)} WHERE source = ${tenant} AND NOT EXISTS (SELECT 1 FROM ${sql.raw(`"${schema}".audit_events`)} WHERE seq > ${cursor})`.execute(
                trx,
              );
        return Number(deleted.numAffectedRows ?? 0) > 0;
      });
      if (cleared) counts.cleared++;
    } catch {
      // The mark stays: harmless.
    }
  }
}
