/**
 * The route × role matrix: for EVERY route the server registers (taken from the route table, so a
 * new route cannot be forgotten: it fails here until its rule is written down below) and for every
 * kind of caller — tenant API keys of each scope, an operator token of each scope, a console
 * session of each of the six roles, staff holding a live read or read-write grant, staff naming a
 * grant that is not live, a customer naming a grant — the test proves the route's rule: callers the
 * rule admits get past authorization (the validation layer runs), every other caller is refused
 * before anything is read, with 403 (or 401 for a stale second factor), and no handler runs.
 *
 * Authorization here is the pipeline's: the route's auth mode, the grant resolution, each route's
 * authorize. What lies behind it — a tenant's records answering only inside its own store, a tenant
 * admin managing only its own tenant's people — is proved per domain with real stores and real
 * cross-tenant attempts (test/e2e/vault-http.test.ts probes every tenant-key route across tenants;
 * test/e2e/identity-http.test.ts and access-http.test.ts do the same for people and grants).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TresorError } from '../../src/errors.ts';
import { registeredRoutes } from '../../src/http/pipeline.ts';
import { PUBLIC_ROUTES } from '../../src/http/route.ts';
import { allRouteModules, specOnlyDependencies } from '../../src/http/routes/index.ts';
import { OPERATOR_SCOPES, type OperatorScope } from '../../src/identity/operator-scopes.ts';
import type { Principal, SessionPrincipal } from '../../src/identity/principal.ts';
import type { Role } from '../../src/identity/roles.ts';
import { buildTestApp, NOW, TEST_ORIGIN } from './fixtures/harness.ts';

// --- the callers -----------------------------------------------------------------------------------

type KeyScope = 'admin' | 'write' | 'read';
type Caller =
  | { name: string; kind: 'anonymous' }
  | { name: string; kind: 'key'; scope: KeyScope }
  | { name: string; kind: 'operator-token'; scope: OperatorScope }
  | { name: string; kind: 'session'; role: Role; fresh: boolean; grant?: 'read' | 'read-write' | 'dead' };

const ROLES: readonly Role[] = [
  'operator-admin',
  'security-officer',
  'support-agent',
  'contractor',
  'tenant-admin',
  'tenant-member',
];

const CALLERS: Caller[] = [
  { name: 'anonymous', kind: 'anonymous' },
  { name: 'key:admin', kind: 'key', scope: 'admin' },
  { name: 'key:write', kind: 'key', scope: 'write' },
  { name: 'key:read', kind: 'key', scope: 'read' },
  ...OPERATOR_SCOPES.map((scope) => ({
    name: `operator-token:${scope}`,
    kind: 'operator-token' as const,
    scope,
  })),
  ...ROLES.map((role) => ({ name: role, kind: 'session' as const, role, fresh: true })),
  { name: 'support-agent+grant:read', kind: 'session', role: 'support-agent', fresh: true, grant: 'read' },
  {
    name: 'support-agent+grant:rw',
    kind: 'session',
    role: 'support-agent',
    fresh: true,
    grant: 'read-write',
  },
  { name: 'contractor+grant:rw', kind: 'session', role: 'contractor', fresh: true, grant: 'read-write' },
  {
    name: 'security-officer+grant:read',
    kind: 'session',
    role: 'security-officer',
    fresh: true,
    grant: 'read',
  },
  { name: 'support-agent+grant:dead', kind: 'session', role: 'support-agent', fresh: true, grant: 'dead' },
  { name: 'tenant-admin+grant:dead', kind: 'session', role: 'tenant-admin', fresh: true, grant: 'dead' },
  ...ROLES.map((role) => ({ name: `${role}(stale 2FA)`, kind: 'session' as const, role, fresh: false })),
];

const TENANT = 'ten_matrix_a';
const CUSTOMER_SIDE = new Set<Role>(['tenant-admin', 'tenant-member']);
const KEY_TOKEN = (scope: KeyScope) => `tresor_ak_${'0'.repeat(23)}${scope.length}_${scope}-secret`;
const OPERATOR_TOKEN = (scope: OperatorScope) => `tresor_op_${'d'.repeat(24)}_${scope.replace(':', '-')}`;
const sessionToken = (i: number) => `${String(i).padStart(3, '0')}${'s'.repeat(40)}`;
const LIVE_GRANT = (access: 'read' | 'read-write') => `grt_${access === 'read' ? 'a' : 'b'}${'0'.repeat(23)}`;
const DEAD_GRANT = `grt_${'d'.repeat(24)}`;
const CSRF = 'C'.repeat(43);

function sessionOf(caller: Extract<Caller, { kind: 'session' }>, i: number): SessionPrincipal {
  const customer = CUSTOMER_SIDE.has(caller.role);
  return {
    kind: 'session',
    sessionId: `ses_${i}`,
    personId: `psn_${String(i).padStart(24, '0')}`,
    side: customer ? 'customer' : 'operator',
    role: caller.role,
    tenant: customer ? TENANT : null,
    factors: ['password', 'totp'],
    authenticatedAt: new Date(NOW.getTime() - 3_600_000).toISOString(),
    fresh2faAt: new Date(NOW.getTime() - (caller.fresh ? 60_000 : 3_600_000)).toISOString(),
  };
}

function headersOf(caller: Caller, i: number): Record<string, string> {
  switch (caller.kind) {
    case 'anonymous':
      return {};
    case 'key':
      return { authorization: `Bearer ${KEY_TOKEN(caller.scope)}` };
    case 'operator-token':
      return { authorization: `Bearer ${OPERATOR_TOKEN(caller.scope)}` };
    case 'session': {
      const h: Record<string, string> = {
        cookie: `__Host-tresor_session=${sessionToken(i)}`,
        'x-csrf-token': CSRF,
        origin: TEST_ORIGIN,
      };
      if (caller.grant) h['tresor-grant'] = caller.grant === 'dead' ? DEAD_GRANT : LIVE_GRANT(caller.grant);
      return h;
    }
  }
}

// --- the rules ---------------------------------------------------------------------------------------

/** What a rule admits, from the caller as authorization sees it. */
type Rule =
  | 'public'
  | 'key:admin'
  | 'data:read'
  | 'data:write'
  | 'operator'
  | 'operator+2fa'
  | 'audit-reader'
  | 'audit-all'
  | 'alert-reader'
  | 'alert-handler'
  | 'authenticated'
  | 'people-or-operator'
  | 'grant:request'
  | 'grant:request+2fa'
  | 'grant:approve'
  | 'grant:approve+2fa'
  | 'grant:break-glass+2fa'
  | 'review'
  | 'review:attest+2fa'
  | 'grant-policy:set+2fa'
  | 'session'
  | 'session+2fa'
  | 'manager'
  | 'manager:change+2fa';

