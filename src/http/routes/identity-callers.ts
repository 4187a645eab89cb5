/**
 * Who may call the console identity routes, and as whom they act on identity.
 *
 * People management admits operator automation tokens (to make the first accounts) and sessions
 * of people who manage accounts (roles.mayManageAccount), never API keys; a session must have
 * passed a second factor within STEP_UP_MAX_AGE_MS to change an account — checked in `authorize`,
 * since a route has one `secondFactor` setting and operator tokens (which never pass one) must
 * reach these routes too.
 */
import { TresorError } from '../../errors.ts';
import type { AuditMeta, IdentityActor } from '../../identity/identity-actor.ts';
import { canManageStaff, canManageTenantPeople } from '../../identity/roles.ts';
import { secondFactorVerdict } from '../layers/second-factor.ts';
import type { HttpPrincipal } from '../route.ts';
import { type IdentityRequest, metaOf } from './identity-request.ts';

function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'these credentials cannot be used for this operation');
}

/** Who acts on identity: a console session or an operator token. Other callers never get here. */
export function actorOf(principal: HttpPrincipal): IdentityActor {
  if (principal.kind === 'session') return principal;
  if (principal.kind === 'operator-admin') return { kind: 'operator-admin', id: principal.id };
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

/** Operator tokens and any session (own things; the service checks a target person). */
export function sessionOrOperator(principal: HttpPrincipal): void {
  if (principal.kind !== 'session' && principal.kind !== 'operator-admin') throw forbidden();
}

/** Operator tokens and sessions of people who manage accounts; never API keys or grants. */
export function accountManager(principal: HttpPrincipal): void {
  if (principal.kind === 'operator-admin') return;
  if (
    principal.kind === 'session' &&
    (canManageStaff(principal.role) || canManageTenantPeople(principal.role))
  ) {
    return;
  }
  throw forbidden();
}

/** accountManager, and a session must have passed a second factor recently (step-up). */
export function accountChanger(now: () => Date): (principal: HttpPrincipal) => void {
  return (principal) => {
    accountManager(principal);
    if (principal.kind === 'session' && secondFactorVerdict(principal, now()) !== 'satisfied') {
      throw new TresorError('TRESOR_ERR_SECOND_FACTOR_REQUIRED', 'pass a second factor again, then retry');
    }
  };
}

/** The declaration every change of an account shares: its callers are accountChanger's. */
export function accountChangeRoute(
  now: () => Date,
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
    auth: 'any-authenticated' as const,
    secondFactor: false,
    authorize: accountChanger(now),
    audit: { action },
  };
}
