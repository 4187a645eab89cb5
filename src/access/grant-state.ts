/**
 * A grant's state model: which approvals it needs, when time ends it, what it is as of a moment,
 * and what a live grant covers. Pure functions of the stored row (review.ts reads grants through
 * them too).
 */
import { isEmployee, type Role } from '../identity/roles.ts';
import type { ApprovalPolicy, GrantAccess, GrantState, GrantsTable } from './access-store-schema.ts';

/** Whose approval a grant needs: the tenant's (a tenant admin) or the operator's (an employee). */
export type ApprovalSide = 'customer' | 'employee';

export interface GrantApproval {
  as: ApprovalSide;
  by: string; // person id
  at: string;
}

export interface GrantInfo {
  id: string; // grt_<24 hex>
  tenant: string;
  requester: string; // person id
  requesterRole: Role;
  collections: '*' | string[];
  access: GrantAccess;
  reason: string;
  ticket: string;
  durationMs: number;
  /** As of now: an active grant past its expiry reads as expired before the sweep records it. */
  state: GrantState;
  breakGlass: boolean;
  requestedAt: string;
  decidedAt: string | null;
  decidedBy: string | null;
  activatedAt: string | null;
  expiresAt: string | null;
  endedAt: string | null;
  endReason: string | null;
  /** The tenant's policy when the request was made. */
  policy: ApprovalPolicy;
  approvals: GrantApproval[];
  /** Approvals still missing (empty once approved). */
  awaiting: ApprovalSide[];
}

/** What the request pipeline needs on every staff request: one indexed read. */
export interface LiveGrant {
  id: string;
  tenant: string;
  personId: string;
  collections: '*' | readonly string[];
  access: GrantAccess;
  reason: string;
  ticket: string;
  expiresAt: string;
  breakGlass: boolean;
}

/** The approvals a request needs under `policy`: contractors always need an employee. */
export function requiredApprovals(policy: ApprovalPolicy, role: Role): ApprovalSide[] {
  const contractor = role === 'contractor' || !isEmployee(role);
  if (policy === 'customer') return contractor ? ['customer', 'employee'] : ['customer'];
  if (policy === 'four-eyes') return ['employee'];
  return contractor ? ['employee'] : [];
}

/** Whether a live grant covers one operation on one collection of one tenant. */
export function grantAllows(
  grant: LiveGrant,
  op: { tenant: string; collection: string; write: boolean },
): boolean {
  if (grant.tenant !== op.tenant) return false;
  if (op.write && grant.access !== 'read-write') return false;
  return grant.collections === '*' || grant.collections.includes(op.collection);
}

export function approvalsOf(row: GrantsTable): GrantApproval[] {
  const approvals: GrantApproval[] = [];
  if (row.customer_approved_by !== null && row.customer_approved_at !== null)
    approvals.push({ as: 'customer', by: row.customer_approved_by, at: row.customer_approved_at });
  if (row.employee_approved_by !== null && row.employee_approved_at !== null)
    approvals.push({ as: 'employee', by: row.employee_approved_by, at: row.employee_approved_at });
  return approvals;
}

export function awaitingOf(row: GrantsTable): ApprovalSide[] {
  if (row.state !== 'pending') return [];
  const given = new Set(approvalsOf(row).map((a) => a.as));
  return requiredApprovals(row.policy, row.requester_role).filter((side) => !given.has(side));
}

/** The grant as an audit event's target: who asked, why, for what. */
export function grantTarget(row: GrantsTable): Record<string, unknown> {
  const target: Record<string, unknown> = {
    grantId: row.id,
    requester: row.requester,
    reason: row.reason,
    ticket: row.ticket,
    collections: JSON.parse(row.collections) as unknown,
    access: row.access,
    durationMs: row.duration_ms,
  };
  if (row.break_glass === 1) target.breakGlass = true;
  return target;
}

/** When time ends the grant in its current state, or undefined if it does not. */
export function grantDeadline(
  row: GrantsTable,
  requestTtlMs: number,
): { at: number; reason: string } | undefined {
  if (row.state === 'active') return { at: Date.parse(row.expires_at ?? ''), reason: 'expired' };
  if (row.state === 'pending')
    return { at: Date.parse(row.requested_at) + requestTtlMs, reason: 'not-decided-in-time' };
  if (row.state === 'approved') {
    const from = Date.parse(row.decided_at ?? row.requested_at);
    return { at: from + requestTtlMs, reason: 'not-activated-in-time' };
  }
  return undefined;
}

/** The state as of `t`: time moves pending, approved and active grants to expired. */
export function grantStateAt(row: GrantsTable, t: number, requestTtlMs: number): GrantState {
  const deadline = grantDeadline(row, requestTtlMs);
  // Not `t >= at`: a NaN deadline (a damaged row) must read as expired, never as live.
  return deadline !== undefined && !(t < deadline.at) ? 'expired' : row.state;
}

/** A stored grant as of `t` (for review.ts too). */
export function grantInfoOf(row: GrantsTable, t: number, requestTtlMs: number): GrantInfo {
  const state = grantStateAt(row, t, requestTtlMs);
  const lapsed =
    state === 'expired' && row.state !== 'expired' ? grantDeadline(row, requestTtlMs) : undefined;
  return {
    id: row.id,
    tenant: row.tenant,
    requester: row.requester,
    requesterRole: row.requester_role,
    collections: JSON.parse(row.collections) as '*' | string[],
    access: row.access,
    reason: row.reason,
    ticket: row.ticket,
    durationMs: row.duration_ms,
    state,
    breakGlass: row.break_glass === 1,
    requestedAt: row.requested_at,
    decidedAt: row.decided_at,
    decidedBy: row.decided_by,
    activatedAt: row.activated_at,
    expiresAt: row.expires_at,
    endedAt: lapsed ? new Date(lapsed.at).toISOString() : row.ended_at,
    endReason: lapsed ? lapsed.reason : row.end_reason,
    policy: row.policy,
    approvals: approvalsOf(row),
    awaiting: state === 'pending' ? awaitingOf(row) : [],
  };
}
