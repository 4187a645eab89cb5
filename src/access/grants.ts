/**
 * Staff access grants: the only way staff reach a tenant's records (DESIGN.md invariant 7).
 *
 * Model:
 * - a person whose role may request grants (support agent, contractor, security officer) asks for
 *   one tenant's records — some collections or all, read or read-write — for a reason and a ticket,
 *   for at most the configured hard maximum (8 h by default; a longer request is refused, never
 *   clamped);
 * - the tenant's approval policy, frozen into the request when it is made, says who must approve:
 *     customer   (lockbox, the default) a tenant admin of THAT tenant;
 *     four-eyes  another employee (support agent or security officer);
 *     automatic  nobody: approved at once, and the tenant is told through its audit stream.
 *   A contractor is not an employee: every contractor's request also needs an employee's approval,
 *   under every policy (customer: the tenant admin AND an employee; automatic: an employee).
 *   Nobody approves or denies their own request. A tenant admin may always deny a request to their
 *   own tenant; an employee may deny one that awaits an employee's approval;
 * - the requester starts the clock (activate) after passing a second factor AFTER the request was
 *   made, and recently (FRESH_2FA_MS): the password session alone never opens tenant data. The
 *   grant is live from then until activatedAt + duration;
 * - break-glass: a security officer with a fresh second factor opens an active grant at once, with
 *   no approval; it is audited with severity high on the tenant's own audit stream;
 * - states only move forward (pending → approved → active → expired | revoked; pending → denied);
 *   the store's triggers refuse anything else. A request not decided, or an approval not activated,
 *   within `requestTtlMs` (72 h by default) expires too, so no approval lies around to be used later;
 * - expiry is by time: every read compares with now(); `expireDue()` records it (grant.expire);
 * - revoke: the requester, a security officer, an operator admin, or a tenant admin of the tenant;
 * - a person's role change, disabling or removal ends their grants in the same commit
 *   (endGrantsOfIn, wired as PeopleServiceOptions.onAccessRemoved).
 *
 * Every change and every refusal is audited in the same transaction, with the grant's tenant as the
 * event's tenant (the customer sees who asked, why and what happened). A refusal's event is committed
 * and only then is the error thrown. Actors are re-read inside the transaction (resolveActorIn), and
 * the second-factor time is read from the live session row, not taken from the caller.
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import { FRESH_2FA_MS } from '../identity/people.ts';
import {
  canApproveGrants,
  canBreakGlass,
  canRequestGrants,
  isEmployee,
  type Role,
  sideOf,
} from '../identity/roles.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  identityEvent,
  newId,
  type ResolvedActor,
  resolveActorIn,
  type SessionPrincipal,
} from '../identity/sessions.ts';
import type { Store } from '../store/types.ts';
import { isValidName } from '../vault/schema.ts';
import {
  type AccessDB,
  APPROVAL_POLICIES,
  type ApprovalPolicy,
  GRANT_ACCESSES,
  GRANT_STATES,
  type GrantAccess,
  type GrantState,
  type GrantsTable,
} from './access-store-schema.ts';

export type { ApprovalPolicy, GrantAccess, GrantState } from './access-store-schema.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
export const DEFAULT_GRANT_DURATION_MS = 60 * MINUTE;
export const MAX_GRANT_DURATION_MS = 8 * HOUR;
export const DEFAULT_REQUEST_TTL_MS = 72 * HOUR;
export const REASON_MIN_CHARS = 10;
export const REASON_MAX_CHARS = 500;
export const MAX_GRANT_COLLECTIONS = 64;
/** A ticket reference: letters, digits and a few separators (`SUP-1234`, `jira:OPS#77`), 1–100 chars. */
export const TICKET_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:#/-]{0,99}$/;
export const GRANT_ID_PATTERN = /^grt_[0-9a-f]{24}$/;
const PERSON_ID_PATTERN = /^psn_[0-9a-f]{24}$/;
/** Grants returned by one list call at most (newest first). */
const LIST_LIMIT = 1000;

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

export interface GrantRequestInput {
  tenant: string;
  collections: '*' | string[];
  access: GrantAccess;
  reason: string;
  ticket: string;
  durationMinutes?: number;
}

export interface GrantFilter {
  tenant?: string;
  person?: string;
  state?: GrantState;
}

