/**
 * What an access review reads: the grants whose life overlapped a period, the staff accesses the
 * audit log itself records in it (the leaf's JSON, so the report shows what the tamper-evident log
 * says, not a second bookkeeping that could disagree with it), and the attestations touching it.
 * Entries below the archived end (src/audit/archived-end.ts) are read back from the sealed segments
 * (archivedSegments: each segment opened and checked whole), the rest from the store. A segment never
 * changes once sealed, so the staff accesses found in it (of every tenant, any time: few entries of a
 * segment are staff accesses) are kept per segment id and a later review filters them instead of
 * decrypting the segment again — up to MAX_KEPT_FINDINGS accesses in all, the least recently used
 * segments' dropped first.
 */
import type { Kysely } from 'kysely';
import { readArchivedEnd } from '../audit/archived-end.ts';
import { type AuditArchive, archivedSegments } from '../audit/archived-segments.ts';
import { readLeaves, readTenantLeaves, storedLogSize } from '../audit/leaf-store.ts';
import type { WithAuditLog } from '../audit/log-schema.ts';
import { TresorError } from '../errors.ts';
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

export function reviewEvidence(options: {
  db: Kysely<AccessDB>;
  now: () => Date;
  requestTtlMs: number;
  /** The sealed segments of the archived part of the log; without it, a partly archived log is refused. */
  archive?: () => Promise<AuditArchive>;
}) {
  const { db, now, requestTtlMs } = options;
  const findings = segmentFindings();
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
      // The leaves are stored compressed (src/audit/leaf-store.ts): read in index order, a page at a
      // time, of the tenant's entries or of the whole log, and picked here. A leaf naming neither a
      // grantId nor a break-glass is passed over before it is parsed.
      const log = db as unknown as Kysely<WithAuditLog>;
      const from = iso(period.from);
      const to = iso(period.to);
      const accesses: StaffAccess[] = [];
      const pick = (access: StaffAccess) => {
        if (access.at < from || access.at >= to) return;
        if (person !== undefined && access.person !== person) return;
        accesses.push(access);
      };
      const consider = (index: number, leaf: string) => {
        const access = staffAccessIn(index, leaf);
        if (access !== null) pick(access);
      };
      const archived = await readArchivedEnd(log);
      if (archived > 0) {
        if (options.archive === undefined)
          throw new TresorError(
            'TRESOR_ERR_AUDIT_SEGMENT_INVALID',
            `audit entries [0, ${archived}) are archived in sealed segments, which this review cannot read`,
          );
        for await (const segment of archivedSegments(await options.archive(), 0, archived)) {
          let found = findings.get(segment.id);
          if (found === undefined) {
            const { id, leaves } = await segment.open();
            found = [];
            for (const [i, bytes] of leaves.entries()) {
              const access = staffAccessIn(segment.first + i, bytes.toString('utf8'));
              if (access !== null) found.push(access);
            }
            findings.set(id, found);
          }
          for (const access of found) {
            if (access.index >= archived) break;
            if (scope.tenant !== undefined && access.tenant !== scope.tenant) continue;
            pick(access);
          }
        }
      }
      const end = await storedLogSize(log);
      for (let at = archived; at < end; ) {
        const page =
          scope.tenant === undefined
            ? await readLeaves(log, at, Math.min(end, at + REVIEW_PAGE))
            : await readTenantLeaves(log, scope.tenant, { from: at, limit: REVIEW_PAGE });
        const last = page[page.length - 1];
        if (scope.tenant === undefined) at += REVIEW_PAGE;
        else if (last === undefined) break;
        else at = last.index + 1;
        for (const { index, leaf } of page) consider(index, leaf);
      }
      return accesses;
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

/** Entries read per page of the log (a whole number of leaf blocks). */
const REVIEW_PAGE = 4096;

/** Staff accesses kept from opened segments, in all (~200 B each: some 20 MB at most). */
const MAX_KEPT_FINDINGS = 100_000;

/** The staff accesses found in each opened segment, by segment id; least recently used dropped first. */
function segmentFindings() {
  const kept = new Map<string, StaffAccess[]>();
  let count = 0;
  return {
    get(id: string): StaffAccess[] | undefined {
      const found = kept.get(id);
      if (found !== undefined) {
        kept.delete(id);
        kept.set(id, found);
      }
      return found;
    },
    set(id: string, found: StaffAccess[]): void {
      if (found.length > MAX_KEPT_FINDINGS || kept.has(id)) return;
      kept.set(id, found);
      count += found.length;
      for (const [oldest, dropped] of kept) {
        if (count <= MAX_KEPT_FINDINGS) break;
        kept.delete(oldest);
        count -= dropped.length;
      }
    },
  };
}

/** The staff access a leaf is, or null; a leaf naming neither a grantId nor a break-glass is not parsed. */
function staffAccessIn(index: number, leaf: string): StaffAccess | null {
  if (!leaf.includes('"grantId"') && !leaf.includes('"grant.break-glass"')) return null;
  return staffAccessOf(index, JSON.parse(leaf) as LeafFields);
}

/** The fields of a leaf the review reads (src/audit/event.ts). */
interface LeafFields {
  at?: unknown;
  tenant?: unknown;
  action?: unknown;
  outcome?: unknown;
  actor?: { id?: unknown; grantId?: unknown };
  target?: { grantId?: unknown };
}

const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** A staff access the entry is: an act through a grant, or a successful break-glass; else null. */
function staffAccessOf(index: number, e: LeafFields): StaffAccess | null {
  const action = text(e.action);
  const outcome = text(e.outcome);
  const actorGrant = text(e.actor?.grantId);
  if (actorGrant === null && !(action === 'grant.break-glass' && outcome === 'success')) return null;
  const at = text(e.at);
  if (at === null) return null;
  return {
    index,
    at,
    tenant: text(e.tenant) ?? '',
    person: text(e.actor?.id) ?? '',
    grantId: actorGrant ?? text(e.target?.grantId) ?? '',
    action: action ?? '',
    outcome: outcome ?? '',
  };
}
