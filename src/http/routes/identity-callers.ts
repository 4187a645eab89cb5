/**
 * Who may call the console identity routes, and as whom they act on identity.
 *
 * Changing people — creating, changing, disabling, removing accounts, resetting their factors —
 * is for console sessions of people who manage accounts (roles.mayManageAccount) that passed a
 * second factor moments ago: the routes declare `secondFactor: true`, so the pipeline refuses an
 * operator token or API key (403) and a stale session (401 with the step-up challenge) before this
 * runs. Reading people is for those sessions and operator tokens of scope people:read.
 */
import { TresorError } from '../../errors.ts';
import type { AuditMeta, IdentityActor } from '../../identity/identity-actor.ts';
import { canManageStaff, canManageTenantPeople } from '../../identity/roles.ts';
import type { HttpPrincipal } from '../route.ts';
import { type IdentityRequest, metaOf } from './identity-request.ts';

function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'these credentials cannot be used for this operation');
}

/** Who acts on identity: a console session, or an operator token for its owner. Other callers never get here. */
export function actorOf(principal: HttpPrincipal): IdentityActor {
  if (principal.kind === 'session') return principal;
  if (principal.kind === 'operator-token')
    return { kind: 'operator-admin', id: principal.personId, tokenId: principal.tokenId };
  throw forbidden();
}

/**
 * What a change of the account in the path (`:id`) is called with: who changes it, which account,
 * and the request's audit meta — `people.disable(...accountChange(ctx))`.
 */
export function accountChange(
  ctx: IdentityRequest & { principal: HttpPrincipal; params: { id: string } },
): [actor: IdentityActor, personId: string, meta: AuditMeta] {
  return [actorOf(ctx.principal), ctx.params.id, metaOf(ctx)];
}

/** Any console session: the route's `auth: 'session'` has already admitted it. */
export const anySession = () => {};

/** Operator tokens (of the route's scope) and any session (own things; the service checks a target person). */
export function sessionOrOperator(principal: HttpPrincipal): void {
  if (principal.kind !== 'session' && principal.kind !== 'operator-token') throw forbidden();
}

/** Operator tokens (of the route's scope) and sessions of people who manage accounts; never API keys or grants. */
export function accountManager(principal: HttpPrincipal): void {
  if (principal.kind === 'operator-token') return;
  if (
    principal.kind === 'session' &&
    (canManageStaff(principal.role) || canManageTenantPeople(principal.role))
  ) {
    return;
  }
  throw forbidden();
}

/** The declaration every change of an account shares: a manager's session with a fresh second factor. */
export function accountChangeRoute(
  method: 'POST' | 'DELETE' | 'PATCH',
  url: string,
  summary: string,
  action: string,
) {
  return {
    method,
    url,
    summary,
    tags: ['people'] as const,
    auth: 'session' as const,
    secondFactor: true,
    authorize: accountManager,
    audit: { action },
  };
}
