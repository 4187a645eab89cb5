/**
 * What an access review reads: the grants whose life overlapped a period, the staff accesses the
 * audit log itself records in it (the leaf's JSON, so the report shows what the tamper-evident log
 * says, not a second bookkeeping that could disagree with it), and the attestations touching it.
 */
import { type Kysely, sql } from 'kysely';
import { dialectOf, jsonText } from '../store/dialect.ts';
import type { AccessDB, AccessReviewsTable } from './access-store-schema.ts';
import { type GrantInfo, grantInfoOf } from './grant-state.ts';
import { iso, lifeOf, type Period } from './review-period.ts';

export interface Attestation {
  id: string; // rev_<24 hex>
  from: string;
  to: string;
  /** null: every tenant. */
  tenant: string | null;
  note: string;
  /** The security officer's person id. */
  attestedBy: string;
  /** Who recorded it, as the audit log names it: `staff:psn_…` or `system:cli`. */
  recordedBy: string;
  attestedAt: string;
}

export interface StaffAccess {
  index: number;
  at: string;
  tenant: string;
  person: string;
  grantId: string;
  action: string;
  outcome: string;
}

/** Which tenants a review reads: undefined = every tenant. */
export interface ReviewScope {
  tenant?: string;
}

export function toAttestation(row: AccessReviewsTable): Attestation {
  return {
    id: row.id,
    from: row.period_from,
    to: row.period_to,
    tenant: row.tenant,
    note: row.note,
    attestedBy: row.attested_by,
    recordedBy: row.recorded_by,
    attestedAt: row.attested_at,
  };
}

/** The attestation intervals that cover `tenant`. */
export const coverOf = (attestations: readonly Attestation[], tenant: string): Period[] =>
  attestations
    .filter((a) => a.tenant === null || a.tenant === tenant)
    .map((a) => ({ from: Date.parse(a.from), to: Date.parse(a.to) }));

export function reviewEvidence(options: { db: Kysely<AccessDB>; now: () => Date; requestTtlMs: number }) {
  const { db, now, requestTtlMs } = options;
  return {
    async grantsIn(period: Period, scope: ReviewScope, person?: string): Promise<GrantInfo[]> {
      let q = db
        .selectFrom('grants')
        .selectAll()
        .where('requested_at', '<', iso(period.to))
        .where((eb) => eb.or([eb('ended_at', 'is', null), eb('ended_at', '>=', iso(period.from))]));
      if (scope.tenant !== undefined) q = q.where('tenant', '=', scope.tenant);
      if (person !== undefined) q = q.where('requester', '=', person);
      const t = now().getTime();
      return (await q.orderBy('requested_at').orderBy('id').execute())
        .map((row) => grantInfoOf(row, t, requestTtlMs))
        .filter((g) => {
          const life = lifeOf(g, t);
          return life.from < period.to && life.to > period.from;
        });
    },

    async accessesIn(period: Period, scope: ReviewScope, person?: string): Promise<StaffAccess[]> {
      // Each entry's fields are read out of its leaf JSON: json_extract on SQLite, #>> on PostgreSQL.
      const field = (...path: string[]) => jsonText(dialectOf(db), 'leaf', path);
      const tenantClause = scope.tenant === undefined ? sql`` : sql`AND tenant = ${scope.tenant}`;
      const personClause = person === undefined ? sql`` : sql`AND ${field('actor', 'id')} = ${person}`;
      const rows = await sql<{
        idx: number;
        tenant: string | null;
        at: string;
        person: string;
        grant_id: string;
        action: string;
        outcome: string;
      }>`SELECT idx, tenant,
           ${field('at')} AS at,
           ${field('actor', 'id')} AS person,
           coalesce(${field('actor', 'grantId')}, ${field('target', 'grantId')}) AS grant_id,
           ${field('action')} AS action,
           ${field('outcome')} AS outcome
         FROM audit_log
         WHERE (${field('actor', 'grantId')} IS NOT NULL
                OR (${field('action')} = 'grant.break-glass' AND ${field('outcome')} = 'success'))
           AND ${field('at')} >= ${iso(period.from)}
           AND ${field('at')} < ${iso(period.to)}
           ${tenantClause} ${personClause}
         ORDER BY idx`.execute(db);
      return rows.rows.map((r) => ({
        index: r.idx,
        at: r.at,
        tenant: r.tenant ?? '',
        person: r.person,
        grantId: r.grant_id,
        action: r.action,
        outcome: r.outcome,
      }));
    },

    async attestationsIn(period: Period, scope: ReviewScope): Promise<Attestation[]> {
      let q = db
        .selectFrom('access_reviews')
        .selectAll()
        .where('period_from', '<', iso(period.to))
        .where('period_to', '>', iso(period.from));
      if (scope.tenant !== undefined) {
        const tenant = scope.tenant;
        q = q.where((eb) => eb.or([eb('tenant', 'is', null), eb('tenant', '=', tenant)]));
      }
      return (await q.orderBy('period_from').orderBy('id').execute()).map(toAttestation);
    },
  };
}
