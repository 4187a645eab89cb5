/**
 * Getting back into an account: recovery codes (stored hashed, recovery-codes.ts), a password reset
 * by an admin or by the person with a recovery code, and lifting a login lockout. A password reset
 * changes the password only: the second factors stay and login still needs one.
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { markAudited } from '../audit/refusal.ts';
import type { Store } from '../store/types.ts';
import {
  DENIED,
  denyIn,
  type EnrolmentAuth,
  enrollingIn,
  forbidden,
  managedIn,
  selfActor,
} from './account-access.ts';
import { normaliseEmail, refusedPassword } from './account-input.ts';
import { DEFAULT_ENROLMENT_TTL_MS } from './accounts.ts';
import { checkFactorKey } from './factor-key.ts';
import { type AuditMeta, type IdentityActor, identityEvent } from './identity-actor.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { accountSubject, type LoginThrottle, rateLimited } from './login-throttle.ts';
import { checkPasswordPolicy, hashPassword } from './passwords.ts';
import { newRecoveryCodes } from './recovery-codes.ts';
import type { Side } from './roles.ts';
import { verifySecondFactorIn } from './second-factor-check.ts';
import { hasStrongFactorIn } from './second-factors.ts';
import { revokePersonSessionsIn } from './sessions.ts';
import { newId, newToken, sha256 } from './tokens.ts';
import { unauthenticated } from './unauthenticated.ts';

export interface RecoveryService {
  /** A new set of recovery codes (the old set stops working), shown once. */
  issueRecoveryCodes(auth: EnrolmentAuth, meta?: AuditMeta): Promise<{ codes: string[] }>;
  /** Admin reset: the password stops working, sessions end, a one-time reset token is returned. */
  resetPassword(
    actor: IdentityActor,
    personId: string,
    meta?: AuditMeta,
  ): Promise<{ resetToken: string; expiresAt: string }>;
  /** Self-service reset with a recovery code: sets the password, lifts a lockout, ends sessions. */
  resetPasswordWithRecoveryCode(
    input: { side: Side; tenant?: string | null; email: string; recoveryCode: string; newPassword: string },
    meta: AuditMeta & { sourceAddress: string },
  ): Promise<void>;
  /** Lifts a login lockout (admin). */
  unlock(actor: IdentityActor, personId: string, meta?: AuditMeta): Promise<void>;
}

export interface RecoveryServiceOptions {
  control: Store<IdentityDB>;
  now: () => Date;
  /** The key that opens TOTP secrets (factor-key.ts). */
  factorKey: () => Promise<Buffer>;
  throttle: LoginThrottle;
  enrolmentTtlMs?: number;
}

/** A new set of recovery codes for the person, in the caller's write; the old set stops working. */
export async function issueRecoveryCodesIn(
  trx: Transaction<IdentityDB>,
  now: () => Date,
  personId: string,
): Promise<string[]> {
  const at = now().toISOString();
  await trx
    .updateTable('second_factors')
    .set({ revoked_at: at })
    .where('person', '=', personId)
    .where('kind', '=', 'recovery')
    .where('revoked_at', 'is', null)
    .execute();
  const set = newRecoveryCodes();
  await trx
    .insertInto('second_factors')
    .values({
      id: newId('fac'),
      person: personId,
      kind: 'recovery',
      label: null,
      secret_sealed: null,
      last_step: null,
      credential_id: null,
      public_key: null,
      sign_count: null,
      recovery_hashes: JSON.stringify(set.hashes),
      created_at: at,
      confirmed_at: at,
      last_used_at: null,
      revoked_at: null,
    })
    .execute();
  return set.codes;
}

