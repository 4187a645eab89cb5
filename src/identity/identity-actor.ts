/**
 * Who acts on identity, as the audit log names them: a console session, an operator admin or a
 * system job; the request context an event carries; and the actor as the store knows it now.
 */
import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/event.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { auditActorKind, type Role } from './roles.ts';
import type { SessionPrincipal } from './session-principal.ts';

/**
 * Actors of identity work: a console session; an operator admin `id` acting without a session —
 * over HTTP only through an operator token (`tokenId`), whose scopes only read (people:read,
 * access:read); a system job.
 */
export type IdentityActor =
  | SessionPrincipal
  | { kind: 'operator-admin'; id: string; tokenId?: string }
  | { kind: 'system'; job: string };

/** The request's context for the audit event; never a secret. */
export interface AuditMeta {
  requestId?: string;
  sourceAddress?: string;
  userAgent?: string;
}

/** An audit event for identity work. */
export function identityEvent(
  actor: AuditEvent['actor'],
  step: { at: string; tenant: string | null; action: string; outcome: AuditEvent['outcome'] },
  target: Record<string, unknown> | undefined,
  meta: AuditMeta | undefined,
): AuditEvent {
  const event: AuditEvent = {
    at: step.at,
    actor,
    tenant: step.tenant,
    action: step.action,
    outcome: step.outcome,
  };
  if (target !== undefined) event.target = target;
  if (meta?.requestId !== undefined) event.requestId = meta.requestId;
  if (meta?.sourceAddress !== undefined) event.sourceAddress = meta.sourceAddress;
  if (meta?.userAgent !== undefined) event.userAgent = meta.userAgent.slice(0, 256);
  return event;
}

export interface ResolvedActor {
  role: Role;
  tenant: string | null;
  personId: string | null;
  audit: AuditEvent['actor'];
}

/**
 * The actor as the store knows it now, inside the caller's transaction: a session's person must
 * still be active with the role the session was made for. undefined when not.
 * Operator tokens (operator-tokens.ts, proved owned by an active operator admin at authentication)
 * and system jobs act as operator admins.
 */
export async function resolveActorIn(
  trx: Transaction<IdentityDB>,
  actor: IdentityActor,
): Promise<ResolvedActor | undefined> {
  if (actor.kind === 'operator-admin') {
    return {
      role: 'operator-admin',
      tenant: null,
      personId: null,
      audit: auditActorOf(actor),
    };
  }
  if (actor.kind === 'system') {
    return { role: 'operator-admin', tenant: null, personId: null, audit: { kind: 'system', id: actor.job } };
  }
  const row = await trx
    .selectFrom('people')
    .select(['role', 'tenant', 'disabled_at', 'removed_at'])
    .where('id', '=', actor.personId)
    .executeTakeFirst();
  if (!row || row.disabled_at !== null || row.removed_at !== null || row.role !== actor.role)
    return undefined;
  return {
    role: row.role,
    tenant: row.tenant,
    personId: actor.personId,
    audit: { kind: auditActorKind(row.role), id: actor.personId },
  };
}

/** The audit actor of an IdentityActor, without a store read (for refusals). */
export function auditActorOf(actor: IdentityActor): AuditEvent['actor'] {
  if (actor.kind === 'operator-admin')
    return { kind: 'operator-admin', id: actor.id, ...(actor.tokenId ? { tokenId: actor.tokenId } : {}) };
  if (actor.kind === 'system') return { kind: 'system', id: actor.job };
  return { kind: auditActorKind(actor.role), id: actor.personId };
}