export interface GrantService {
  request(actor: SessionPrincipal, input: GrantRequestInput, meta?: AuditMeta): Promise<GrantInfo>;
  approve(actor: SessionPrincipal, grantId: string, meta?: AuditMeta): Promise<GrantInfo>;
  deny(actor: SessionPrincipal, grantId: string, meta?: AuditMeta): Promise<GrantInfo>;
  /** The requester starts the clock; needs a second factor passed AFTER the request and within FRESH_2FA_MS. */
  activate(actor: SessionPrincipal, grantId: string, meta?: AuditMeta): Promise<GrantInfo>;
  revoke(actor: IdentityActor, grantId: string, meta?: AuditMeta): Promise<GrantInfo>;
  /** Security officer only, with a fresh second factor: active at once, no approval, high severity. */
  breakGlass(actor: SessionPrincipal, input: GrantRequestInput, meta?: AuditMeta): Promise<GrantInfo>;
  get(actor: IdentityActor, grantId: string): Promise<GrantInfo>;
  list(actor: IdentityActor, filter?: GrantFilter): Promise<GrantInfo[]>;
  /** undefined unless the grant exists, is the person's, is active and unexpired, and the person still holds a requesting role. Never throws for a bad id. */
  liveGrant(personId: string, grantId: string): Promise<LiveGrant | undefined>;
  /** For PeopleServiceOptions.onAccessRemoved: ends every pending/approved/active grant of the person inside trx, audited. */
  endGrantsOfIn(trx: Transaction<AccessDB>, personId: string, reason: string): Promise<number>;
  /** Records every expiry that time has brought (grant.expire, system actor `grants`); returns how many. */
  expireDue(): Promise<number>;
  setPolicy(actor: IdentityActor, tenant: string, policy: ApprovalPolicy, meta?: AuditMeta): Promise<void>;
  getPolicy(tenant: string): Promise<ApprovalPolicy>;
}

export interface GrantConfig {
  /** When a request names no duration (60 min). */
  defaultDurationMs: number;
  /** The hard maximum; a longer request is refused (8 h). */
  maxDurationMs: number;
  /** A tenant without a policy of its own ('customer'). */
  defaultPolicy: ApprovalPolicy;
  /** A request must be decided, and an approved grant activated, within this (72 h). */
  requestTtlMs: number;
}

export const DEFAULT_GRANT_CONFIG: GrantConfig = {
  defaultDurationMs: DEFAULT_GRANT_DURATION_MS,
  maxDurationMs: MAX_GRANT_DURATION_MS,
  defaultPolicy: 'customer',
  requestTtlMs: DEFAULT_REQUEST_TTL_MS,
};

/** The system actor of grant work nobody asked for (expiry, grants ended with an account). */
export const GRANTS_SYSTEM_ACTOR = { kind: 'system', id: 'grants' } as const;

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

// --- errors --------------------------------------------------------------------------------------

function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'not allowed for this account');
}

function notFound(what: string): TresorError {
  return new TresorError('TRESOR_ERR_NOT_FOUND', `no such ${what}`);
}

function wrongState(state: GrantState, message = `the grant is ${state}`): TresorError {
  return new TresorError('TRESOR_ERR_GRANT_STATE', message, { state });
}

function invalid(field: string, message: string, details: Record<string, unknown> = {}): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field, ...details });
}

function secondFactorRequired(): TresorError {
  return new TresorError(
    'TRESOR_ERR_SECOND_FACTOR_REQUIRED',
    'pass a second factor again (re-authenticate) before opening this grant',
  );
}

/** A refusal whose audit event is written in the transaction: thrown once the commit is durable. */
class Refusal {
  constructor(readonly error: TresorError) {}
}

// --- input ---------------------------------------------------------------------------------------

