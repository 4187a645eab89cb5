/**
 * Reading grants: one, a filtered list (each caller sees only what they may), and the live grant
 * the request pipeline checks on every staff request.
 */

import { auditActorOf, type IdentityActor, resolveActorIn } from '../identity/identity-actor.ts';
import { canRequestGrants, type Role } from '../identity/roles.ts';
import { forbidden, invalid, notFound } from './access-errors.ts';
import { GRANT_STATES, type GrantState, type GrantsTable } from './access-store-schema.ts';
import { actorTenantOf, refusalsOf } from './audited-write.ts';
import { type GrantContext, grantIn } from './grant-context.ts';
import { mayView } from './grant-parties.ts';
import type { GrantInfo, LiveGrant } from './grant-state.ts';
import { GRANT_ID_PATTERN, PERSON_ID_PATTERN, safeId } from './grant-vocabulary.ts';

/** Grants returned by one list call at most (newest first). */
const LIST_LIMIT = 1000;

export interface GrantFilter {
  tenant?: string;
  person?: string;
  state?: GrantState;
}

export interface GrantQueries {
  get(actor: IdentityActor, grantId: string): Promise<GrantInfo>;
  list(actor: IdentityActor, filter?: GrantFilter): Promise<GrantInfo[]>;
  /** undefined unless the grant exists, is the person's, is active and unexpired, and the person still holds a requesting role. Never throws for a bad id. */
  liveGrant(personId: string, grantId: string): Promise<LiveGrant | undefined>;
  /**
   * The grant a staff request named and why it is not live, when it exists: the refused attempt is
   * then recorded with the tenant it aimed at, so that tenant sees it. undefined for an unknown id
   * (no tenant was aimed at) and for a live grant. Never throws for a bad id.
   */
  refusedGrant(personId: string, grantId: string): Promise<RefusedGrant | undefined>;
}

/**
 * Why a named grant does not admit its bearer: its state (pending, approved but not yet activated,
 * denied, expired, revoked), `not-yours` (another person's grant), `person-inactive` (disabled or
 * removed), `role-changed` (no longer the role it was requested with, or one that may not hold
 * grants), `tenant-not-active` (closing or closed).
 */
export type GrantRefusalReason =
  | Exclude<GrantState, 'active'>
  | 'not-yours'
  | 'person-inactive'
  | 'role-changed'
  | 'tenant-not-active';

export interface RefusedGrant {
  tenant: string;
  /** The grant as the customer sees it on its audit stream; its reason and ticket only for the bearer's own. */
  grant: { id: string; reason?: string; ticket?: string; breakGlass?: boolean };
  why: GrantRefusalReason;
}

type NamedGrantRow = GrantsTable & {
  person_role: Role;
  disabled_at: string | null;
  removed_at: string | null;
  tenant_state: string;
};

/** Why `row` does not admit `personId` now, or null when it is live for them. */
function refusalOf(row: NamedGrantRow, personId: string, state: GrantState): GrantRefusalReason | null {
  if (row.requester !== personId) return 'not-yours';
  if (row.disabled_at !== null || row.removed_at !== null) return 'person-inactive';
  if (row.person_role !== row.requester_role || !canRequestGrants(row.person_role)) return 'role-changed';
  if (row.tenant_state !== 'active') return 'tenant-not-active';
  if (state !== 'active' || row.expires_at === null) return state === 'active' ? 'expired' : state;
  return null;
}

export function grantQueries(ctx: GrantContext): GrantQueries {
  const { control, now } = ctx;

  async function namedGrant(personId: string, grantId: string): Promise<NamedGrantRow | undefined> {
    if (typeof personId !== 'string' || typeof grantId !== 'string' || !GRANT_ID_PATTERN.test(grantId))
      return undefined;
    return control.db
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
  }

  /** The grant's state now; an active grant past its expiry (or without one) reads as expired. */
  function liveState(row: NamedGrantRow): GrantState {
    const t = now().getTime();
    const state = ctx.stateAt(row, t);
    if (state === 'active' && (row.expires_at === null || !(t < Date.parse(row.expires_at))))
      return 'expired';
    return state;
  }

  return {
    async get(actor, grantId) {
      return ctx.run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const row = await grantIn(trx, grantId);
        const t = now().getTime();
        if (!by || !row || !mayView(by, row, ctx.stateAt(row, t))) {
          // One answer for "no such grant" and "not yours to see".
          const refuse = refusalsOf(
            trx,
            now,
            {
              actor: by?.audit ?? auditActorOf(actor),
              actorTenant: actorTenantOf(by, actor),
              tenant: row?.tenant ?? null,
              action: 'grant.read',
            },
            undefined,
          );
          return refuse(row ? 'not-allowed' : 'unknown-grant', notFound('grant'), {
            grantId: safeId(grantId),
          });
        }
        return ctx.toInfo(row, t);
      });
    },

    async list(actor, filter = {}) {
      return ctx.run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const refuse = refusalsOf(
          trx,
          now,
          { actor: by?.audit ?? auditActorOf(actor), tenant: null, action: 'grant.list' },
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
          .filter((row) => mayView(by, row, ctx.stateAt(row, t)))
          .map((row) => ctx.toInfo(row, t))
          .filter((g) => f.state === undefined || g.state === f.state);
      });
    },

    async liveGrant(personId, grantId) {
      const row = await namedGrant(personId, grantId);
      if (!row || refusalOf(row, personId, liveState(row)) !== null) return undefined;
      return {
        id: row.id,
        tenant: row.tenant,
        personId: row.requester,
        collections: Object.freeze(JSON.parse(row.collections)) as '*' | readonly string[],
        access: row.access,
        reason: row.reason,
        ticket: row.ticket,
        expiresAt: row.expires_at as string,
        breakGlass: row.break_glass === 1,
      };
    },

    async refusedGrant(personId, grantId) {
      const row = await namedGrant(personId, grantId);
      if (!row) return undefined;
      const why = refusalOf(row, personId, liveState(row));
      if (why === null) return undefined;
      const breakGlass = row.break_glass === 1 ? { breakGlass: true } : {};
      const grant =
        why === 'not-yours'
          ? { id: row.id }
          : { id: row.id, reason: row.reason, ticket: row.ticket, ...breakGlass };
      return { tenant: row.tenant, grant, why };
    },
  };
}
