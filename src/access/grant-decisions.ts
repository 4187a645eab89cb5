/**
 * Moving a grant forward: approve and deny (by the approvers its policy names, never the requester),
 * activate (the requester, with a second factor passed after the request), revoke.
 */
import type { Transaction } from 'kysely';
import type { TresorError } from '../errors.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  type ResolvedActor,
  resolveActorIn,
} from '../identity/identity-actor.ts';
import type { SessionPrincipal } from '../identity/session-principal.ts';
import { forbidden, notFound, secondFactorRequired, tenantNotActive, wrongState } from './access-errors.ts';
import type { AccessDB, GrantState, GrantsTable } from './access-store-schema.ts';
import { actorTenantOf, auditIn, Refusal, refusalsOf } from './audited-write.ts';
import { type GrantContext, grantIn, moveGrantIn, tenantIn } from './grant-context.ts';
import { sidesOf } from './grant-parties.ts';
import { awaitingOf, type GrantInfo, grantTarget } from './grant-state.ts';
import { safeId } from './grant-vocabulary.ts';

export interface GrantDecisions {
  approve(actor: SessionPrincipal, grantId: string, meta?: AuditMeta): Promise<GrantInfo>;
  deny(actor: SessionPrincipal, grantId: string, meta?: AuditMeta): Promise<GrantInfo>;
  /** The requester starts the clock; needs a second factor passed AFTER the request and within FRESH_2FA_MS. */
  activate(actor: SessionPrincipal, grantId: string, meta?: AuditMeta): Promise<GrantInfo>;
  revoke(actor: IdentityActor, grantId: string, meta?: AuditMeta): Promise<GrantInfo>;
}