interface CheckedRequest {
  tenant: string;
  collections: '*' | string[];
  access: GrantAccess;
  reason: string;
  ticket: string;
  durationMs: number;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

function checkRequest(input: unknown, config: GrantConfig): CheckedRequest | TresorError {
  if (typeof input !== 'object' || input === null) return invalid('body', 'an object');
  const i = input as Record<string, unknown>;
  if (typeof i.tenant !== 'string' || i.tenant.length < 1 || i.tenant.length > 64)
    return invalid('tenant', 'a tenant id');
  let collections: '*' | string[];
  if (i.collections === '*') collections = '*';
  else if (
    Array.isArray(i.collections) &&
    i.collections.length >= 1 &&
    i.collections.length <= MAX_GRANT_COLLECTIONS &&
    i.collections.every(isValidName) &&
    new Set(i.collections).size === i.collections.length
  )
    collections = [...(i.collections as string[])];
  else return invalid('collections', `"*" or 1–${MAX_GRANT_COLLECTIONS} distinct collection names`);
  if (!(GRANT_ACCESSES as readonly unknown[]).includes(i.access))
    return invalid('access', `one of ${GRANT_ACCESSES.join(', ')}`);
  const reason = typeof i.reason === 'string' ? i.reason.trim() : '';
  if (reason.length < REASON_MIN_CHARS || reason.length > REASON_MAX_CHARS || CONTROL_CHARS.test(reason))
    return invalid('reason', `${REASON_MIN_CHARS}–${REASON_MAX_CHARS} printable characters`);
  if (typeof i.ticket !== 'string' || !TICKET_PATTERN.test(i.ticket))
    return invalid('ticket', '1–100 characters: letters, digits and . _ : # / -');
  let durationMs = config.defaultDurationMs;
  if (i.durationMinutes !== undefined) {
    const m = i.durationMinutes;
    if (typeof m !== 'number' || !Number.isSafeInteger(m) || m < 1)
      return invalid('durationMinutes', 'a whole number of minutes, at least 1');
    durationMs = m * MINUTE;
    if (durationMs > config.maxDurationMs) {
      return invalid('durationMinutes', `at most ${config.maxDurationMs / MINUTE} minutes`, {
        max: config.maxDurationMs / MINUTE,
      });
    }
  }
  return {
    tenant: i.tenant,
    collections,
    access: i.access as GrantAccess,
    reason,
    ticket: i.ticket,
    durationMs,
  };
}

function checkConfig(config: GrantConfig): GrantConfig {
  const positive = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!positive(config.maxDurationMs) || !positive(config.defaultDurationMs))
    throw new RangeError('grants: durations must be positive whole milliseconds');
  if (config.defaultDurationMs > config.maxDurationMs)
    throw new RangeError('grants: the default duration exceeds the maximum');
  if (!positive(config.requestTtlMs)) throw new RangeError('grants: requestTtlMs');
  if (!APPROVAL_POLICIES.includes(config.defaultPolicy)) throw new RangeError('grants: defaultPolicy');
  return config;
}

/** An id fit to be written into an audit event (never arbitrary caller text). */
const safeId = (id: unknown, pattern = GRANT_ID_PATTERN) =>
  typeof id === 'string' && pattern.test(id) ? id : '(malformed)';

// --- rows ----------------------------------------------------------------------------------------

function approvalsOf(row: GrantsTable): GrantApproval[] {
  const approvals: GrantApproval[] = [];
  if (row.customer_approved_by !== null && row.customer_approved_at !== null)
    approvals.push({ as: 'customer', by: row.customer_approved_by, at: row.customer_approved_at });
  if (row.employee_approved_by !== null && row.employee_approved_at !== null)
    approvals.push({ as: 'employee', by: row.employee_approved_by, at: row.employee_approved_at });
  return approvals;
}

function awaitingOf(row: GrantsTable): ApprovalSide[] {
  if (row.state !== 'pending') return [];
  const given = new Set(approvalsOf(row).map((a) => a.as));
  return requiredApprovals(row.policy, row.requester_role).filter((side) => !given.has(side));
}

