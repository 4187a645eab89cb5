/**
 * Layer 5: authorization and grants. First, on a `tenant-data` route, a staff session that names
 * an access grant in `Tresor-Grant` becomes that grant (src/access): the principal is then the
 * grant as it stands now — its tenant, collections and read or read-write — never the person's own
 * standing, which reaches no record (Invariant 7). A grant that is not live (unknown, another
 * person's, pending, expired, revoked) is refused here, at the very next request after it ended;
 * when the named grant exists, the refusal is recorded with its tenant and why (audit.ts), so the
 * customer sees attempts on its data, not only successes.
 *
 * Then the kind of caller the route admits (`auth`, and for an operator token the route's `scope`):
 * an operator token on a route not of its scope — a tenant-records route above all — is refused
 * whatever else it could prove. Then the route's own `authorize`, which sees the principal
 * and the raw path and query parameters (validation comes next: authorization must not trust their
 * shape) and throws FORBIDDEN — or NOT_FOUND, where admitting that something exists would already
 * say too much.
 *
 * It runs before the body is read, so an unauthorized caller cannot make the server parse anything.
 * Every refusal from here on is audited as `denied` (audit.ts), with the person as actor.
 */
import type { FastifyRequest } from 'fastify';
import { TresorError } from '../../errors.ts';
import type { OperatorScope } from '../../identity/operator-scopes.ts';
import type { GrantResolver, RefusedGrantResolver } from '../deps.ts';
import type { AuthMode, AuthorizationInput, HttpMethod, HttpPrincipal } from '../route.ts';

export const GRANT_HEADER = 'tresor-grant';
const GRANT_ID = /^grt_[0-9a-f]{24}$/;

/**
 * Whether a route of this auth mode and token scope admits this principal at all (before its own
 * authorize). An operator token reaches only routes that name its scope, whatever the mode.
 */
export function admits(
  mode: Exclude<AuthMode, 'none'>,
  principal: HttpPrincipal,
  scope?: OperatorScope,
): boolean {
  if (principal.kind === 'operator-token') {
    return (mode === 'operator' || mode === 'any-authenticated') && scope === principal.scope;
  }
  switch (mode) {
    case 'api-key':
      return principal.kind === 'api-key';
    case 'tenant-data':
      return principal.kind === 'api-key' || principal.kind === 'staff-grant';
    case 'operator':
      return principal.kind === 'session' && principal.role === 'operator-admin';
    case 'session':
      return principal.kind === 'session';
    case 'any-authenticated':
      return true;
  }
}

function noLiveGrant(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'no live access grant for this request');
}

export function authorization(grants?: GrantResolver, refusedGrants?: RefusedGrantResolver) {
  return async function authorizationLayer(request: FastifyRequest): Promise<void> {
    const state = request.tresor;
    const { route } = state;
    if (!route || route.auth === 'none' || route.authorize === 'public') return;
    const principal = state.principal;
    if (!principal) throw new TresorError('TRESOR_ERR_INTERNAL', 'authorization reached without a principal');

    const named = request.headers[GRANT_HEADER];
    if (route.auth === 'tenant-data' && principal.kind === 'session' && named !== undefined) {
      if (principal.side !== 'operator' || typeof named !== 'string' || !GRANT_ID.test(named) || !grants) {
        throw noLiveGrant();
      }
      const grant = await grants(principal.personId, named);
      if (!grant || grant.personId !== principal.personId) {
        // The attempt aimed at the grant's tenant: its audit entry goes there, so the customer sees it.
        const refused = refusedGrants ? await refusedGrants(principal.personId, named) : undefined;
        if (refused) state.refusedGrant = refused;
        throw noLiveGrant();
      }
      state.principal = {
        kind: 'staff-grant',
        tenant: grant.tenant,
        grantId: grant.id,
        reason: grant.reason,
        ticket: grant.ticket,
        breakGlass: grant.breakGlass,
        collections: grant.collections,
        access: new Set(grant.access === 'read-write' ? ['read', 'write'] : ['read']),
        session: principal,
      };
    }

    const current = state.principal as HttpPrincipal;
    if (!admits(route.auth, current, route.scope)) {
      throw new TresorError('TRESOR_ERR_FORBIDDEN', 'these credentials cannot be used for this operation');
    }
    const input: AuthorizationInput = {
      method: route.method as HttpMethod,
      route: route.url,
      params: { ...(request.params as Record<string, string>) },
      query: { ...(request.query as Record<string, unknown>) },
    };
    await route.authorize(current, input);
  };
}
