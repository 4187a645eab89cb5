/**
 * How the greybox matrix's expectations are written down: the callers (columns), the groups of
 * callers the product's rules name, and one declaration per route — who the route admits and a
 * valid-shaped request for it, naming the caller's own tenant's objects and, where the path names a
 * tenant's object, the other tenant's.
 *
 * Expected outcome of a cell:
 * - own tenant: `allow` for a caller in `allow` (authorization let it through: 2xx, or a domain 4xx
 *   such as 404/409 from the handler), `deny` (401/403, before any effect) for every other caller;
 * - other tenant (only for callers bound to a tenant: the tenant's keys and admin, and staff through
 *   a grant on data routes): `hidden` (403 or 404, nothing of the other tenant in the answer) for a
 *   caller admitted on its own tenant, `deny` for the others.
 *
 * To declare a new route: add `'METHOD /path/:param': { allow, own, other?, data?, last? }` to
 * test/security/greybox/<module name>.ts (the module's `name`, as src/http/routes/index.ts builds
 * it). A route without a declaration, or a declaration without a route, fails the matrix.
 */
import type { OperatorScope } from '../../src/identity/operator-scopes.ts';
import { OPERATOR_SCOPES } from '../../src/identity/operator-scopes.ts';

/** The console sessions' callers, each a person of that role signed in (staff+…: support agents naming a grant). */
export const SESSION_CALLERS = [
  'tenant-admin',
  'staff',
  'staff+read',
  'staff+rw',
  'staff+expired',
  'contractor',
  'security-officer',
  'operator',
  'operator(stale)',
] as const;

export type TokenCaller = `token:${OperatorScope}`;
export type Caller =
  | 'anonymous'
  | 'key:admin'
  | 'key:write'
  | 'key:read'
  | (typeof SESSION_CALLERS)[number]
  | TokenCaller;

/** The columns, in the order they are run and printed. */
export const CALLERS: readonly Caller[] = [
  'anonymous',
  'key:admin',
  'key:write',
  'key:read',
  ...SESSION_CALLERS,
  ...OPERATOR_SCOPES.map((s) => `token:${s}` as const),
];

/** Callers bound to tenant A on every route (its keys and its admin). */
export const TENANT_BOUND: ReadonlySet<Caller> = new Set([
  'key:admin',
  'key:write',
  'key:read',
  'tenant-admin',
]);
/** Staff bound to tenant A on data routes by the grant they name. */
export const GRANT_BOUND: ReadonlySet<Caller> = new Set(['staff+read', 'staff+rw', 'staff+expired']);

export type Outcome = 'allow' | 'deny' | 'hidden';

// --- the groups the product's rules name -----------------------------------------------------------

export const token = (scope: OperatorScope): TokenCaller => `token:${scope}`;
export const KEYS: readonly Caller[] = ['key:admin', 'key:write', 'key:read'];
/** Every console session, a stale second factor included. */
export const SESSIONS: readonly Caller[] = SESSION_CALLERS;
/** Sessions that passed a second factor within the step-up window. */
export const FRESH_SESSIONS: readonly Caller[] = SESSION_CALLERS.filter((c) => c !== 'operator(stale)');
/** Operator admins' sessions (a stale one too: only `+2fa` routes ask for a fresh factor). */
export const OPERATOR: readonly Caller[] = ['operator', 'operator(stale)'];
export const STAFF: readonly Caller[] = ['staff', 'staff+read', 'staff+rw', 'staff+expired'];

export interface CellRequest {
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** What a request may need of the caller it is sent as. */
export interface CallerContext {
  caller: Caller;
  /** The caller's own session id (a session that names nothing for other callers). */
  sessionId: string;
  /** A TOTP code the caller's factor accepts now (never one used before); '123456' for non-people. */
  totp(): Promise<string>;
  /** A request as the caller, to make what the cell's request names (a factor being enrolled). */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; text: string }>;
  /** A TOTP code for another secret (a factor the cell enrols). */
  codeFor(secret: string): Promise<string>;
}

/** The objects the requests name (made by greybox-fixtures.ts). */
export interface TenantObjects {
  tenant: string;
  collection: string;
  record: string;
  /** An API key of the tenant other than the callers' (revocable). */
  apiKeyId: string;
  /** A grant on this tenant (pending). */
  grant: string;
  /** A tenant member people routes act on. */
  member: string;
  /** People the routes that disable or delete act on: one per caller that may, so each acts on a live one. */
  victims: Partial<Record<Caller, string>> & { 'tenant-admin': string };
  /** A canary value of the tenant's record: must never reach the other tenant's callers. */
  canary: string;
}

export interface Fixtures {
  a: TenantObjects;
  b: TenantObjects;
  /** A tenant that may be closed (and the close cancelled). */
  closable: string;
  /** A person whose login the public login route may begin. */
  loginEmail: string;
  loginPassword: string;
  /** Ids of the right shape that name nothing. */
  ghost: {
    record: string;
    grant: string;
    person: string;
    apiKey: string;
    session: string;
    factor: string;
    alert: string;
    backup: string;
    token: string;
    restore: string;
    handle: string;
    enrolment: string;
  };
  /** A name no other cell uses (e-mail addresses, token names). */
  unique(): string;
}

export interface RouteExpectation {
  /** Who the route admits on the caller's own tenant; every other caller is refused. */
  allow: 'everyone' | readonly Caller[];
  /** A valid-shaped request naming the caller's own tenant's objects (or nothing that must not change). */
  own: (f: Fixtures, ctx: CallerContext) => CellRequest | Promise<CellRequest>;
  /** The same request naming the other tenant's object, where the path names one. */
  other?: (f: Fixtures, ctx: CallerContext) => CellRequest | Promise<CellRequest>;
  /** A tenant-data route: staff reach it through a grant, which binds them to its tenant. */
  data?: boolean;
  /**
   * The cell ends or replaces the caller's session: run after every other route (the session is
   * then renewed: adopted from the answer, or signed in again).
   */
  last?: boolean;
}

export type Declarations = Record<string, RouteExpectation>;

export function expectedOwn(decl: RouteExpectation, caller: Caller): Outcome {
  return decl.allow === 'everyone' || decl.allow.includes(caller) ? 'allow' : 'deny';
}

/** The other-tenant outcome, or undefined where the cell does not apply. */
export function expectedOther(decl: RouteExpectation, caller: Caller): Outcome | undefined {
  if (!decl.other) return undefined;
  const bound = TENANT_BOUND.has(caller) || (decl.data === true && GRANT_BOUND.has(caller));
  if (!bound) return undefined;
  return expectedOwn(decl, caller) === 'allow' ? 'hidden' : 'deny';
}

export const only = (...callers: readonly (Caller | readonly Caller[])[]): readonly Caller[] =>
  callers.flat() as Caller[];