/** Every route and its rule. A route missing here fails the first test: write its rule down. */
const RULES: Record<string, Rule> = {
  'GET /healthz': 'public',
  'GET /readyz': 'public',
  'GET /v1/openapi.json': 'public',
  'GET /docs': 'public',
  'GET /v1/audit/public-key': 'public',
  'GET /v1/keys': 'public',
  'GET /trust': 'public',
  'GET /trust.json': 'public',
  // tenants (operator)
  'POST /v1/tenants': 'operator',
  'GET /v1/tenants': 'operator',
  'GET /v1/tenants/:id': 'operator',
  'POST /v1/tenants/:id/close': 'operator+2fa',
  'POST /v1/tenants/:id/close/cancel': 'operator+2fa',
  'GET /v1/tenants/:id/deletion-certificate': 'operator',
  // tenant administration (admin keys)
  'POST /v1/api-keys': 'key:admin',
  'GET /v1/api-keys': 'key:admin',
  'DELETE /v1/api-keys/:id': 'key:admin',
  'PUT /v1/collections/:name': 'key:admin',
  'POST /v1/export': 'key:admin',
  // records: tenant keys and staff through a live grant
  'GET /v1/collections': 'data:read',
  'POST /v1/collections/:name/records': 'data:write',
  'GET /v1/collections/:name/records/:id': 'data:read',
  'PATCH /v1/collections/:name/records/:id': 'data:write',
  'DELETE /v1/collections/:name/records/:id': 'data:write',
  'GET /v1/collections/:name/records': 'data:read',
  'POST /v1/collections/:name/records/search': 'data:read',
  // audit
  'GET /v1/audit/entries': 'audit-reader',
  'GET /v1/audit/stream': 'audit-reader',
  'GET /v1/audit/checkpoint': 'authenticated',
  'GET /v1/audit/proofs/inclusion': 'authenticated',
  'GET /v1/audit/proofs/consistency': 'authenticated',
  'GET /v1/audit/tile/:level/*': 'authenticated',
  'GET /v1/audit/tile/entries/*': 'audit-all',
  // access grants
  'POST /v1/grants': 'grant:request',
  'POST /v1/grants/break-glass': 'grant:break-glass+2fa',
  'GET /v1/grants': 'people-or-operator',
  'GET /v1/grants/:id': 'people-or-operator',
  'POST /v1/grants/:id/approve': 'grant:approve+2fa',
  'POST /v1/grants/:id/deny': 'grant:approve',
  'POST /v1/grants/:id/activate': 'grant:request+2fa',
  'POST /v1/grants/:id/revoke': 'people-or-operator',
  'GET /v1/tenants/:id/grant-policy': 'people-or-operator',
  'PUT /v1/tenants/:id/grant-policy': 'grant-policy:set+2fa',
  'GET /v1/access/review': 'review',
  'GET /v1/access/unreviewed': 'review',
  'POST /v1/access/reviews': 'review:attest+2fa',
  // identity: sign-in and enrolment (public: the credential is in the body)
  'POST /v1/auth/login': 'public',
  'POST /v1/auth/login/second-factor': 'public',
  'POST /v1/auth/login/webauthn/options': 'public',
  'POST /v1/auth/login/webauthn': 'public',
  'POST /v1/auth/recovery-reset': 'public',
  'POST /v1/enrolment/password': 'public',
  'POST /v1/enrolment/totp': 'public',
  'POST /v1/enrolment/totp/confirm': 'public',
  'POST /v1/enrolment/webauthn/options': 'public',
  'POST /v1/enrolment/webauthn': 'public',
  // the sign-in page and its static assets
  'GET /signin': 'public',
  'GET /signin/app.js': 'public',
  'GET /signin/app.css': 'public',
  'GET /signin/webauthn.js': 'public',
  // identity: one's own session and factors
  'GET /v1/auth/session': 'session',
  'POST /v1/auth/logout': 'session',
  'POST /v1/auth/reauthenticate': 'session',
  'POST /v1/auth/password': 'session+2fa',
  'POST /v1/auth/reauthenticate/webauthn/options': 'session',
  'POST /v1/auth/reauthenticate/webauthn': 'session',
  'GET /v1/sessions': 'people-or-operator',
  'DELETE /v1/sessions/:id': 'people-or-operator',
  'POST /v1/sessions/revoke-others': 'session',
  'GET /v1/factors': 'session+2fa',
  'POST /v1/factors/totp': 'session+2fa',
  'POST /v1/factors/totp/confirm': 'session+2fa',
  'POST /v1/factors/webauthn/options': 'session+2fa',
  'POST /v1/factors/webauthn': 'session+2fa',
  'POST /v1/factors/recovery-codes': 'session+2fa',
  'DELETE /v1/factors/:id': 'session+2fa',
  // identity: people (operator admins: staff and tenant admins; tenant admins: their tenant)
  'GET /v1/people': 'manager',
  'GET /v1/people/:id': 'people-or-operator',
  'POST /v1/people': 'manager:change+2fa',
  'PATCH /v1/people/:id': 'manager:change+2fa',
  'POST /v1/people/:id/disable': 'manager:change+2fa',
  'DELETE /v1/people/:id': 'manager:change+2fa',
  'POST /v1/people/:id/password-reset': 'manager:change+2fa',
  'POST /v1/people/:id/unlock': 'manager:change+2fa',
  'POST /v1/people/:id/factors/reset': 'manager:change+2fa',
  'POST /v1/people/:id/sessions/revoke-all': 'manager:change+2fa',
  // the server's background jobs (a health detail for operators)
  'GET /v1/system/jobs': 'operator',
  'GET /v1/system/availability': 'operator',
  // backups (operators: take, list, verify)
  'POST /v1/backups': 'operator',
  'GET /v1/backups': 'operator',
  'GET /v1/backups/:id': 'operator',
  'POST /v1/backups/:id/verify': 'operator',
  // restoring one tenant (operator admins with a fresh second factor; a token may read a restore)
  'POST /v1/tenants/:id/restore': 'operator+2fa',
  'GET /v1/tenants/:id/restores/:restoreId': 'operator',
  // Prometheus metrics (operators; a token of scope metrics:read)
  'GET /metrics': 'operator',
  // alerts (the security role: read with a session or an alerts:read token; handle with a session)
  'GET /v1/alerts': 'alert-reader',
  'GET /v1/alerts/:id': 'alert-reader',
  'POST /v1/alerts/:id/acknowledge': 'alert-handler',
  'POST /v1/alerts/:id/resolve': 'alert-handler',
  // operator tokens: operator admins' sessions only, a fresh second factor to make one
  'POST /v1/operator-tokens': 'operator+2fa',
  'GET /v1/operator-tokens': 'operator',
  'POST /v1/operator-tokens/:id/rotate': 'operator+2fa',
  'DELETE /v1/operator-tokens/:id': 'operator',
};

