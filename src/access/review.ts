/**
 * Access reviews: what staff reached, and the security officer's attestation that it was looked at.
 *
 * A report covers a half-open period [from, to) and lists
 * - every grant whose life overlapped it (from its request to its end; one still open ends now),
 * - every staff access: audit_log entries whose actor carries a grantId (the request pipeline sets it
 *   on each read or change made under a grant, whatever the outcome), plus each break-glass opening,
 * counted per tenant and per person, with the attestations that touch the period. The staff accesses
 * are read from the audit log itself (the leaf's JSON), so the report shows what the tamper-evident
 * log says, not a second bookkeeping that could disagree with it.
 *
 * Coverage: an attestation covers a tenant's activity inside its [from, to), and an attestation with
 * no tenant covers every tenant. A report is `unreviewed` when any grant or access in it (clipped to
 * the period) lies outside the union of the attestations that cover its tenant. `unreviewed()` walks
 * calendar months (UTC) from the month of the first grant to the last month complete at `until`, and
 * names each (month, tenant) with grants or staff accesses that the attestations do not cover whole.
 *
 * Who: security officers and operator admins see every tenant; a tenant admin sees their own tenant
 * only. Only a security officer attests — from the console as themselves, or through the CLI (system
 * actor `cli`, naming the officer with `attestedBy`: attestation.ts). Reports and every refusal are
 * audited.
 */
import type { Kysely, Transaction } from 'kysely';
import type { AuditArchive } from '../audit/archived-segments.ts';
import { appendAuditEvent } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  identityEvent,
  type ResolvedActor,
  resolveActorIn,
} from '../identity/identity-actor.ts';
import type { Store } from '../store/types.ts';
import { forbidden, invalid } from './access-errors.ts';
import type { AccessDB } from './access-store-schema.ts';
import { type AttestInput, attestations } from './attestation.ts';
import { type Refusal, refusalsOf, writeAudited } from './audited-write.ts';
import type { GrantInfo } from './grant-state.ts';
import { DEFAULT_REQUEST_TTL_MS, PERSON_ID_PATTERN } from './grant-vocabulary.ts';
import {
  type Attestation,
  coverOf,
  type ReviewScope,
  reviewEvidence,
  type StaffAccess,
} from './review-evidence.ts';
import { checkPeriod, covers, iso, lifeOf, monthsBetween, parseInstant } from './review-period.ts';

export interface ActivityCount {
  grants: number;
  accesses: number;
}

export interface AccessReport {
  from: string;
  to: string;
  grants: GrantInfo[];
  accesses: StaffAccess[];
  byTenant: Record<string, ActivityCount>;
  byPerson: Record<string, ActivityCount>;
  attestations: Attestation[];
  /** Some grant or access in the period is not covered by an attestation. */
  unreviewed: boolean;
}

export interface UnreviewedPeriod {
  from: string;
  to: string;
  tenant: string | null;
  grants: number;
  accesses: number;
}

export interface AccessReviewService {
  /** Every grant that overlapped [from, to) and every staff access in it, per tenant and per person. Security officer or operator admin (tenant admin: own tenant only). */
  report(
    actor: IdentityActor,
    input: { from: string; to: string; tenant?: string; person?: string },
    meta?: AuditMeta,
  ): Promise<AccessReport>;
  /** Security officer only: attests a period was reviewed (note ≤ 1000 chars). Audited. */
  attest(actor: IdentityActor, input: AttestInput, meta?: AuditMeta): Promise<Attestation>;
  /** Calendar months (UTC) since the first grant with grants or staff accesses no attestation covers. */
  unreviewed(actor: IdentityActor, options?: { until?: string }): Promise<UnreviewedPeriod[]>;
}

/**
 * Who may read reviews, and over which tenants: undefined = every tenant. Security officers and
 * operator admins (tokens and system jobs act as operator admins) see all; a tenant admin their own.
 */
function scopeOf(by: ResolvedActor | undefined, tenant: string | undefined): ReviewScope | 'denied' {
  if (!by) return 'denied';
  if (by.role === 'security-officer' || by.role === 'operator-admin')
    return tenant === undefined ? {} : { tenant };
  if (by.role === 'tenant-admin' && by.tenant !== null && (tenant === undefined || tenant === by.tenant))
    return { tenant: by.tenant };
  return 'denied';
}

