/**
 * Who may act on a console account, read inside the caller's write: an admin who manages the person
 * (never their own account), or the person themselves while enrolling (enrolment token) or from a
 * session whose second factor is fresh. Refusals of a permission are one TRESOR_ERR_FORBIDDEN
 * whatever the reason (unknown person, another tenant, wrong role), audited as `denied`.
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  identityEvent,
  type ResolvedActor,
  resolveActorIn,
} from './identity-actor.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { auditActorKind, mayManageAccount } from './roles.ts';
import type { SessionPrincipal } from './session-principal.ts';
import { sha256 } from './tokens.ts';

/** Factor changes from a session need a second factor passed this recently. */
export const FRESH_2FA_MS = 10 * 60_000;

/** How a person proves it is them while enrolling factors: the enrolment token, or a fresh session. */
export type EnrolmentAuth = { enrolmentToken: string } | { session: SessionPrincipal };

/** What a write returns when it refused a permission: the caller throws after the commit. */
export const DENIED = Symbol('denied');

export function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'not allowed for this account');
}

/** Audits a refused permission in the caller's write. */
export async function denyIn(
  trx: Transaction<IdentityDB>,
  now: () => Date,
  actor: IdentityActor,
  action: string,
  target: Record<string, unknown>,
  meta: AuditMeta | undefined,
): Promise<typeof DENIED> {
  await appendAuditEvent(
    trx,
    identityEvent(
      auditActorOf(actor),
      { at: now().toISOString(), tenant: null, action, outcome: 'denied' },
      target,
      meta,
    ),
  );
  return DENIED;
}

/** The actor and the target person, if the actor may manage that person; undefined otherwise. */
export async function managedIn(
  trx: Transaction<IdentityDB>,
  actor: IdentityActor,
  personId: string,
): Promise<{ by: ResolvedActor; person: IdentityDB['people'] } | undefined> {
  const by = await resolveActorIn(trx, actor);
  const person = await trx.selectFrom('people').selectAll().where('id', '=', personId).executeTakeFirst();
  if (!by || !person || person.removed_at !== null || !mayManageAccount(by, person)) return undefined;
  if (by.personId === personId) return undefined; // nobody manages their own account
  return { by, person };
}

/** The person an EnrolmentAuth stands for, read inside the write. */
export async function enrollingIn(
  trx: Transaction<IdentityDB>,
  now: () => Date,
  auth: EnrolmentAuth,
): Promise<IdentityDB['people'] | undefined> {
  const t = now().getTime();
  let row: IdentityDB['people'] | undefined;
  if ('enrolmentToken' in auth) {
    if (typeof auth.enrolmentToken !== 'string' || auth.enrolmentToken.length > 64) return undefined;
    row = await trx
      .selectFrom('people')
      .selectAll()
      .where('enrolment_token_hash', '=', sha256(auth.enrolmentToken))
      .executeTakeFirst();
    if (!row || row.enrolment_expires_at === null || Date.parse(row.enrolment_expires_at) <= t)
      return undefined;
  } else {
    const s = auth.session;
    if (s.fresh2faAt === null || t - Date.parse(s.fresh2faAt) > FRESH_2FA_MS) return undefined;
    row = await trx.selectFrom('people').selectAll().where('id', '=', s.personId).executeTakeFirst();
    if (!row || row.role !== s.role || row.enrolled_at === null) return undefined;
  }
  if (row.disabled_at !== null || row.removed_at !== null) return undefined;
  return row;
}

/** The audit actor of a person acting on their own account. */
export const selfActor = (row: IdentityDB['people']) => ({ kind: auditActorKind(row.role), id: row.id });