/**
 * The one scope whose operator token reaches each route (the contract of issue 14, written out
 * here rather than read from the routes); an operator token of any other scope, and every token on
 * a route not listed, is refused.
 */
const TOKEN_SCOPES: Record<string, OperatorScope> = {
  'POST /v1/tenants': 'tenants:create',
  'GET /v1/tenants': 'tenants:read',
  'GET /v1/tenants/:id': 'tenants:read',
  'GET /v1/tenants/:id/deletion-certificate': 'tenants:read',
  'GET /v1/people': 'people:read',
  'GET /v1/people/:id': 'people:read',
  'GET /v1/grants': 'access:read',
  'GET /v1/grants/:id': 'access:read',
  'GET /v1/access/review': 'access:read',
  'GET /v1/access/unreviewed': 'access:read',
  'GET /v1/tenants/:id/grant-policy': 'access:read',
  'GET /v1/audit/entries': 'audit:read',
  'GET /v1/audit/stream': 'audit:read',
  'GET /v1/audit/checkpoint': 'audit:read',
  'GET /v1/audit/proofs/inclusion': 'audit:read',
  'GET /v1/audit/proofs/consistency': 'audit:read',
  'GET /v1/audit/tile/:level/*': 'audit:read',
  'GET /v1/audit/tile/entries/*': 'audit:read',
  'GET /v1/system/jobs': 'jobs:read',
  'GET /v1/system/availability': 'jobs:read',
  'POST /v1/backups': 'backups:run',
  'GET /v1/backups': 'backups:read',
  'GET /v1/backups/:id': 'backups:read',
  'POST /v1/backups/:id/verify': 'backups:run',
  'GET /v1/tenants/:id/restores/:restoreId': 'backups:read',
  'GET /metrics': 'metrics:read',
  'GET /v1/alerts': 'alerts:read',
  'GET /v1/alerts/:id': 'alerts:read',
};

