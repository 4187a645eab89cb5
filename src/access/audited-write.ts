/**
 * The access domain's writes: every change and every refusal is audited in the same transaction.
 * A refusal of a person of another tenant than the one it concerns is written twice: naming them
 * for the operators, and anonymised on the tenant's stream (refuseIn).
 * A refusal's event is committed and only then is the error thrown — marked as audited
 * (audit/refusal.ts), so the request pipeline does not record the same refusal again.
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { markAudited, refusalOutcome } from '../audit/refusal.ts';
import type { TresorError } from '../errors.ts';
import {
  type AuditMeta,
  type IdentityActor,
  identityEvent,
  type ResolvedActor,
} from '../identity/identity-actor.ts';
import type { Store } from '../store/types.ts';
import type { AccessDB } from './access-store-schema.ts';

/** Who an access event names: a person, an operator, or a system job. */
export type AccessAuditActor = { kind: ResolvedActor['audit']['kind']; id: string };

/**
 * The tenant a refused actor belongs to: the store's view of them (`by`) when they still resolve,
 * else the session's own. null for operators, staff and system jobs.
 */
export function actorTenantOf(by: ResolvedActor | undefined, actor: IdentityActor): string | null {
  if (by) return by.tenant;
  return actor.kind === 'session' ? actor.tenant : null;
}

/** How another tenant's person appears in a refusal recorded on this tenant's stream. */
export const ANOTHER_TENANT = 'another-tenant';

/** A refusal whose audit event is written in the transaction: thrown once the commit is durable. */
export class Refusal {
  constructor(readonly error: TresorError) {}
}

/** Runs `work` in one write; a Refusal it returns is thrown after its audit event committed. */
export async function writeAudited<T>(
  control: Store<AccessDB>,
  work: (trx: Transaction<AccessDB>) => Promise<T | Refusal>,
): Promise<T> {
  const result = await control.write(work);
  if (result instanceof Refusal) throw markAudited(result.error);
  return result;
}

/**
 * Records the refusal of one step (`refusal: code`) and returns it. Its outcome is the pipeline's
 * for the same code (denied for a missing permission or second factor), since this event stands
 * for the request's refusal in the log.
 */
async function refuseIn(
  trx: Transaction<AccessDB>,
  at: string,
  step: RefusalStep & { target: Record<string, unknown>; error: TresorError },
  meta: AuditMeta | undefined,
): Promise<Refusal> {
  const outcome = refusalOutcome(step.error.code);
  const target = { ...step.target, refusal: step.error.code };
  const foreign = step.tenant !== null && step.actorTenant != null && step.actorTenant !== step.tenant;
  if (!foreign) {
    await appendAuditEvent(
      trx,
      identityEvent(step.actor, { at, tenant: step.tenant, action: step.action, outcome }, target, meta),
    );
    return new Refusal(step.error);
  }
  // A person of another tenant: the operators' record names them (not on any tenant's stream);
  // the tenant's stream, which its customers read, shows the attempt as from another tenant,
  // without their id, address or browser. The request id ties the two entries together.
  await appendAuditEvent(
    trx,
    identityEvent(
      step.actor,
      { at, tenant: null, action: step.action, outcome },
      { ...target, tenant: step.tenant },
      meta,
    ),
  );
  await appendAuditEvent(
    trx,
    identityEvent(
      { kind: step.actor.kind, id: ANOTHER_TENANT },
      { at, tenant: step.tenant, action: step.action, outcome },
      target,
      meta?.requestId !== undefined ? { requestId: meta.requestId } : undefined,
    ),
  );
  return new Refusal(step.error);
}

/**
 * One step's refusal: who (and, for a customer's person, their tenant: `actorTenantOf`), on which
 * tenant's stream, which action.
 */
export interface RefusalStep {
  actor: AccessAuditActor;
  actorTenant?: string | null;
  tenant: string | null;
  action: string;
}

/**
 * The refusal helper of one step: `refuse(why, error, target?)` records the refusal by `step.actor`
 * on `step.tenant`, naming why, and returns it.
 */
export function refusalsOf(
  trx: Transaction<AccessDB>,
  now: () => Date,
  step: RefusalStep,
  meta: AuditMeta | undefined,
) {
  return (why: string, error: TresorError, target: Record<string, unknown> = {}): Promise<Refusal> =>
    refuseIn(trx, now().toISOString(), { ...step, target: { ...target, refused: why }, error }, meta);
}

/** Records a step that succeeded. */
export async function auditIn(
  trx: Transaction<AccessDB>,
  actor: AccessAuditActor,
  step: { at: string; tenant: string | null; action: string },
  target: Record<string, unknown>,
  meta: AuditMeta | undefined,
): Promise<void> {
  await appendAuditEvent(trx, identityEvent(actor, { ...step, outcome: 'success' }, target, meta));
}