function grantTarget(row: GrantsTable): Record<string, unknown> {
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

export function createGrantService(options: {
  control: Store<AccessDB>;
  now: () => Date;
  config?: Partial<GrantConfig>;
}): GrantService {
  const { control, now } = options;
  const config = checkConfig({ ...DEFAULT_GRANT_CONFIG, ...options.config });

  const deadlineOf = (row: GrantsTable) => grantDeadline(row, config.requestTtlMs);
  const stateAt = (row: GrantsTable, t: number) => grantStateAt(row, t, config.requestTtlMs);
  const toInfo = (row: GrantsTable, t: number) => grantInfoOf(row, t, config.requestTtlMs);

  /** Runs `work` in one write; a Refusal it returns is thrown after its audit event committed. */
  async function run<T>(work: (trx: Transaction<AccessDB>) => Promise<T | Refusal>): Promise<T> {
    const result = await control.write(work);
    if (result instanceof Refusal) throw result.error;
    return result;
  }

  async function refuseIn(
    trx: Transaction<AccessDB>,
    step: {
      actor: { kind: ResolvedActor['audit']['kind']; id: string };
      tenant: string | null;
      action: string;
      target: Record<string, unknown>;
      error: TresorError;
    },
    meta: AuditMeta | undefined,
  ): Promise<Refusal> {
    const outcome = step.error.code === 'TRESOR_ERR_FORBIDDEN' ? 'denied' : 'failure';
    await appendAuditEvent(
      trx,
      identityEvent(
        step.actor,
        { at: now().toISOString(), tenant: step.tenant, action: step.action, outcome },
        { ...step.target, refusal: step.error.code },
        meta,
      ),
    );
    return new Refusal(step.error);
  }

  async function auditIn(
    trx: Transaction<AccessDB>,
    actor: { kind: ResolvedActor['audit']['kind']; id: string },
    step: { at: string; tenant: string | null; action: string },
    target: Record<string, unknown>,
    meta: AuditMeta | undefined,
  ): Promise<void> {
    await appendAuditEvent(trx, identityEvent(actor, { ...step, outcome: 'success' }, target, meta));
  }

  const tenantIn = (trx: Transaction<AccessDB>, id: unknown) =>
    typeof id === 'string'
      ? trx.selectFrom('tenants').select(['id', 'state']).where('id', '=', id).executeTakeFirst()
      : Promise.resolve(undefined);

  const grantIn = (trx: Transaction<AccessDB>, id: unknown) =>
    typeof id === 'string' && GRANT_ID_PATTERN.test(id)
      ? trx.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst()
      : Promise.resolve(undefined);

  async function policyIn(trx: Transaction<AccessDB>, tenant: string): Promise<ApprovalPolicy> {
    const row = await trx
      .selectFrom('grant_policies')
      .select('policy')
      .where('tenant', '=', tenant)
      .executeTakeFirst();
    return row?.policy ?? config.defaultPolicy;
  }

  /**
   * When the session last passed a second factor, read from the session row (live, the actor's own):
   * the caller's copy of the principal is not trusted for this. null when none or the session ended.
   */
  async function fresh2faIn(trx: Transaction<AccessDB>, actor: SessionPrincipal): Promise<number | null> {
    if (actor.kind !== 'session' || typeof actor.sessionId !== 'string') return null;
    const s = await trx
      .selectFrom('sessions')
      .select(['person', 'revoked_at', 'idle_expires_at', 'absolute_expires_at', 'fresh_2fa_at'])
      .where('id', '=', actor.sessionId)
      .executeTakeFirst();
    const t = now().getTime();
    if (
      !s ||
      s.person !== actor.personId ||
      s.revoked_at !== null ||
      Date.parse(s.idle_expires_at) <= t ||
      Date.parse(s.absolute_expires_at) <= t ||
      s.fresh_2fa_at === null
    )
      return null;
    const at = Date.parse(s.fresh_2fa_at);
    // Not from the future, and recent enough.
    return at <= t && t - at <= FRESH_2FA_MS ? at : null;
  }

  /** The approval sides of `row` that `by` qualifies for (not counting what is given already). */
  function sidesOf(by: ResolvedActor, row: GrantsTable): ApprovalSide[] {
    if (by.personId === null || !canApproveGrants(by.role)) return [];
    return requiredApprovals(row.policy, row.requester_role).filter((side) =>
      side === 'customer'
        ? by.role === 'tenant-admin' && by.tenant !== null && by.tenant === row.tenant
        : sideOf(by.role) === 'operator' && isEmployee(by.role),
    );
  }

  function mayView(by: ResolvedActor, row: GrantsTable, t: number): boolean {
    if (by.role === 'security-officer' || by.role === 'operator-admin') return true;
    if (by.personId !== null && by.personId === row.requester) return true;
    if (by.role === 'tenant-admin') return by.tenant === row.tenant;
    // An employee who may approve sees the requests that wait for an employee.
    return (
      stateAt(row, t) === 'pending' && awaitingOf(row).includes('employee') && sidesOf(by, row).length > 0
    );
  }

  /** Shared steps of approve, deny, activate and revoke: the actor, the grant, the refusal helper. */
  async function decisionIn(
    trx: Transaction<AccessDB>,
    actor: IdentityActor,
    grantId: string,
    action: string,
    meta: AuditMeta | undefined,
  ): Promise<
    | Refusal
    | {
        by: ResolvedActor | undefined;
        row: GrantsTable;
        state: GrantState;
        refuse: (why: string, error: TresorError) => Promise<Refusal>;
      }
  > {
    const by = await resolveActorIn(trx, actor);
    const auditActor = by?.audit ?? auditActorOf(actor);
    const row = await grantIn(trx, grantId);
    if (!row) {
      return refuseIn(
        trx,
        {
          actor: auditActor,
          tenant: null,
          action,
          target: { grantId: safeId(grantId), refused: 'unknown-grant' },
          error: notFound('grant'),
        },
        meta,
      );
    }
    const refuse = (why: string, error: TresorError) =>
      refuseIn(
        trx,
        {
          actor: auditActor,
          tenant: row.tenant,
          action,
          target: { ...grantTarget(row), refused: why },
          error,
        },
        meta,
      );
    return { by, row, state: stateAt(row, now().getTime()), refuse };
  }

  /** Request and break-glass: checks common to both, then the new row. */
  async function newGrantIn(
    trx: Transaction<AccessDB>,
    actor: SessionPrincipal,
    input: GrantRequestInput,
    how: 'request' | 'break-glass',
    meta: AuditMeta | undefined,
  ): Promise<Refusal | { by: ResolvedActor; row: GrantsTable }> {
    const action = how === 'request' ? 'grant.request' : 'grant.break-glass';
    const by = await resolveActorIn(trx, actor);
    const tenant = await tenantIn(trx, (input as { tenant?: unknown } | null)?.tenant);
    const refuse = (why: string, error: TresorError, extra: Record<string, unknown> = {}) =>
      refuseIn(
        trx,
        {
          actor: by?.audit ?? auditActorOf(actor),
          tenant: tenant?.id ?? null,
          action,
          target: { ...(how === 'break-glass' ? { severity: 'high' } : {}), ...extra, refused: why },
          error,
        },
        meta,
      );
    const allowed = how === 'request' ? canRequestGrants : canBreakGlass;
    if (!by || by.personId === null || !allowed(by.role)) return refuse('role', forbidden());
    const checked = checkRequest(input, config);
    if (checked instanceof TresorError) return refuse('invalid', checked, { field: checked.details?.field });
    if (!tenant) return refuse('unknown-tenant', notFound('tenant'));
    if (tenant.state !== 'active') {
      return refuse(
        'tenant-state',
        new TresorError('TRESOR_ERR_TENANT_STATE', `tenant is ${tenant.state}`, { state: tenant.state }),
      );
    }
    if (how === 'break-glass' && (await fresh2faIn(trx, actor)) === null)
      return refuse('second-factor', secondFactorRequired());
    const at = now();
    const policy = await policyIn(trx, tenant.id);
    const row: GrantsTable = {
      id: newId('grt'),
      tenant: tenant.id,
      requester: by.personId,
      requester_role: by.role,
      collections: JSON.stringify(checked.collections),
      access: checked.access,
      reason: checked.reason,
      ticket: checked.ticket,
      duration_ms: checked.durationMs,
      policy,
      state: 'pending',
      break_glass: 0,
      requested_at: at.toISOString(),
      customer_approved_by: null,
      customer_approved_at: null,
      employee_approved_by: null,
      employee_approved_at: null,
      decided_at: null,
      decided_by: null,
      activated_at: null,
      expires_at: null,
      ended_at: null,
      end_reason: null,
    };
    return { by, row };
  }

  return {
    async request(actor, input, meta) {
      return run(async (trx) => {
        const made = await newGrantIn(trx, actor, input, 'request', meta);
        if (made instanceof Refusal) return made;
        const { by, row } = made;
        const automatic = requiredApprovals(row.policy, row.requester_role).length === 0;
        if (automatic) {
          row.state = 'approved';
          row.decided_at = row.requested_at;
        }
        await trx.insertInto('grants').values(row).execute();
        const step = { at: row.requested_at, tenant: row.tenant };
        await auditIn(
          trx,
          by.audit,
          { ...step, action: 'grant.request' },
          { ...grantTarget(row), policy: row.policy, awaiting: awaitingOf(row) },
          meta,
        );
        if (automatic) {
          // The tenant's stream says, in so many words, that nobody approved this one.
          await auditIn(
            trx,
            { kind: 'system', id: 'grant-policy' },
            { ...step, action: 'grant.approve' },
            { ...grantTarget(row), policy: 'automatic', approvedBy: 'tenant-policy' },
            meta,
          );
        }
        return toInfo(row, now().getTime());
      });
    },

    async approve(actor, grantId, meta) {
      return run(async (trx) => {
        const d = await decisionIn(trx, actor, grantId, 'grant.approve', meta);
        if (d instanceof Refusal) return d;
        const { by, row, state, refuse } = d;
        if (!by || by.personId === null) return refuse('actor', forbidden());
        if (by.personId === row.requester) return refuse('own-request', forbidden());
        const sides = sidesOf(by, row);
        if (sides.length === 0) return refuse('not-an-approver', forbidden());
        if (state !== 'pending') return refuse('state', wrongState(state));
        const awaiting = awaitingOf(row);
        const side = sides.find((s) => awaiting.includes(s));
        if (side === undefined) {
          return refuse('already-approved', wrongState(state, 'this approval is given; another is awaited'));
        }
        const at = now().toISOString();
        const done = awaiting.length === 1;
        const next: GrantsTable = {
          ...row,
          ...(side === 'customer'
            ? { customer_approved_by: by.personId, customer_approved_at: at }
            : { employee_approved_by: by.personId, employee_approved_at: at }),
          ...(done ? { state: 'approved' as const, decided_at: at, decided_by: by.personId } : {}),
        };
        await trx
          .updateTable('grants')
          .set({
            customer_approved_by: next.customer_approved_by,
            customer_approved_at: next.customer_approved_at,
            employee_approved_by: next.employee_approved_by,
            employee_approved_at: next.employee_approved_at,
            state: next.state,
            decided_at: next.decided_at,
            decided_by: next.decided_by,
          })
          .where('id', '=', row.id)
          .execute();
        await auditIn(
          trx,
          by.audit,
          { at, tenant: row.tenant, action: 'grant.approve' },
          { ...grantTarget(row), as: side, awaiting: awaitingOf(next) },
          meta,
        );
        return toInfo(next, now().getTime());
      });
    },

    async deny(actor, grantId, meta) {
      return run(async (trx) => {
        const d = await decisionIn(trx, actor, grantId, 'grant.deny', meta);
        if (d instanceof Refusal) return d;
        const { by, row, state, refuse } = d;
        if (!by || by.personId === null) return refuse('actor', forbidden());
        if (by.personId === row.requester) return refuse('own-request', forbidden());
        // The tenant may always say no to access to its data; an employee when one is asked to approve.
        const tenantAdmin = by.role === 'tenant-admin' && by.tenant === row.tenant;
        if (!tenantAdmin && sidesOf(by, row).length === 0) return refuse('not-an-approver', forbidden());
        if (state !== 'pending') return refuse('state', wrongState(state));
        const at = now().toISOString();
        const next: GrantsTable = {
          ...row,
          state: 'denied',
          decided_at: at,
          decided_by: by.personId,
          ended_at: at,
          end_reason: 'denied',
        };
        await trx
          .updateTable('grants')
          .set({
            state: 'denied',
            decided_at: at,
            decided_by: by.personId,
            ended_at: at,
            end_reason: 'denied',
          })
          .where('id', '=', row.id)
          .execute();
        await auditIn(
          trx,
          by.audit,
          { at, tenant: row.tenant, action: 'grant.deny' },
          grantTarget(row),
          meta,
        );
        return toInfo(next, now().getTime());
      });
    },

    async activate(actor, grantId, meta) {
      return run(async (trx) => {
        const d = await decisionIn(trx, actor, grantId, 'grant.activate', meta);
        if (d instanceof Refusal) return d;
        const { by, row, state, refuse } = d;
        if (!by || by.personId === null || by.personId !== row.requester)
          return refuse('not-requester', forbidden());
        if (state !== 'approved') return refuse('state', wrongState(state));
        const fresh = await fresh2faIn(trx, actor);
        // The second factor must be passed after the request: the login's own does not count.
        if (fresh === null || !(fresh > Date.parse(row.requested_at)))
          return refuse('second-factor', secondFactorRequired());
        const tenant = await tenantIn(trx, row.tenant);
        if (tenant?.state !== 'active') {
          return refuse(
            'tenant-state',
            new TresorError('TRESOR_ERR_TENANT_STATE', 'the tenant is not active', { state: tenant?.state }),
          );
        }
        const t = now();
        const at = t.toISOString();
        const expiresAt = new Date(t.getTime() + row.duration_ms).toISOString();
        const next: GrantsTable = { ...row, state: 'active', activated_at: at, expires_at: expiresAt };
        await trx
          .updateTable('grants')
          .set({ state: 'active', activated_at: at, expires_at: expiresAt })
          .where('id', '=', row.id)
          .execute();
        await auditIn(
          trx,
          by.audit,
          { at, tenant: row.tenant, action: 'grant.activate' },
          { ...grantTarget(row), expiresAt },
          meta,
        );
        return toInfo(next, t.getTime());
      });
    },

    async revoke(actor, grantId, meta) {
      return run(async (trx) => {
        const d = await decisionIn(trx, actor, grantId, 'grant.revoke', meta);
        if (d instanceof Refusal) return d;
        const { by, row, state, refuse } = d;
        let who: string | undefined;
        if (by?.personId !== null && by?.personId === row.requester) who = 'requester';
        else if (by?.role === 'security-officer') who = 'security-officer';
        else if (by?.role === 'operator-admin') who = 'operator-admin';
        else if (by?.role === 'tenant-admin' && by.tenant === row.tenant) who = 'tenant-admin';
        if (!by || who === undefined) return refuse('not-allowed', forbidden());
        if (state !== 'pending' && state !== 'approved' && state !== 'active')
          return refuse('state', wrongState(state));
        const at = now().toISOString();
        const endReason = `revoked-by-${who}`;
        const next: GrantsTable = { ...row, state: 'revoked', ended_at: at, end_reason: endReason };
        await trx
          .updateTable('grants')
          .set({ state: 'revoked', ended_at: at, end_reason: endReason })
          .where('id', '=', row.id)
          .execute();
        await auditIn(
          trx,
          by.audit,
          { at, tenant: row.tenant, action: 'grant.revoke' },
          { ...grantTarget(row), from: state, endReason },
          meta,
        );
        return toInfo(next, now().getTime());
      });
    },

    async breakGlass(actor, input, meta) {
      return run(async (trx) => {
        const made = await newGrantIn(trx, actor, input, 'break-glass', meta);
        if (made instanceof Refusal) return made;
        const { by, row } = made;
        const t = Date.parse(row.requested_at);
        const expiresAt = new Date(t + row.duration_ms).toISOString();
        const next: GrantsTable = {
          ...row,
          state: 'active',
          break_glass: 1,
          activated_at: row.requested_at,
          expires_at: expiresAt,
        };
        await trx.insertInto('grants').values(next).execute();
        await auditIn(
          trx,
          by.audit,
          { at: row.requested_at, tenant: row.tenant, action: 'grant.break-glass' },
          { severity: 'high', ...grantTarget(next), policy: row.policy, expiresAt },
          meta,
        );
        return toInfo(next, now().getTime());
      });
    },

    async get(actor, grantId) {
      return run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const row = await grantIn(trx, grantId);
        const t = now().getTime();
        if (!by || !row || !mayView(by, row, t)) {
          // One answer for "no such grant" and "not yours to see".
          return refuseIn(
            trx,
            {
              actor: by?.audit ?? auditActorOf(actor),
              tenant: row?.tenant ?? null,
              action: 'grant.read',
              target: { grantId: safeId(grantId), refused: row ? 'not-allowed' : 'unknown-grant' },
              error: notFound('grant'),
            },
            undefined,
          );
        }
        return toInfo(row, t);
      });
    },

    async list(actor, filter = {}) {
      return run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const refuse = (why: string, error: TresorError) =>
          refuseIn(
            trx,
            {
              actor: by?.audit ?? auditActorOf(actor),
              tenant: null,
              action: 'grant.list',
              target: { refused: why },
              error,
            },
            undefined,
          );
        if (!by) return refuse('actor', forbidden());
        const f = (filter ?? {}) as Record<string, unknown>;
        if (f.tenant !== undefined && (typeof f.tenant !== 'string' || f.tenant.length > 64))
          return refuse('invalid', invalid('tenant', 'a tenant id'));
        if (f.person !== undefined && (typeof f.person !== 'string' || !PERSON_ID_PATTERN.test(f.person)))
          return refuse('invalid', invalid('person', 'a person id'));
        if (f.state !== undefined && !(GRANT_STATES as readonly unknown[]).includes(f.state))
          return refuse('invalid', invalid('state', `one of ${GRANT_STATES.join(', ')}`));
        const tenant = f.tenant as string | undefined;
        if (by.role === 'tenant-admin' && tenant !== undefined && tenant !== by.tenant)
          return refuse('other-tenant', forbidden());
        let q = trx.selectFrom('grants').selectAll();
        const scopeTenant = by.role === 'tenant-admin' ? (by.tenant ?? '') : tenant;
        if (scopeTenant !== undefined) q = q.where('tenant', '=', scopeTenant);
        if (f.person !== undefined) q = q.where('requester', '=', f.person as string);
        const rows = await q.orderBy('requested_at', 'desc').orderBy('id').limit(LIST_LIMIT).execute();
        const t = now().getTime();
        return rows
          .filter((row) => mayView(by, row, t))
          .map((row) => toInfo(row, t))
          .filter((g) => f.state === undefined || g.state === f.state);
      });
    },

    async liveGrant(personId, grantId) {
      if (typeof personId !== 'string' || typeof grantId !== 'string' || !GRANT_ID_PATTERN.test(grantId))
        return undefined;
      const row = await control.db
        .selectFrom('grants')
        .innerJoin('people', 'people.id', 'grants.requester')
        .innerJoin('tenants', 'tenants.id', 'grants.tenant')
        .selectAll('grants')
        .select([
          'people.role as person_role',
          'people.disabled_at',
          'people.removed_at',
          'tenants.state as tenant_state',
        ])
        .where('grants.id', '=', grantId)
        .executeTakeFirst();
      if (
        !row ||
        row.requester !== personId ||
        row.state !== 'active' ||
        row.expires_at === null ||
        !(now().getTime() < Date.parse(row.expires_at)) ||
        row.disabled_at !== null ||
        row.removed_at !== null ||
        row.person_role !== row.requester_role ||
        !canRequestGrants(row.person_role) ||
        row.tenant_state !== 'active'
      )
        return undefined;
      return {
        id: row.id,
        tenant: row.tenant,
        personId: row.requester,
        collections: Object.freeze(JSON.parse(row.collections)) as '*' | readonly string[],
        access: row.access,
        reason: row.reason,
        ticket: row.ticket,
        expiresAt: row.expires_at,
        breakGlass: row.break_glass === 1,
      };
    },

    async endGrantsOfIn(trx, personId, reason) {
      const rows = await trx
        .selectFrom('grants')
        .selectAll()
        .where('requester', '=', personId)
        .where('state', 'in', ['pending', 'approved', 'active'])
        .execute();
      const at = now().toISOString();
      const t = now().getTime();
      for (const row of rows) {
        const lapsed = stateAt(row, t) === 'expired';
        const state = lapsed ? 'expired' : 'revoked';
        const endReason = lapsed ? (deadlineOf(row)?.reason ?? 'expired') : reason;
        await trx
          .updateTable('grants')
          .set({ state, ended_at: at, end_reason: endReason })
          .where('id', '=', row.id)
          .execute();
        await auditIn(
          trx,
          GRANTS_SYSTEM_ACTOR,
          { at, tenant: row.tenant, action: lapsed ? 'grant.expire' : 'grant.end' },
          { ...grantTarget(row), from: row.state, endReason },
          undefined,
        );
      }
      return rows.length;
    },

    async expireDue() {
      return control.write(async (trx) => {
        const t = now().getTime();
        const rows = await trx
          .selectFrom('grants')
          .selectAll()
          .where('state', 'in', ['pending', 'approved', 'active'])
          .execute();
        const at = new Date(t).toISOString();
        let count = 0;
        for (const row of rows) {
          const deadline = deadlineOf(row);
          if (deadline === undefined || t < deadline.at) continue;
          const endedAt = new Date(deadline.at).toISOString();
          await trx
            .updateTable('grants')
            .set({ state: 'expired', ended_at: endedAt, end_reason: deadline.reason })
            .where('id', '=', row.id)
            .execute();
          await auditIn(
            trx,
            GRANTS_SYSTEM_ACTOR,
            { at, tenant: row.tenant, action: 'grant.expire' },
            { ...grantTarget(row), from: row.state, endReason: deadline.reason, endedAt },
            undefined,
          );
          count++;
        }
        return count;
      });
    },

    async setPolicy(actor, tenantId, policy, meta) {
      await run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const tenant = await tenantIn(trx, tenantId);
        const refuse = (why: string, error: TresorError) =>
          refuseIn(
            trx,
            {
              actor: by?.audit ?? auditActorOf(actor),
              tenant: tenant?.id ?? null,
              action: 'grant.policy',
              target: { policy: APPROVAL_POLICIES.includes(policy) ? policy : '(invalid)', refused: why },
              error,
            },
            meta,
          );
        if (!APPROVAL_POLICIES.includes(policy))
          return refuse('invalid', invalid('policy', `one of ${APPROVAL_POLICIES.join(', ')}`));
        // The tenant's own admin chooses; an operator admin may only restore the lockbox, never
        // loosen a customer's choice behind their back.
        const own = by?.role === 'tenant-admin' && tenant !== undefined && by.tenant === tenant.id;
        const tighten = by?.role === 'operator-admin' && policy === 'customer';
        if (!by || !(own || tighten)) return refuse('not-allowed', forbidden());
        if (!tenant) return refuse('unknown-tenant', notFound('tenant'));
        const from = await policyIn(trx, tenant.id);
        const at = now().toISOString();
        const updatedBy = `${by.audit.kind}:${by.audit.id}`;
        await trx
          .insertInto('grant_policies')
          .values({ tenant: tenant.id, policy, updated_at: at, updated_by: updatedBy })
          .onConflict((oc) =>
            oc.column('tenant').doUpdateSet({ policy, updated_at: at, updated_by: updatedBy }),
          )
          .execute();
        await auditIn(
          trx,
          by.audit,
          { at, tenant: tenant.id, action: 'grant.policy' },
          { policy, from },
          meta,
        );
        return undefined;
      });
    },

    async getPolicy(tenant) {
      if (typeof tenant !== 'string') return config.defaultPolicy;
      const row = await control.db
        .selectFrom('grant_policies')
        .select('policy')
        .where('tenant', '=', tenant)
        .executeTakeFirst();
      return row?.policy ?? config.defaultPolicy;
    },
  };
}