export function createAccessReviewService(options: {
  control: Store<AccessDB>;
  now: () => Date;
  /** As the grant service is configured (GrantConfig.requestTtlMs). */
  requestTtlMs?: number;
  /** The sealed segments holding the archived part of the audit log (review-evidence.ts). */
  archive?: () => Promise<AuditArchive>;
}): AccessReviewService {
  const { control, now } = options;
  const requestTtlMs = options.requestTtlMs ?? DEFAULT_REQUEST_TTL_MS;
  const db = control.db as Kysely<AccessDB>;
  const { grantsIn, accessesIn, attestationsIn } = reviewEvidence({
    db,
    now,
    requestTtlMs,
    ...(options.archive === undefined ? {} : { archive: options.archive }),
  });
  const run = <T>(work: (trx: Transaction<AccessDB>) => Promise<T | Refusal>) => writeAudited(control, work);

  return {
    ...attestations({ control, now }),

    async report(actor, input, meta) {
      const wanted = (input ?? {}) as { from?: unknown; to?: unknown; tenant?: unknown; person?: unknown };
      const scope = await run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const refuse = refusalsOf(
          trx,
          now,
          { actor: by?.audit ?? auditActorOf(actor), tenant: null, action: 'access.review' },
          meta,
        );
        const period = checkPeriod(wanted);
        if (period instanceof TresorError) return refuse('invalid', period);
        if (wanted.tenant !== undefined && (typeof wanted.tenant !== 'string' || wanted.tenant.length > 64))
          return refuse('invalid', invalid('tenant', 'a tenant id'));
        if (
          wanted.person !== undefined &&
          (typeof wanted.person !== 'string' || !PERSON_ID_PATTERN.test(wanted.person))
        )
          return refuse('invalid', invalid('person', 'a person id'));
        const s = scopeOf(by, wanted.tenant as string | undefined);
        if (s === 'denied' || !by) return refuse('not-allowed', forbidden());
        return { ...s, period, actor: by.audit };
      });
      const { period } = scope;
      const person = wanted.person as string | undefined;
      // Audited once the evidence is read and before the report is returned, as every read of what
      // staff did: a review that could not read it (an archived segment unreadable) is a failure.
      const recordReview = (outcome: 'success' | 'failure', failure?: string) =>
        control.write((trx) =>
          appendAuditEvent(
            trx,
            identityEvent(
              scope.actor,
              { at: now().toISOString(), tenant: scope.tenant ?? null, action: 'access.review', outcome },
              {
                from: iso(period.from),
                to: iso(period.to),
                ...(scope.tenant !== undefined ? { tenant: scope.tenant } : {}),
                ...(person !== undefined ? { person } : {}),
                ...(failure !== undefined ? { failure } : {}),
              },
              meta,
            ),
          ),
        );
      const { grants, accesses, attestations } = await (async () => ({
        grants: await grantsIn(period, scope, person),
        accesses: await accessesIn(period, scope, person),
        attestations: await attestationsIn(period, scope),
      }))().catch(async (err: unknown) => {
        await recordReview('failure', err instanceof TresorError ? err.code : 'TRESOR_ERR_INTERNAL');
        throw err;
      });
      await recordReview('success');
      const byTenant: Record<string, ActivityCount> = {};
      const byPerson: Record<string, ActivityCount> = {};
      const count = (table: Record<string, ActivityCount>, key: string, what: keyof ActivityCount) => {
        table[key] ??= { grants: 0, accesses: 0 };
        table[key][what] += 1;
      };
      const t = now().getTime();
      let unreviewed = false;
      for (const g of grants) {
        count(byTenant, g.tenant, 'grants');
        count(byPerson, g.requester, 'grants');
        const life = lifeOf(g, t);
        const from = Math.max(life.from, period.from);
        const to = Math.min(life.to, period.to);
        if (!covers(coverOf(attestations, g.tenant), from, Math.max(to, from + 1))) unreviewed = true;
      }
      for (const a of accesses) {
        count(byTenant, a.tenant, 'accesses');
        count(byPerson, a.person, 'accesses');
        const at = Date.parse(a.at);
        if (!covers(coverOf(attestations, a.tenant), at, at + 1)) unreviewed = true;
      }
      return {
        from: iso(period.from),
        to: iso(period.to),
        grants,
        accesses,
        byTenant,
        byPerson,
        attestations,
        unreviewed,
      };
    },

    async unreviewed(actor, options = {}) {
      const scope = await run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const refuse = refusalsOf(
          trx,
          now,
          { actor: by?.audit ?? auditActorOf(actor), tenant: null, action: 'access.unreviewed' },
          undefined,
        );
        const until = options?.until === undefined ? now().getTime() : parseInstant(options.until);
        if (until === undefined)
          return refuse('invalid', invalid('until', 'YYYY-MM-DD or an ISO 8601 UTC time'));
        const s = scopeOf(by, undefined);
        if (s === 'denied') return refuse('not-allowed', forbidden());
        return { ...s, until };
      });
      let first = db.selectFrom('grants').select((eb) => eb.fn.min('requested_at').as('first'));
      if (scope.tenant !== undefined) first = first.where('tenant', '=', scope.tenant);
      const start = (await first.executeTakeFirst())?.first;
      if (start === undefined || start === null) return [];
      const months = monthsBetween(Date.parse(start), scope.until);
      const last = months.at(-1);
      const firstMonth = months[0];
      if (last === undefined || firstMonth === undefined) return [];
      const whole = { from: firstMonth.from, to: last.to };
      const grants = await grantsIn(whole, scope);
      const accesses = await accessesIn(whole, scope);
      const attestations = await attestationsIn(whole, scope);
      const t = now().getTime();
      const periods: UnreviewedPeriod[] = [];
      for (const month of months) {
        const perTenant = new Map<string, ActivityCount>();
        const bump = (tenant: string, what: keyof ActivityCount) => {
          const c = perTenant.get(tenant) ?? { grants: 0, accesses: 0 };
          c[what] += 1;
          perTenant.set(tenant, c);
        };
        for (const g of grants) {
          const life = lifeOf(g, t);
          if (life.from < month.to && life.to > month.from) bump(g.tenant, 'grants');
        }
        for (const a of accesses) {
          const at = Date.parse(a.at);
          if (at >= month.from && at < month.to) bump(a.tenant, 'accesses');
        }
        for (const [tenant, c] of [...perTenant].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
          if (covers(coverOf(attestations, tenant), month.from, month.to)) continue;
          periods.push({ from: iso(month.from), to: iso(month.to), tenant, ...c });
        }
      }
      return periods;
    },
  };
}