export function createRecoveryService(options: RecoveryServiceOptions): RecoveryService {
  const { control, now, factorKey, throttle } = options;
  const enrolmentTtlMs = options.enrolmentTtlMs ?? DEFAULT_ENROLMENT_TTL_MS;

  return {
    async issueRecoveryCodes(auth, meta) {
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, now, auth);
        if (!row || !(await hasStrongFactorIn(trx, row.id))) return DENIED;
        const codes = await issueRecoveryCodesIn(trx, now, row.id);
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            {
              at: now().toISOString(),
              tenant: row.tenant,
              action: 'factor.recovery-issue',
              outcome: 'success',
            },
            { personId: row.id },
            meta,
          ),
        );
        return { codes };
      });
      if (result === DENIED) throw unauthenticated();
      return result;
    },

    async resetPassword(actor, personId, meta) {
      const resetToken = newToken();
      const result = await control.write(async (trx) => {
        const m = await managedIn(trx, actor, personId);
        if (!m) return denyIn(trx, now, actor, 'person.password-reset-begin', { personId }, meta);
        const at = now();
        const expiresAt = new Date(at.getTime() + enrolmentTtlMs).toISOString();
        // The old password stops working now; the second factors stay.
        await trx
          .updateTable('people')
          .set({
            password_hash: null,
            password_set_at: null,
            enrolment_token_hash: sha256(resetToken),
            enrolment_expires_at: expiresAt,
            updated_at: at.toISOString(),
          })
          .where('id', '=', personId)
          .execute();
        const sessionIds = await revokePersonSessionsIn(trx, personId, at.toISOString(), 'password-reset');
        await appendAuditEvent(
          trx,
          identityEvent(
            m.by.audit,
            {
              at: at.toISOString(),
              tenant: m.person.tenant,
              action: 'person.password-reset-begin',
              outcome: 'success',
            },
            { personId, sessionIds },
            meta,
          ),
        );
        return { resetToken, expiresAt };
      });
      if (result === DENIED) throw markAudited(forbidden());
      return result;
    },

    async resetPasswordWithRecoveryCode(input, meta) {
      const key = checkFactorKey(await factorKey());
      let email: string | undefined;
      try {
        email = normaliseEmail(input.email);
      } catch {
        email = undefined;
      }
      const tenant = input.side === 'customer' ? (input.tenant ?? null) : null;
      const policy = checkPasswordPolicy(input.newPassword, { email });
      if (!policy.ok) throw refusedPassword(policy.reasons);
      const hash = await hashPassword(input.newPassword);
      // The account lockout does not apply (this flow lifts it); the address throttle does.
      const addressOnly = { account: 'account:recovery-flow', address: meta.sourceAddress };
      const verdict = await throttle.check(addressOnly);
      if (!verdict.allowed) throw rateLimited(verdict.retryAfterMs);
      const result = await control.write(async (trx) => {
        const at = now();
        const again = await throttle.checkIn(trx, addressOnly);
        if (!again.allowed) return again;
        let q = trx
          .selectFrom('people')
          .selectAll()
          .where('side', '=', input.side)
          .where('email', '=', email ?? '')
          .where('removed_at', 'is', null);
        q = tenant === null ? q.where('tenant', 'is', null) : q.where('tenant', '=', tenant);
        const row = email === undefined ? undefined : await q.executeTakeFirst();
        const check =
          row && row.disabled_at === null && row.enrolled_at !== null
            ? await verifySecondFactorIn(trx, {
                personId: row.id,
                proof: { recoveryCode: input.recoveryCode },
                factorKey: key,
                now: at,
              })
            : ({ ok: false, reason: 'invalid' } as const);
        if (!row || !check.ok) {
          await throttle.recordAddressFailureIn(trx, meta.sourceAddress);
          await appendAuditEvent(
            trx,
            identityEvent(
              row ? selfActor(row) : { kind: 'anonymous', id: 'recovery' },
              {
                at: at.toISOString(),
                tenant: row?.tenant ?? null,
                action: 'person.password-recover',
                outcome: 'failure',
              },
              row ? { personId: row.id } : { reason: 'unknown-account' },
              meta,
            ),
          );
          return 'refused' as const;
        }
        await trx
          .updateTable('people')
          .set({
            password_hash: hash,
            password_set_at: at.toISOString(),
            enrolment_token_hash: null,
            enrolment_expires_at: null,
            updated_at: at.toISOString(),
          })
          .where('id', '=', row.id)
          .execute();
        await throttle.liftIn(trx, accountSubject(row.side, row.tenant, row.email));
        const sessionIds = await revokePersonSessionsIn(trx, row.id, at.toISOString(), 'password-recovered');
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            {
              at: at.toISOString(),
              tenant: row.tenant,
              action: 'person.password-recover',
              outcome: 'success',
            },
            { personId: row.id, sessionIds },
            meta,
          ),
        );
        return 'done' as const;
      });
      if (result === 'refused') throw unauthenticated();
      if (result !== 'done') throw rateLimited(result.retryAfterMs);
    },

    async unlock(actor, personId, meta) {
      const result = await control.write(async (trx) => {
        const m = await managedIn(trx, actor, personId);
        if (!m) return denyIn(trx, now, actor, 'person.unlock', { personId }, meta);
        await throttle.liftIn(trx, accountSubject(m.person.side, m.person.tenant, m.person.email));
        await appendAuditEvent(
          trx,
          identityEvent(
            m.by.audit,
            { at: now().toISOString(), tenant: m.person.tenant, action: 'person.unlock', outcome: 'success' },
            { personId },
            meta,
          ),
        );
        return undefined;
      });
      if (result === DENIED) throw markAudited(forbidden());
    },
  };
}
