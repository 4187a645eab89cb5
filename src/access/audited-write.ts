/**
 * The access domain's writes: every change and every refusal is audited in the same transaction.
 * A refusal's event is committed and only then is the error thrown — marked as audited
 * (audit/refusal.ts), so the request pipeline does not record the same refusal again.
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { markAudited, refusalOutcome } from '../audit/refusal.ts';
import type { TresorError } from '../errors.ts';
import { type AuditMeta, identityEvent, type ResolvedActor } from '../identity/identity-actor.ts';
import type { Store } from '../store/types.ts';
import type { AccessDB } from './access-store-schema.ts';

/** Who an access event names: a person, an operator, or a system job. */
export type AccessAuditActor = { kind: ResolvedActor['audit']['kind']; id: string };

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
  step: {
    actor: AccessAuditActor;
    tenant: string | null;
    action: string;
    target: Record<string, unknown>;
    error: TresorError;
  },
  meta: AuditMeta | undefined,
): Promise<Refusal> {
  const outcome = refusalOutcome(step.error.code);
  await appendAuditEvent(
    trx,
    identityEvent(
      step.actor,
      { at, tenant: step.tenant, action: step.action, outcome },
      { ...step.target, refusal: step.error.code },
      meta,
    ),
  );
  return new Refusal(step.error);
}

/**
 * The refusal helper of one step: `refuse(why, error, target?)` records the refusal by `step.actor`
 * on `step.tenant`, naming why, and returns it.
 */
export function refusalsOf(
  trx: Transaction<AccessDB>,
  now: () => Date,
  step: { actor: AccessAuditActor; tenant: string | null; action: string },
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
