/**
 * When each tenant's retention must next look at its records: a row per tenant in the control store
 * (`vault_retention_due`), so the hourly retention job opens only the stores of tenants with records
 * due, instead of every active tenant's.
 *
 * - After a run, the job sets the next due time to the earlier of the tenant's earliest remaining
 *   expiry and run start + the shortest retention period of its collections (a record created during
 *   or after the run expires no earlier than that); no row when no collection keeps records for a
 *   period. nextRetentionDue (retention.ts) computes it.
 * - A collection change that gives records an expiry (created with a period, or its period changed)
 *   marks the tenant due now, before its write commits (a crash in between leaves a run for nothing)
 *   and again after (a run that read the tenant meanwhile cannot overwrite the mark: each mark bumps
 *   `version`, and the job's update applies only to the version it read before its run).
 * - The migration seeds every active tenant as due now: the first run after the upgrade looks at each
 *   once and keeps rows only for tenants whose records can expire.
 */
import { type Kysely, type Migration, sql } from 'kysely';
import type { Store } from '../store/types.ts';

export interface VaultRetentionDueTable {
  tenant: string;
  /** Epoch milliseconds. */
  due_at: number;
  version: number;
}

export interface WithRetentionDue {
  vault_retention_due: VaultRetentionDueTable;
}

export const retentionDueMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('vault_retention_due')
      .addColumn('tenant', 'text', (c) => c.primaryKey())
      .addColumn('due_at', 'bigint', (c) => c.notNull())
      .addColumn('version', 'bigint', (c) => c.notNull().defaultTo(0))
      .execute();
    await sql`INSERT INTO vault_retention_due (tenant, due_at, version) SELECT id, 0, 0 FROM tenants WHERE state = 'active'`.execute(
      db,
    );
  },
};

export interface RetentionDue {
  /** The tenant's retention is due at `at` at the latest (epoch ms). */
  markDue(tenant: string, at: number): Promise<void>;
  /** Tenants due at `now`, with the version of their row (for reschedule). */
  due(now: number): Promise<Array<{ tenant: string; version: number }>>;
  /**
   * After a run: the next due time (null: nothing can expire), applied only if the row is still at
   * `version` (no mark came during the run); otherwise it stays due.
   */
  reschedule(tenant: string, version: number, next: number | null): Promise<void>;
}

export function createRetentionDue(control: Store<WithRetentionDue>): RetentionDue {
  return {
    async markDue(tenant, at) {
      await control.write(async (trx) => {
        await trx
          .insertInto('vault_retention_due')
          .values({ tenant, due_at: at, version: 1 })
          .onConflict((oc) =>
            oc.column('tenant').doUpdateSet({
              due_at: sql<number>`CASE WHEN excluded.due_at < vault_retention_due.due_at THEN excluded.due_at ELSE vault_retention_due.due_at END`,
              version: sql<number>`vault_retention_due.version + 1`,
            }),
          )
          .execute();
      });
    },
    async due(now) {
      const rows = await control.db
        .selectFrom('vault_retention_due')
        .select(['tenant', 'version'])
        .where('due_at', '<=', now)
        .orderBy('tenant')
        .execute();
      return rows.map((r) => ({ tenant: r.tenant, version: Number(r.version) }));
    },
    async reschedule(tenant, version, next) {
      await control.write(async (trx) => {
        if (next === null) {
          await trx
            .deleteFrom('vault_retention_due')
            .where('tenant', '=', tenant)
            .where('version', '=', version)
            .execute();
        } else {
          await trx
            .updateTable('vault_retention_due')
            .set({ due_at: next })
            .where('tenant', '=', tenant)
            .where('version', '=', version)
            .execute();
        }
      });
    },
  };
}
