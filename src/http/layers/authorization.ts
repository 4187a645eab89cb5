/**
 * Layer 5: authorization. First the kind of caller the route admits (`auth`): an operator token
 * on a tenant-records route is refused here whatever else it could prove (Invariant 7: operator
 * logins and automation tokens never read tenant records). Then the route's own `authorize`, which
 * sees the principal and the raw path and query parameters (validation comes next: authorization
 * must not trust their shape) and throws FORBIDDEN — or NOT_FOUND, where admitting that something
 * exists would already say too much.
 *
 * It runs before the body is read, so an unauthorized caller cannot make the server parse anything.
 * Every refusal from here on is audited as `denied` (audit.ts).
 */
import type { FastifyRequest } from 'fastify';
import { TresorError } from '../../errors.ts';
import type { AuthMode, AuthorizationInput, HttpMethod, HttpPrincipal } from '../route.ts';

const ADMITS: Record<Exclude<AuthMode, 'none'>, ReadonlySet<HttpPrincipal['kind']>> = {
  'api-key': new Set(['api-key']),
  operator: new Set(['operator-admin']),
  'any-authenticated': new Set(['api-key', 'operator-admin']),
};

export function authorization() {
  return async function authorizationLayer(request: FastifyRequest): Promise<void> {
    const { route, principal } = request.tresor;
    if (!route || route.auth === 'none' || route.authorize === 'public') return;
    if (!principal) throw new TresorError('TRESOR_ERR_INTERNAL', 'authorization reached without a principal');
    if (!ADMITS[route.auth].has(principal.kind)) {
      throw new TresorError('TRESOR_ERR_FORBIDDEN', 'these credentials cannot be used for this operation');
    }
    const input: AuthorizationInput = {
      method: route.method as HttpMethod,
      route: route.url,
      params: { ...(request.params as Record<string, string>) },
      query: { ...(request.query as Record<string, unknown>) },
    };
    await route.authorize(principal, input);
  };
}
