/**
 * Opening a grant: a request, which waits for the approvals the tenant's policy names (none under
 * `automatic`), or a security officer's break-glass, active at once and audited with severity high.
 */
import type { Transaction } from 'kysely';
import { TresorError } from '../errors.ts';
import {
  type AuditMeta,
  auditActorOf,
  type ResolvedActor,
  resolveActorIn,
} from '../identity/identity-actor.ts';
import { canBreakGlass, canRequestGrants } from '../identity/roles.ts';
import type { SessionPrincipal } from '../identity/session-principal.ts';
import { newId } from '../identity/tokens.ts';
import { forbidden, notFound, secondFactorRequired, tenantNotActive } from './access-errors.ts';
import type { AccessDB, GrantsTable } from './access-store-schema.ts';
import { actorTenantOf, auditIn, Refusal, refusalsOf } from './audited-write.ts';
import { type GrantContext, tenantIn } from './grant-context.ts';
import { policyIn } from './grant-policy.ts';
import { awaitingOf, type GrantInfo, grantTarget, requiredApprovals } from './grant-state.ts';
import { checkRequest, type GrantRequestInput } from './grant-vocabulary.ts';

export interface GrantRequests {
  request(actor: SessionPrincipal, input: GrantRequestInput, meta?: AuditMeta): Promise<GrantInfo>;
  /** Security officer only, with a fresh second factor: active at once, no approval, high severity. */
  breakGlass(actor: SessionPrincipal, input: GrantRequestInput, meta?: AuditMeta): Promise<GrantInfo>;
}

export function grantRequests(ctx: GrantContext): GrantRequests {
  const { now, config } = ctx;

  /** Request and break-glass: checks common to both, then the new row. */
  async function newGrantIn(
    trx: Transaction<AccessDB>,
    actor: SessionPrincipal,
    input: GrantRequestInput,
    how: 'request' | 'break-glass',
    meta: AuditMeta | undefined,
  ): Promise<Refusal | { by: ResolvedActor; row: GrantsTable }> {
    const action = how === 'request' ? 'grant.request' : 'grant.break-glass';
    const by = await resolveActorIn(trx, actor);
    const tenant = await tenantIn(trx, (input as { tenant?: unknown } | null)?.tenant);
    const refused = refusalsOf(
      trx,
      now,
      {
        actor: by?.audit ?? auditActorOf(actor),
        actorTenant: actorTenantOf(by, actor),
        tenant: tenant?.id ?? null,
        action,
      },
      meta,
    );
    const refuse = (why: string, error: TresorError, extra: Record<string, unknown> = {}) =>
      refused(why, error, { ...(how === 'break-glass' ? { severity: 'high' } : {}), ...extra });
    const allowed = how === 'request' ? canRequestGrants : canBreakGlass;
    if (!by || by.personId === null || !allowed(by.role)) return refuse('role', forbidden());
    const checked = checkRequest(input, config);
    if (checked instanceof TresorError) return refuse('invalid', checked, { field: checked.details?.field });
    if (!tenant) return refuse('unknown-tenant', notFound('tenant'));
    if (tenant.state !== 'active')
      return refuse('tenant-state', tenantNotActive(tenant.state, `tenant is ${tenant.state}`));
    if (how === 'break-glass' && (await ctx.fresh2faIn(trx, actor)) === null)
      return refuse('second-factor', secondFactorRequired());
    const at = now();
    const policy = await policyIn(trx, tenant.id, config.defaultPolicy);
    const row: GrantsTable = {
      id: newId('grt'),
      tenant: tenant.id,
      requester: by.personId,
      requester_role: by.role,
      collections: JSON.stringify(checked.collections),
      access: checked.access,
      reason: checked.reason,
      ticket: checked.ticket,
      duration_ms: checked.durationMs,
      policy,
      state: 'pending',
      break_glass: 0,
      requested_at: at.toISOString(),
      customer_approved_by: null,
      customer_approved_at: null,
      employee_approved_by: null,
      employee_approved_at: null,
      decided_at: null,
      decided_by: null,
      activated_at: null,
      expires_at: null,
      ended_at: null,
      end_reason: null,
    };
    return { by, row };
  }

  return {
    async request(actor, input, meta) {
      return ctx.run(async (trx) => {
        const made = await newGrantIn(trx, actor, input, 'request', meta);
        if (made instanceof Refusal) return made;
        const { by, row } = made;
        const automatic = requiredApprovals(row.policy, row.requester_role).length === 0;
        if (automatic) {
          row.state = 'approved';
          row.decided_at = row.requested_at;
        }
        await trx.insertInto('grants').values(row).execute();
        const step = { at: row.requested_at, tenant: row.tenant };
        await auditIn(
          trx,
          by.audit,
          { ...step, action: 'grant.request' },
          { ...grantTarget(row), policy: row.policy, awaiting: awaitingOf(row) },
          meta,
        );
        if (automatic) {
          // The tenant's stream says, in so many words, that nobody approved this one.
          await auditIn(
            trx,
            { kind: 'system', id: 'grant-policy' },
            { ...step, action: 'grant.approve' },
            { ...grantTarget(row), policy: 'automatic', approvedBy: 'tenant-policy' },
            meta,
          );
        }
        return ctx.toInfo(row, now().getTime());
      });
    },

    async breakGlass(actor, input, meta) {
      return ctx.run(async (trx) => {
        const made = await newGrantIn(trx, actor, input, 'break-glass', meta);
        if (made instanceof Refusal) return made;
        const { by, row } = made;
        const t = Date.parse(row.requested_at);
        const expiresAt = new Date(t + row.duration_ms).toISOString();
        const next: GrantsTable = {
          ...row,
          state: 'active',
          break_glass: 1,
          activated_at: row.requested_at,
          expires_at: expiresAt,
        };
        await trx.insertInto('grants').values(next).execute();
        await auditIn(
          trx,
          by.audit,
          { at: row.requested_at, tenant: row.tenant, action: 'grant.break-glass' },
          { severity: 'high', ...grantTarget(next), policy: row.policy, expiresAt },
          meta,
        );
        return ctx.toInfo(next, now().getTime());
      });
    },
  };
}
