/**
 * The roles of console accounts and what each may do at domain level.
 *
 * Operator side (the company running Tresor): operator admin, security officer, support agent,
 * contractor. Customer side (one tenant each): tenant admin, tenant member. API keys and the
 * system's own jobs are principals of their own (principal.ts), not roles.
 *
 * No role has standing access to tenant records (docs/architecture.md, invariant 7): staff reach records only
 * through a live, time-boxed grant (src/access/), which this file does not hand out. Contractors are
 * not employees: their grants need an employee's approval.
 */
import type { ActorKind } from '../audit/event.ts';

export type Side = 'operator' | 'customer';
export const SIDES: readonly Side[] = ['operator', 'customer'];

export type OperatorRole = 'operator-admin' | 'security-officer' | 'support-agent' | 'contractor';
export type CustomerRole = 'tenant-admin' | 'tenant-member';
export type Role = OperatorRole | CustomerRole;

export const OPERATOR_ROLES: readonly OperatorRole[] = [
  'operator-admin',
  'security-officer',
  'support-agent',
  'contractor',
];
export const CUSTOMER_ROLES: readonly CustomerRole[] = ['tenant-admin', 'tenant-member'];
export const ALL_ROLES: readonly Role[] = [...OPERATOR_ROLES, ...CUSTOMER_ROLES];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ALL_ROLES as readonly string[]).includes(value);
}

export function sideOf(role: Role): Side {
  return (OPERATOR_ROLES as readonly string[]).includes(role) ? 'operator' : 'customer';
}

/** Creates and closes tenants; manages operator-side accounts. Never reads records. */
export function canManageTenants(role: Role): boolean {
  return role === 'operator-admin';
}

/** Creates, changes and removes operator-side accounts. */
export function canManageStaff(role: Role): boolean {
  return role === 'operator-admin';
}

/** Manages the accounts of their own tenant (and no other). */
export function canManageTenantPeople(role: Role): boolean {
  return role === 'tenant-admin';
}

/** An employee of the operator: a contractor is not, and needs an employee to approve a grant. */
export function isEmployee(role: Role): boolean {
  return role === 'operator-admin' || role === 'security-officer' || role === 'support-agent';
}

/** May ask for a time-boxed grant to one tenant's records (support work). */
export function canRequestGrants(role: Role): boolean {
  return role === 'support-agent' || role === 'contractor' || role === 'security-officer';
}

/**
 * May approve another person's grant request: employees who do support or security work approve
 * staff requests (a contractor's needs one); a tenant admin approves for their tenant (lockbox).
 * Nobody approves their own request (checked where grants are decided).
 */
export function canApproveGrants(role: Role): boolean {
  return role === 'support-agent' || role === 'security-officer' || role === 'tenant-admin';
}

/** Emergency access without the customer's approval, audited and alerted: the security officer only. */
export function canBreakGlass(role: Role): boolean {
  return role === 'security-officer';
}

/** Reads the whole audit log (tenant admins read their own tenant's part). */
export function canReadAllAudit(role: Role): boolean {
  return role === 'security-officer';
}

/** Standing access to tenant records: no role has it, by design. */
export function hasStandingRecordAccess(_role: Role): false {
  return false;
}

/** The audit actor kind of an account of this role. */
export function auditActorKind(role: Role): ActorKind {
  if (role === 'operator-admin') return 'operator-admin';
  return sideOf(role) === 'operator' ? 'staff' : 'customer';
}

/** Who manages an account, as far as roles go (the caller has checked the manager is still active). */
export interface AccountManager {
  role: Role;
  tenant: string | null;
}

/**
 * Whether `manager` may create, change, disable, remove, reset or unlock an account like `target`:
 * an operator admin manages operator-side accounts and the tenant admins of any tenant (to hand a
 * new tenant its first admin); a tenant admin manages the accounts of their own tenant only.
 */
export function mayManageAccount(
  manager: AccountManager,
  target: { side: Side; role: Role; tenant: string | null },
): boolean {
  if (sideOf(target.role) !== target.side) return false;
  if (canManageStaff(manager.role)) return target.side === 'operator' || target.role === 'tenant-admin';
  if (canManageTenantPeople(manager.role)) {
    return target.side === 'customer' && manager.tenant !== null && target.tenant === manager.tenant;
  }
  return false;
}
