/**
 * Staff access grants: the only way staff reach a tenant's records (docs/architecture.md, invariant 7).
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
 * and only then is the error thrown, marked as audited so the request pipeline does not record the
 * same refusal again (audited-write.ts). Actors are re-read inside the transaction (resolveActorIn), and
 * the second-factor time is read from the live session row, not taken from the caller.
 */
import { type GrantServiceOptions, grantContextOf } from './grant-context.ts';
import { type GrantDecisions, grantDecisions } from './grant-decisions.ts';
import { type GrantExpiry, grantExpiry } from './grant-expiry.ts';
import { type GrantPolicies, grantPolicies } from './grant-policy.ts';
import { type GrantQueries, grantQueries } from './grant-queries.ts';
import { type GrantRequests, grantRequests } from './grant-requests.ts';

/** The grant service as the server wires it: its parts, over one store, clock and configuration. */
export interface GrantService
  extends GrantRequests,
    GrantDecisions,
    GrantQueries,
    GrantExpiry,
    GrantPolicies {}

export function createGrantService(options: GrantServiceOptions): GrantService {
  const ctx = grantContextOf(options);
  return {
    ...grantRequests(ctx),
    ...grantDecisions(ctx),
    ...grantQueries(ctx),
    ...grantExpiry(ctx),
    ...grantPolicies(ctx),
  };
}