export function grantDecisions(ctx: GrantContext): GrantDecisions {
  const { now } = ctx;

  /** Shared steps of approve, deny, activate and revoke: the actor, the grant, the refusal helper. */
  async function decisionIn(
    trx: Transaction<AccessDB>,
    actor: IdentityActor,
    grantId: string,
    action: string,
    meta: AuditMeta | undefined,
  ): Promise<
    | Refusal
    | {
        by: ResolvedActor | undefined;
        row: GrantsTable;
        state: GrantState;
        refuse: (why: string, error: TresorError) => Promise<Refusal>;
      }
  > {
    const by = await resolveActorIn(trx, actor);
    const auditActor = by?.audit ?? auditActorOf(actor);
    const row = await grantIn(trx, grantId);
    if (!row) {
      const refuse = refusalsOf(trx, now, { actor: auditActor, tenant: null, action }, meta);
      return refuse('unknown-grant', notFound('grant'), { grantId: safeId(grantId) });
    }
    const refused = refusalsOf(
      trx,
      now,
      { actor: auditActor, actorTenant: actorTenantOf(by, actor), tenant: row.tenant, action },
      meta,
    );
    const refuse = (why: string, error: TresorError) => refused(why, error, grantTarget(row));
    return { by, row, state: ctx.stateAt(row, now().getTime()), refuse };
  }

  return {
    async approve(actor, grantId, meta) {
      return ctx.run(async (trx) => {
        const d = await decisionIn(trx, actor, grantId, 'grant.approve', meta);
        if (d instanceof Refusal) return d;
        const { by, row, state, refuse } = d;
        if (!by || by.personId === null) return refuse('actor', forbidden());
        if (by.personId === row.requester) return refuse('own-request', forbidden());
        const sides = sidesOf(by, row);
        if (sides.length === 0) return refuse('not-an-approver', forbidden());
        if (state !== 'pending') return refuse('state', wrongState(state));
        const awaiting = awaitingOf(row);
        const side = sides.find((s) => awaiting.includes(s));
        if (side === undefined) {
          return refuse('already-approved', wrongState(state, 'this approval is given; another is awaited'));
        }
        const at = now().toISOString();
        const done = awaiting.length === 1;
        const next = await moveGrantIn(trx, row, {
          ...(side === 'customer'
            ? { customer_approved_by: by.personId, customer_approved_at: at }
            : { employee_approved_by: by.personId, employee_approved_at: at }),
          ...(done ? { state: 'approved' as const, decided_at: at, decided_by: by.personId } : {}),
        });
        await auditIn(
          trx,
          by.audit,
          { at, tenant: row.tenant, action: 'grant.approve' },
          { ...grantTarget(row), as: side, awaiting: awaitingOf(next) },
          meta,
        );
        return ctx.toInfo(next, now().getTime());
      });
    },

    async deny(actor, grantId, meta) {
      return ctx.run(async (trx) => {
        const d = await decisionIn(trx, actor, grantId, 'grant.deny', meta);
        if (d instanceof Refusal) return d;
        const { by, row, state, refuse } = d;
        if (!by || by.personId === null) return refuse('actor', forbidden());
        if (by.personId === row.requester) return refuse('own-request', forbidden());
        // The tenant may always say no to access to its data; an employee when one is asked to approve.
        const tenantAdmin = by.role === 'tenant-admin' && by.tenant === row.tenant;
        if (!tenantAdmin && sidesOf(by, row).length === 0) return refuse('not-an-approver', forbidden());
        if (state !== 'pending') return refuse('state', wrongState(state));
        const at = now().toISOString();
        const next = await moveGrantIn(trx, row, {
          state: 'denied',
          decided_at: at,
          decided_by: by.personId,
          ended_at: at,
          end_reason: 'denied',
        });
        await auditIn(
          trx,
          by.audit,
          { at, tenant: row.tenant, action: 'grant.deny' },
          grantTarget(row),
          meta,
        );
        return ctx.toInfo(next, now().getTime());
      });
    },

    async activate(actor, grantId, meta) {
      return ctx.run(async (trx) => {
        const d = await decisionIn(trx, actor, grantId, 'grant.activate', meta);
        if (d instanceof Refusal) return d;
        const { by, row, state, refuse } = d;
        if (!by || by.personId === null || by.personId !== row.requester)
          return refuse('not-requester', forbidden());
        if (state !== 'approved') return refuse('state', wrongState(state));
        const fresh = await ctx.fresh2faIn(trx, actor);
        // The second factor must be passed after the request: the login's own does not count.
        if (fresh === null || !(fresh > Date.parse(row.requested_at)))
          return refuse('second-factor', secondFactorRequired());
        const tenant = await tenantIn(trx, row.tenant);
        if (tenant?.state !== 'active')
          return refuse('tenant-state', tenantNotActive(tenant?.state, 'the tenant is not active'));
        const t = now();
        const at = t.toISOString();
        const expiresAt = new Date(t.getTime() + row.duration_ms).toISOString();
        const next = await moveGrantIn(trx, row, {
          state: 'active',
          activated_at: at,
          expires_at: expiresAt,
        });
        await auditIn(
          trx,
          by.audit,
          { at, tenant: row.tenant, action: 'grant.activate' },
          { ...grantTarget(row), expiresAt },
          meta,
        );
        return ctx.toInfo(next, t.getTime());
      });
    },

    async revoke(actor, grantId, meta) {
      return ctx.run(async (trx) => {
        const d = await decisionIn(trx, actor, grantId, 'grant.revoke', meta);
        if (d instanceof Refusal) return d;
        const { by, row, state, refuse } = d;
        let who: string | undefined;
        if (by?.personId !== null && by?.personId === row.requester) who = 'requester';
        else if (by?.role === 'security-officer') who = 'security-officer';
        else if (by?.role === 'operator-admin') who = 'operator-admin';
        else if (by?.role === 'tenant-admin' && by.tenant === row.tenant) who = 'tenant-admin';
        if (!by || who === undefined) return refuse('not-allowed', forbidden());
        if (state !== 'pending' && state !== 'approved' && state !== 'active')
          return refuse('state', wrongState(state));
        const at = now().toISOString();
        const endReason = `revoked-by-${who}`;
        const next = await moveGrantIn(trx, row, { state: 'revoked', ended_at: at, end_reason: endReason });
        await auditIn(
          trx,
          by.audit,
          { at, tenant: row.tenant, action: 'grant.revoke' },
          { ...grantTarget(row), from: state, endReason },
          meta,
        );
        return ctx.toInfo(next, now().getTime());
      });
    },
  };
}