const KEY_SCOPES: Record<KeyScope, ReadonlySet<string>> = {
  admin: new Set(['read', 'write', 'admin']),
  write: new Set(['write']),
  read: new Set(['read']),
};

/** Whether `rule` of `route` admits `caller` (the expected outcome of one cell). */
function admits(rule: Rule, caller: Caller, route: string): boolean {
  if (rule === 'public') return true;
  if (caller.kind === 'anonymous') return false;
  if (caller.kind === 'operator-token') return TOKEN_SCOPES[route] === caller.scope;
  const session = caller.kind === 'session' ? caller : undefined;
  const role = session?.role;
  const liveGrant = session?.grant === 'read' || session?.grant === 'read-write' ? session.grant : undefined;
  const needs2fa = rule.endsWith('+2fa');
  if (needs2fa && !session?.fresh) return false;
  const key = caller.kind === 'key' ? KEY_SCOPES[caller.scope] : undefined;
  switch (rule) {
    case 'key:admin':
      return key?.has('admin') ?? false;
    case 'data:read':
      return (
        (key ? key.has('read') || key.has('admin') : false) ||
        (liveGrant !== undefined && !CUSTOMER_SIDE.has(role as Role))
      );
    case 'data:write':
      return (key ? key.has('write') || key.has('admin') : false) || liveGrant === 'read-write';
    case 'operator':
    case 'operator+2fa':
      return role === 'operator-admin';
    case 'audit-reader':
      return (key?.has('admin') ?? false) || role === 'security-officer' || role === 'tenant-admin';
    case 'audit-all':
      return role === 'security-officer';
    case 'alert-reader':
    case 'alert-handler':
      return role === 'security-officer';
    case 'authenticated':
      return true;
    case 'people-or-operator':
      return session !== undefined;
    case 'grant:request':
    case 'grant:request+2fa':
      return role === 'support-agent' || role === 'contractor' || role === 'security-officer';
    case 'grant:approve':
    case 'grant:approve+2fa':
      return role === 'support-agent' || role === 'security-officer' || role === 'tenant-admin';
    case 'grant:break-glass+2fa':
      return role === 'security-officer';
    case 'review':
      return role === 'security-officer' || role === 'operator-admin' || role === 'tenant-admin';
    case 'review:attest+2fa':
      return role === 'security-officer';
    case 'grant-policy:set+2fa':
      return role === 'operator-admin' || role === 'tenant-admin';
    case 'session':
    case 'session+2fa':
      return session !== undefined;
    case 'manager':
    case 'manager:change+2fa':
      return role === 'operator-admin' || role === 'tenant-admin';
  }
}

