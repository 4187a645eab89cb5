/**
 * A signed-in person changes their own password (ASVS 5.0 6.2.3, 7.4.3): the current password and
 * the new one, inside a session whose second factor is fresh (the route's step-up).
 *
 * - The current password is checked as login checks it (argon2id, passwords.ts) and counted by the
 *   same throttle under the same account subject (login-throttle.ts): a wrong one is a failed login
 *   for delays and lockout, so this route cannot be used to guess a password faster than the login.
 *   A throttled or locked account is refused before any hash is computed (429, Retry-After).
 * - The new password meets the policy every password is set under (passwords.ts, with the person's
 *   e-mail and name as context words); it is hashed with today's argon2id settings.
 * - In one commit: the hash replaced (only if the stored hash is still the one verified: of two
 *   racing changes one wins, the other is refused), every session of the person ended, the caller's
 *   included, and a new session made for the caller — a new cookie and CSRF token, the same
 *   factors, second-factor time and absolute expiry — so the old session id is worthless and every
 *   other device must sign in again with the new password.
 * - Audited as `person.password-change` (success with the sessions ended; failure with the reason),
 *   never either password. A wrong current password is TRESOR_ERR_PASSWORD_INCORRECT (403), with
 *   nothing changed but the throttle's count and the audit entry.
 *
 * Tresor has no channel to a person (alerts go to the security team, docs/alerts.md): the change is
 * in the audit log and the session list, not sent to the person.
 */
import { appendAuditEvent } from '../audit/event.ts';
import { markAudited } from '../audit/refusal.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { refusedPassword } from './account-input.ts';
import { type AuditMeta, identityEvent } from './identity-actor.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { accountSubject, type LoginThrottle, rateLimited, type ThrottleSubjects } from './login-throttle.ts';
import { checkPasswordPolicy, hashPassword, verifyPassword } from './passwords.ts';
import { auditActorKind } from './roles.ts';
import type { SessionFactor, SessionPrincipal } from './session-principal.ts';
import { type NewSession, revokePersonSessionsIn, type SessionService } from './sessions.ts';
import { unauthenticated } from './unauthenticated.ts';

export interface PasswordChangeInput {
  currentPassword: string;
  newPassword: string;
}

export type ChangePassword = (
  principal: SessionPrincipal,
  input: PasswordChangeInput,
  meta?: AuditMeta,
) => Promise<NewSession>;

function incorrect(): TresorError {
  return new TresorError('TRESOR_ERR_PASSWORD_INCORRECT', 'the current password is not correct');
}

export function createPasswordChange(options: {
  control: Store<IdentityDB>;
  now: () => Date;
  sessions: SessionService;
  throttle: LoginThrottle;
}): ChangePassword {
  const { control, now, sessions, throttle } = options;

  return async (principal, input, meta = {}) => {
    const person = await control.db
      .selectFrom('people')
      .selectAll()
      .where('id', '=', principal.personId)
      .executeTakeFirst();
    if (!person || person.removed_at !== null || person.disabled_at !== null) throw unauthenticated();
    const subjects: ThrottleSubjects = {
      account: accountSubject(person.side, person.tenant, person.email),
      address: meta.sourceAddress ?? 'unknown',
    };
    const actor = { kind: auditActorKind(person.role), id: person.id };
    const audit = (at: string, outcome: 'success' | 'failure' | 'denied', target: Record<string, unknown>) =>
      identityEvent(
        actor,
        { at, tenant: person.tenant, action: 'person.password-change', outcome },
        { personId: person.id, sessionId: principal.sessionId, ...target },
        meta,
      );

    const early = await throttle.check(subjects);
    if (!early.allowed) {
      await control.write((trx) =>
        appendAuditEvent(trx, audit(now().toISOString(), 'denied', { reason: 'throttled' })),
      );
      throw markAudited(rateLimited(early.retryAfterMs));
    }
    const verifiedHash = person.password_hash;
    const currentOk = verifiedHash !== null && (await verifyPassword(verifiedHash, input.currentPassword));
    // The new password is checked only once the current one is right: a wrong guess learns nothing else.
    const policy = currentOk
      ? checkPasswordPolicy(input.newPassword, { email: person.email, name: person.name ?? undefined })
      : undefined;
    const newHash = policy?.ok ? await hashPassword(input.newPassword) : undefined;

    const result = await control.write(async (trx): Promise<NewSession | TresorError> => {
      const at = now().toISOString();
      const verdict = await throttle.checkIn(trx, subjects);
      if (!verdict.allowed) {
        await appendAuditEvent(trx, audit(at, 'denied', { reason: 'throttled' }));
        return rateLimited(verdict.retryAfterMs);
      }
      if (!currentOk) {
        const { locked } = await throttle.recordFailureIn(trx, subjects);
        await appendAuditEvent(trx, audit(at, 'failure', { reason: 'wrong-password' }));
        if (locked) {
          await appendAuditEvent(
            trx,
            identityEvent(
              { kind: 'system', id: 'login-throttle' },
              { at, tenant: person.tenant, action: 'auth.lockout', outcome: 'success' },
              { personId: person.id },
              meta,
            ),
          );
        }
        return incorrect();
      }
      if (!policy?.ok || newHash === undefined) {
        await appendAuditEvent(trx, audit(at, 'failure', { reason: 'password-policy' }));
        return refusedPassword(policy && !policy.ok ? policy.reasons : []);
      }
      const session = await trx
        .selectFrom('sessions')
        .selectAll()
        .where('id', '=', principal.sessionId)
        .executeTakeFirst();
      if (!session || session.person !== person.id || session.revoked_at !== null) {
        await appendAuditEvent(trx, audit(at, 'failure', { reason: 'session-not-live' }));
        return unauthenticated();
      }
      const changed = await trx
        .updateTable('people')
        .set({ password_hash: newHash, password_set_at: at, updated_at: at })
        .where('id', '=', person.id)
        .where('password_hash', '=', verifiedHash as string)
        .executeTakeFirst();
      if (changed.numUpdatedRows !== 1n) {
        // Changed meanwhile (another change, a reset): the password verified is no longer the one stored.
        await appendAuditEvent(trx, audit(at, 'failure', { reason: 'changed-meanwhile' }));
        return incorrect();
      }
      await throttle.recordSuccessIn(trx, subjects.account);
      const ended = await revokePersonSessionsIn(trx, person.id, at, 'password-changed');
      const created = await sessions.createIn(trx, {
        personId: person.id,
        side: person.side,
        tenant: person.tenant,
        factors: JSON.parse(session.factors) as SessionFactor[],
        fresh2faAt: session.fresh_2fa_at,
        address: meta.sourceAddress ?? session.address,
        userAgent: meta.userAgent ?? session.user_agent,
        absoluteExpiresAt: session.absolute_expires_at,
      });
      await appendAuditEvent(
        trx,
        audit(at, 'success', {
          sessionId: created.session.id,
          previousSessionId: session.id,
          endedSessionIds: ended.filter((id) => id !== session.id),
        }),
      );
      return created;
    });
    if (result instanceof TresorError) throw markAudited(result);
    return result;
  };
}
