/**
 * Each tenant's approval policy: who must approve staff grants to it. The tenant's own admin
 * chooses; an operator admin may only restore the lockbox. A tenant without a row of its own has
 * the configured default.
 */
import type { Transaction } from 'kysely';
import type { TresorError } from '../errors.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  resolveActorIn,
} from '../identity/identity-actor.ts';
import { forbidden, invalid, notFound } from './access-errors.ts';
import { type AccessDB, APPROVAL_POLICIES, type ApprovalPolicy } from './access-store-schema.ts';
import { actorTenantOf, auditIn, refusalsOf } from './audited-write.ts';
import { type GrantContext, tenantIn } from './grant-context.ts';

export interface GrantPolicies {
  setPolicy(actor: IdentityActor, tenant: string, policy: ApprovalPolicy, meta?: AuditMeta): Promise<void>;
  getPolicy(tenant: string): Promise<ApprovalPolicy>;
}

/** The tenant's policy as `trx` sees it, or `fallback` when it has none. */
export async function policyIn(
  trx: Transaction<AccessDB>,
  tenant: string,
  fallback: ApprovalPolicy,
): Promise<ApprovalPolicy> {
  const row = await trx
    .selectFrom('grant_policies')
    .select('policy')
    .where('tenant', '=', tenant)
    .executeTakeFirst();
  return row?.policy ?? fallback;
}

export function grantPolicies(ctx: GrantContext): GrantPolicies {
  const { control, now, config } = ctx;
  return {
    async setPolicy(actor, tenantId, policy, meta) {
      await ctx.run(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const tenant = await tenantIn(trx, tenantId);
        const refused = refusalsOf(
          trx,
          now,
          {
            actor: by?.audit ?? auditActorOf(actor),
            actorTenant: actorTenantOf(by, actor),
            tenant: tenant?.id ?? null,
            action: 'grant.policy',
          },
          meta,
        );
        const refuse = (why: string, error: TresorError) =>
          refused(why, error, { policy: APPROVAL_POLICIES.includes(policy) ? policy : '(invalid)' });
        if (!APPROVAL_POLICIES.includes(policy))
          return refuse('invalid', invalid('policy', `one of ${APPROVAL_POLICIES.join(', ')}`));
        // The tenant's own admin chooses; an operator admin may only restore the lockbox, never
        // loosen a customer's choice behind their back.
        const own = by?.role === 'tenant-admin' && tenant !== undefined && by.tenant === tenant.id;
        const tighten = by?.role === 'operator-admin' && policy === 'customer';
        if (!by || !(own || tighten)) return refuse('not-allowed', forbidden());
        if (!tenant) return refuse('unknown-tenant', notFound('tenant'));
        const from = await policyIn(trx, tenant.id, config.defaultPolicy);
        const at = now().toISOString();
        const updatedBy = `${by.audit.kind}:${by.audit.id}`;
        await trx
          .insertInto('grant_policies')
          .values({ tenant: tenant.id, policy, updated_at: at, updated_by: updatedBy })
          .onConflict((oc) =>
            oc.column('tenant').doUpdateSet({ policy, updated_at: at, updated_by: updatedBy }),
          )
          .execute();
        await auditIn(
          trx,
          by.audit,
          { at, tenant: tenant.id, action: 'grant.policy' },
          { policy, from },
          meta,
        );
        return undefined;
      });
    },

    async getPolicy(tenant) {
      if (typeof tenant !== 'string') return config.defaultPolicy;
      const row = await control.db
        .selectFrom('grant_policies')
        .select('policy')
        .where('tenant', '=', tenant)
        .executeTakeFirst();
      return row?.policy ?? config.defaultPolicy;
    },
  };
}