// --- the harness -----------------------------------------------------------------------------------

async function matrixApp() {
  const byToken = new Map<string, Principal>();
  for (const scope of ['admin', 'write', 'read'] as const) {
    byToken.set(KEY_TOKEN(scope), {
      kind: 'api-key',
      tenant: TENANT,
      keyId: `ak_${'0'.repeat(23)}${scope.length}`,
      collections: '*',
      access: KEY_SCOPES[scope] as ReadonlySet<'read' | 'write' | 'admin'>,
    });
  }
  for (const scope of OPERATOR_SCOPES) {
    byToken.set(OPERATOR_TOKEN(scope), {
      kind: 'operator-token',
      tokenId: `op_${'d'.repeat(24)}`,
      personId: 'psn_operator_admin',
      scope,
    });
  }
  const sessions = new Map<string, SessionPrincipal>();
  const grantHolders = new Map<string, string>(); // person id → their live grant's access
  CALLERS.forEach((caller, i) => {
    if (caller.kind !== 'session') return;
    const s = sessionOf(caller, i);
    sessions.set(sessionToken(i), s);
    if (caller.grant === 'read' || caller.grant === 'read-write') grantHolders.set(s.personId, caller.grant);
  });
  const h = await buildTestApp({
    routes: () =>
      allRouteModules({
        vault: specOnlyDependencies(),
        tenants: specOnlyDependencies(),
        audit: specOnlyDependencies(),
        keys: specOnlyDependencies(),
        access: specOnlyDependencies(),
        identity: {
          sessions: specOnlyDependencies(),
          login: specOnlyDependencies(),
          people: specOnlyDependencies(),
          webauthn: specOnlyDependencies(),
        },
        jobs: specOnlyDependencies(),
        operatorTokens: specOnlyDependencies(),
        backups: specOnlyDependencies(),
        tenantRestores: specOnlyDependencies(),
        metrics: specOnlyDependencies(),
        alerts: specOnlyDependencies(),
        availability: specOnlyDependencies(),
        trust: specOnlyDependencies(),
      }),
    authenticate: async (token) => {
      const p = byToken.get(token);
      if (!p) throw new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'unknown');
      return p;
    },
    sessions: {
      async authenticate(token) {
        const s = sessions.get(token);
        if (!s) throw new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'unknown');
        return s;
      },
      async verifyCsrf(_p, csrf) {
        if (csrf !== CSRF) throw new TresorError('TRESOR_ERR_CSRF', 'csrf');
      },
    },
    grants: async (personId, grantId) => {
      const access = grantHolders.get(personId);
      if (!access || grantId !== LIVE_GRANT(access as 'read' | 'read-write')) return undefined;
      return {
        id: grantId,
        tenant: TENANT,
        personId,
        collections: '*',
        access: access as 'read' | 'read-write',
        reason: 'matrix test: customer ticket',
        ticket: 'T-1',
        expiresAt: new Date(NOW.getTime() + 600_000).toISOString(),
        breakGlass: false,
      };
    },
  });
  return h;
}

