/**
 * Reading grants: one, a filtered list (each caller sees only what they may), and the live grant
 * the request pipeline checks on every staff request.
 */

import { auditActorOf, type IdentityActor, resolveActorIn } from '../identity/identity-actor.ts';
import { canRequestGrants } from '../identity/roles.ts';
import { forbidden, invalid, notFound } from './access-errors.ts';
import { GRANT_STATES, type GrantState } from './access-store-schema.ts';
import { refusalsOf } from './audited-write.ts';
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
}

export function grantQueries(ctx: GrantContext): GrantQueries {
  const { control, now } = ctx;
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
            { actor: by?.audit ?? auditActorOf(actor), tenant: row?.tenant ?? null, action: 'grant.read' },
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
      if (typeof personId !== 'string' || typeof grantId !== 'string' || !GRANT_ID_PATTERN.test(grantId))
        return undefined;
      const row = await control.db
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
      if (
        !row ||
        row.requester !== personId ||
        row.state !== 'active' ||
        row.expires_at === null ||
        !(now().getTime() < Date.parse(row.expires_at)) ||
        row.disabled_at !== null ||
        row.removed_at !== null ||
        row.person_role !== row.requester_role ||
        !canRequestGrants(row.person_role) ||
        row.tenant_state !== 'active'
      )
        return undefined;
      return {
        id: row.id,
        tenant: row.tenant,
        personId: row.requester,
        collections: Object.freeze(JSON.parse(row.collections)) as '*' | readonly string[],
        access: row.access,
        reason: row.reason,
        ticket: row.ticket,
        expiresAt: row.expires_at,
        breakGlass: row.break_glass === 1,
      };
    },
  };
}
