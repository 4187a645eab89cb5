/**
 * The server's own probe results, in the control store (`probe_results`, this part's table): one
 * row per probe, kept 35 days — long enough for the 30-day window — and pruned by the probe job.
 * The composition root (src/server/control-store.ts) composes the migration.
 */
import { type Kysely, type Migration, sql, type Transaction } from 'kysely';
import type { ProbeResult, ProbeStep } from './probe.ts';

export const PROBE_RESULTS_KEPT_MS = 35 * 86_400_000;

export interface ProbeResultsTable {
  at: string;
  ok: number;
  failed_step: ProbeStep | null;
  failed_why: string | null;
  /** JSON: milliseconds per finished step. */
  ms: string;
}

export interface ProbeDB {
  probe_results: ProbeResultsTable;
}

export const probeResultsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('probe_results')
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('ok', 'integer', (c) => c.notNull())
      .addColumn('failed_step', 'text')
      .addColumn('failed_why', 'text')
      .addColumn('ms', 'text', (c) => c.notNull())
      .execute();
    await sql`CREATE INDEX probe_results_at ON probe_results (at)`.execute(db);
  },
};

/** PostgreSQL's probe_results: the same columns (`ok` 0/1 as everywhere). */
export const probeResultsPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      CREATE TABLE probe_results (
        at text NOT NULL,
        ok integer NOT NULL,
        failed_step text,
        failed_why text,
        ms text NOT NULL
      );
      CREATE INDEX probe_results_at ON probe_results (at);`.execute(db);
  },
};

/** What the probe job needs of the store: a write and a read of its own table. */
export interface ProbeResultsStore {
  write<T>(work: (trx: Transaction<ProbeDB>) => Promise<T>): Promise<T>;
  readonly db: Kysely<ProbeDB>;
}

export async function recordProbeResult(
  store: ProbeResultsStore,
  result: ProbeResult,
  now: Date,
): Promise<void> {
  const horizon = new Date(now.getTime() - PROBE_RESULTS_KEPT_MS).toISOString();
  await store.write(async (trx) => {
    await trx
      .insertInto('probe_results')
      .values({
        at: result.at,
        ok: result.ok ? 1 : 0,
        failed_step: result.failed?.step ?? null,
        failed_why: result.failed?.why ?? null,
        ms: JSON.stringify(result.ms),
      })
      .execute();
    await trx.deleteFrom('probe_results').where('at', '<', horizon).execute();
  });
}

/** The results since `since`, oldest first. */
export async function probeResultsSince(store: ProbeResultsStore, since: Date): Promise<ProbeResult[]> {
  const rows = await store.db
    .selectFrom('probe_results')
    .selectAll()
    .where('at', '>=', since.toISOString())
    .orderBy('at')
    .execute();
  return rows.map((r) => ({
    at: r.at,
    ok: r.ok === 1,
    ...(r.failed_step !== null ? { failed: { step: r.failed_step, why: r.failed_why ?? '' } } : {}),
    ms: JSON.parse(r.ms) as ProbeResult['ms'],
  }));
}