function concreteUrl(url: string): string {
  return url.replace(/:([A-Za-z0-9]+)/g, (_m, name: string) =>
    name === 'id' ? 'ten_matrix_a' : name === 'name' ? 'people' : 'x1',
  );
}

describe('route × role matrix', () => {
  it('has a rule for every registered route, and a route for every rule', async () => {
    const h = await matrixApp();
    const keys = registeredRoutes(h.app).map((r) => `${r.method} ${r.url}`);
    assert.deepEqual([...keys].sort(), Object.keys(RULES).sort(), 'RULES and the route table differ');
    for (const [key, rule] of Object.entries(RULES)) {
      assert.equal(rule === 'public', PUBLIC_ROUTES.has(key), `${key}: public exactly when on PUBLIC_ROUTES`);
    }
  });

  it('admits exactly the callers each route’s rule names, and refuses every other before reading anything', async () => {
    const h = await matrixApp();
    const app = h.app;
    // The harness records the layers of every request in order; a request reached the validation
    // layer iff authorization let it through.
    const routes = registeredRoutes(app);
    let cells = 0;
    const wrong: string[] = [];
    for (const route of routes) {
      const key = `${route.method} ${route.url}`;
      const rule = RULES[key] as Rule;
      for (const [i, caller] of CALLERS.entries()) {
        h.layers.length = 0;
        const hasBody = route.method === 'POST' || route.method === 'PUT' || route.method === 'PATCH';
        const res = await app.inject({
          method: route.method,
          url: concreteUrl(route.url),
          headers: { ...headersOf(caller, i), ...(hasBody ? { 'content-type': 'application/json' } : {}) },
          ...(hasBody ? { payload: '{}' } : {}),
        });
        const passed = h.layers.includes('validation') || (rule === 'public' && res.statusCode < 400);
        const expected = admits(rule, caller, key);
        cells += 1;
        if (passed !== expected) {
          wrong.push(
            `${key} × ${caller.name}: expected ${expected ? 'admitted' : 'refused'}, got ${res.statusCode}`,
          );
          continue;
        }
        if (!expected) {
          const refusedAs = caller.kind === 'anonymous' ? [401] : [401, 403];
          if (!refusedAs.includes(res.statusCode))
            wrong.push(`${key} × ${caller.name}: refused with ${res.statusCode}, not 401/403`);
          if (
            caller.kind === 'session' &&
            !caller.fresh &&
            admits(rule, { ...caller, fresh: true }, key) &&
            res.statusCode !== 401
          ) {
            wrong.push(
              `${key} × ${caller.name}: a stale second factor must be asked again (401), got ${res.statusCode}`,
            );
          }
        }
      }
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${cells} cells wrong`);
    assert.ok(cells >= routes.length * CALLERS.length);
  });

  it('refuses a staff request whose grant has ended at the very next request, and never lets a grant reach another role’s routes', async () => {
    const h = await matrixApp();
    const i = CALLERS.findIndex((c) => c.name === 'support-agent+grant:rw');
    const caller = CALLERS[i] as Caller;
    const url = '/v1/collections/people/records/x1';
    h.layers.length = 0;
    await h.app.inject({ method: 'GET', url, headers: headersOf(caller, i) });
    assert.ok(h.layers.includes('validation'), 'live grant admitted');
    // Same session, the grant id of another (nobody's) grant: refused.
    h.layers.length = 0;
    const res = await h.app.inject({
      method: 'GET',
      url,
      headers: { ...headersOf(caller, i), 'tresor-grant': DEAD_GRANT },
    });
    assert.equal(res.statusCode, 403);
    assert.ok(!h.layers.includes('validation'));
    // A malformed grant header is refused the same way, never a 5xx.
    for (const bad of ['grt_', 'x'.repeat(300), `${LIVE_GRANT('read-write')} `, '../../etc']) {
      const r = await h.app.inject({
        method: 'GET',
        url,
        headers: { ...headersOf(caller, i), 'tresor-grant': bad },
      });
      assert.equal(r.statusCode, 403, bad);
    }
  });
});
