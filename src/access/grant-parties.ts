/** Who may approve a grant, and who may see one. */

import type { ResolvedActor } from '../identity/identity-actor.ts';
import { canApproveGrants, isEmployee, sideOf } from '../identity/roles.ts';
import type { GrantState, GrantsTable } from './access-store-schema.ts';
import { type ApprovalSide, awaitingOf, requiredApprovals } from './grant-state.ts';

/** The approval sides of `row` that `by` qualifies for (not counting what is given already). */
export function sidesOf(by: ResolvedActor, row: GrantsTable): ApprovalSide[] {
  if (by.personId === null || !canApproveGrants(by.role)) return [];
  return requiredApprovals(row.policy, row.requester_role).filter((side) =>
    side === 'customer'
      ? by.role === 'tenant-admin' && by.tenant !== null && by.tenant === row.tenant
      : sideOf(by.role) === 'operator' && isEmployee(by.role),
  );
}

/** Whether `by` may see `row`, whose state is `state` as of now. */
export function mayView(by: ResolvedActor, row: GrantsTable, state: GrantState): boolean {
  if (by.role === 'security-officer' || by.role === 'operator-admin') return true;
  if (by.personId !== null && by.personId === row.requester) return true;
  if (by.role === 'tenant-admin') return by.tenant === row.tenant;
  // An employee who may approve sees the requests that wait for an employee.
  return state === 'pending' && awaitingOf(row).includes('employee') && sidesOf(by, row).length > 0;
}
