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
 * actor `cli`, naming the officer with `attestedBy`). Reports and every refusal are audited.
 */
import { type Kysely, sql, type Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  identityEvent,
  newId,
  type ResolvedActor,
  resolveActorIn,
} from '../identity/sessions.ts';
import type { Store } from '../store/types.ts';
import type { AccessDB, AccessReviewsTable } from './access-store-schema.ts';
import { DEFAULT_REQUEST_TTL_MS, type GrantInfo, grantInfoOf } from './grants.ts';

export const MAX_NOTE_CHARS = 1000;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters other than tab and newline are refused
const NOTE_FORBIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f]/;
const PERSON_ID_PATTERN = /^psn_[0-9a-f]{24}$/;
const INSTANT_PATTERN = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?Z)?$/;

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

export interface AttestInput {
  from: string;
  to: string;
  tenant?: string | null;
  note: string;
  /** The attesting security officer: required from a system actor (the CLI), else the actor itself. */
  attestedBy?: string;
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

function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'not allowed for this account');
}

function invalid(field: string, message: string): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field });
}

class Refusal {
  constructor(readonly error: TresorError) {}
}

/** `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS[.sss]]Z`, as epoch ms; undefined if not a real instant. */
export function parseInstant(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const m = INSTANT_PATTERN.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map((p) => Number(p ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const t = Date.UTC(y, mo - 1, d, h, mi, sec, Number((m[7] ?? '0').padEnd(3, '0')));
  const back = new Date(t);
  // Refuse dates that roll over (2030-02-30) and out-of-range times (25:00).
  if (
    back.getUTCFullYear() !== y ||
    back.getUTCMonth() !== mo - 1 ||
    back.getUTCDate() !== d ||
    back.getUTCHours() !== h ||
    back.getUTCMinutes() !== mi ||
    back.getUTCSeconds() !== sec
  )
    return undefined;
  return t;
}

function checkPeriod(input: { from?: unknown; to?: unknown }): { from: number; to: number } | TresorError {
  const from = parseInstant(input.from);
  if (from === undefined) return invalid('from', 'YYYY-MM-DD or an ISO 8601 UTC time');
  const to = parseInstant(input.to);
  if (to === undefined) return invalid('to', 'YYYY-MM-DD or an ISO 8601 UTC time');
  if (!(from < to)) return invalid('to', 'after from');
  return { from, to };
}

const iso = (t: number) => new Date(t).toISOString();

/** Whether the union of `intervals` covers [from, to). */
export function covers(
  intervals: readonly { from: number; to: number }[],
  from: number,
  to: number,
): boolean {
  let reached = from;
  for (const iv of [...intervals].sort((a, b) => a.from - b.from)) {
    if (iv.from > reached) break;
    reached = Math.max(reached, iv.to);
    if (reached >= to) return true;
  }
  return reached >= to;
}

/** The first instant of each calendar month (UTC) from the month of `start` while the month ends by `until`. */
function monthsBetween(start: number, until: number): { from: number; to: number }[] {
  const d = new Date(start);
  let from = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const months: { from: number; to: number }[] = [];
  for (;;) {
    const f = new Date(from);
    const to = Date.UTC(f.getUTCFullYear(), f.getUTCMonth() + 1, 1);
    if (to > until) return months;
    months.push({ from, to });
    from = to;
  }
}

function toAttestation(row: AccessReviewsTable): Attestation {
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

/** A grant's life as an interval as of `t`: from its request to its end (now, if it has none yet). */
function lifeOf(g: GrantInfo, t: number): { from: number; to: number } {
  const from = Date.parse(g.requestedAt);
  let to =
    g.endedAt !== null ? Date.parse(g.endedAt) : g.state === 'active' ? Date.parse(g.expiresAt ?? '') : t;
  if (!(to > from)) to = from + 1; // decided in the same millisecond: still a moment to review
  return { from, to };
}

export function createAccessReviewService(options: {
  control: Store<AccessDB>;
  now: () => Date;
  /** As the grant service is configured (GrantConfig.requestTtlMs). */
  requestTtlMs?: number;
}): AccessReviewService {
  const { control, now } = options;
  const requestTtlMs = options.requestTtlMs ?? DEFAULT_REQUEST_TTL_MS;
  const db = control.db as Kysely<AccessDB>;

  async function refuseIn(
    trx: Transaction<AccessDB>,
    actor: { kind: ResolvedActor['audit']['kind']; id: string },
    step: { tenant: string | null; action: string; target: Record<string, unknown> },
    error: TresorError,
    meta: AuditMeta | undefined,
  ): Promise<Refusal> {
    await appendAuditEvent(
      trx,
      identityEvent(
        actor,
        {
          at: now().toISOString(),
          tenant: step.tenant,
          action: step.action,
          outcome: error.code === 'TRESOR_ERR_FORBIDDEN' ? 'denied' : 'failure',
        },
        { ...step.target, refusal: error.code },
        meta,
      ),
    );
    return new Refusal(error);
  }

  async function run<T>(work: (trx: Transaction<AccessDB>) => Promise<T | Refusal>): Promise<T> {
    const result = await control.write(work);
    if (result instanceof Refusal) throw result.error;
    return result;
  }

  /**
   * Who may read reviews, and over which tenants: undefined = every tenant. Security officers and
   * operator admins (tokens and system jobs act as operator admins) see all; a tenant admin their own.
   */
  function scopeOf(
    by: ResolvedActor | undefined,
    tenant: string | undefined,
  ): { tenant?: string } | 'denied' {
    if (!by) return 'denied';
    if (by.role === 'security-officer' || by.role === 'operator-admin')
      return tenant === undefined ? {} : { tenant };
    if (by.role === 'tenant-admin' && by.tenant !== null && (tenant === undefined || tenant === by.tenant))
      return { tenant: by.tenant };
    return 'denied';
  }

  async function grantsIn(period: { from: number; to: number }, scope: { tenant?: string }, person?: string) {
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
  }

  async function accessesIn(
    period: { from: number; to: number },
    scope: { tenant?: string },
    person?: string,
  ): Promise<StaffAccess[]> {
    const tenantClause = scope.tenant === undefined ? sql`` : sql`AND tenant = ${scope.tenant}`;
    const personClause = person === undefined ? sql`` : sql`AND json_extract(leaf, '$.actor.id') = ${person}`;
    const rows = await sql<{
      idx: number;
      tenant: string | null;
      at: string;
      person: string;
      grant_id: string;
      action: string;
      outcome: string;
    }>`SELECT idx, tenant,
         json_extract(leaf, '$.at') AS at,
         json_extract(leaf, '$.actor.id') AS person,
         coalesce(json_extract(leaf, '$.actor.grantId'), json_extract(leaf, '$.target.grantId')) AS grant_id,
         json_extract(leaf, '$.action') AS action,
         json_extract(leaf, '$.outcome') AS outcome
       FROM audit_log
       WHERE (json_extract(leaf, '$.actor.grantId') IS NOT NULL
              OR (json_extract(leaf, '$.action') = 'grant.break-glass' AND json_extract(leaf, '$.outcome') = 'success'))
         AND json_extract(leaf, '$.at') >= ${iso(period.from)}
         AND json_extract(leaf, '$.at') < ${iso(period.to)}
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
  }

  async function attestationsIn(period: { from: number; to: number }, scope: { tenant?: string }) {
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
  }

  /** The attestation intervals that cover `tenant`. */
  const coverOf = (attestations: readonly Attestation[], tenant: string) =>
    attestations
      .filter((a) => a.tenant === null || a.tenant === tenant)
      .map((a) => ({ from: Date.parse(a.from), to: Date.parse(a.to) }));

  return {
    async report(actor, input, meta) {
      const wanted = (input ?? {}) as { from?: unknown; to?: unknown; tenant?: unknown; person?: unknown };
      const scope = await run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const refuse = (why: string, error: TresorError) =>
          refuseIn(
            trx,
            by?.audit ?? auditActorOf(actor),
            { tenant: null, action: 'access.review', target: { refused: why } },
            error,
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
        // Audited before the report is returned, as every read of what staff did.
        await appendAuditEvent(
          trx,
          identityEvent(
            by.audit,
            {
              at: now().toISOString(),
              tenant: s.tenant ?? null,
              action: 'access.review',
              outcome: 'success',
            },
            {
              from: iso(period.from),
              to: iso(period.to),
              ...(s.tenant !== undefined ? { tenant: s.tenant } : {}),
              ...(wanted.person !== undefined ? { person: wanted.person } : {}),
            },
            meta,
          ),
        );
        return { ...s, period };
      });
      const { period } = scope;
      const person = wanted.person as string | undefined;
      const grants = await grantsIn(period, scope, person);
      const accesses = await accessesIn(period, scope, person);
      const attestations = await attestationsIn(period, scope);
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

    async attest(actor, input, meta) {
      return run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const wanted = (input ?? {}) as unknown as Record<string, unknown>;
        const tenantId = wanted.tenant ?? null;
        const tenant =
          typeof tenantId === 'string'
            ? await trx.selectFrom('tenants').select('id').where('id', '=', tenantId).executeTakeFirst()
            : undefined;
        const refuse = (why: string, error: TresorError) =>
          refuseIn(
            trx,
            by?.audit ?? auditActorOf(actor),
            { tenant: tenant?.id ?? null, action: 'access.attest', target: { refused: why } },
            error,
            meta,
          );
        // The attesting officer: the session's person, or the one a system job (the CLI) names.
        let officer: string | undefined;
        if (by && actor.kind === 'session' && by.role === 'security-officer') {
          if (wanted.attestedBy !== undefined && wanted.attestedBy !== by.personId)
            return refuse('attested-by-other', forbidden());
          officer = by.personId ?? undefined;
        } else if (by && actor.kind === 'system' && typeof wanted.attestedBy === 'string') {
          const p = await trx
            .selectFrom('people')
            .select(['id', 'role', 'disabled_at', 'removed_at'])
            .where('id', '=', wanted.attestedBy)
            .executeTakeFirst();
          if (p && p.role === 'security-officer' && p.disabled_at === null && p.removed_at === null)
            officer = p.id;
        }
        if (!by || officer === undefined) return refuse('not-a-security-officer', forbidden());
        const period = checkPeriod(wanted);
        if (period instanceof TresorError) return refuse('invalid', period);
        const t = now().getTime();
        if (period.to > t) return refuse('invalid', invalid('to', 'a period that has ended'));
        const note = typeof wanted.note === 'string' ? wanted.note.trim() : '';
        if (note.length < 1 || note.length > MAX_NOTE_CHARS || NOTE_FORBIDDEN.test(note))
          return refuse('invalid', invalid('note', `1–${MAX_NOTE_CHARS} characters`));
        if (tenantId !== null && !tenant)
          return refuse('unknown-tenant', new TresorError('TRESOR_ERR_NOT_FOUND', 'no such tenant'));
        const row: AccessReviewsTable = {
          id: newId('rev'),
          period_from: iso(period.from),
          period_to: iso(period.to),
          tenant: tenant?.id ?? null,
          note,
          attested_by: officer,
          recorded_by: `${by.audit.kind}:${by.audit.id}`,
          attested_at: iso(t),
        };
        await trx.insertInto('access_reviews').values(row).execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            by.audit,
            { at: row.attested_at, tenant: row.tenant, action: 'access.attest', outcome: 'success' },
            { reviewId: row.id, from: row.period_from, to: row.period_to, attestedBy: officer, note },
            meta,
          ),
        );
        return toAttestation(row);
      });
    },

    async unreviewed(actor, options = {}) {
      const scope = await run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const refuse = (why: string, error: TresorError) =>
          refuseIn(
            trx,
            by?.audit ?? auditActorOf(actor),
            { tenant: null, action: 'access.unreviewed', target: { refused: why } },
            error,
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
