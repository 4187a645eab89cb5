/**
 * Enrolment: with the one-time enrolment token from accounts.ts the person sets a password (SP
 * 800-63B policy, passwords.ts), begins a TOTP enrolment (the secret and otpauth URI are shown once)
 * and confirms it with a valid code — or registers a passkey verified by webauthn.ts. Only then is
 * the account enrolled: it cannot log in before. Completing enrolment issues the first recovery
 * codes, shown once. An enrolled person adds factors the same way from a session whose second
 * factor is fresh. TOTP secrets are stored sealed under the factor key (sealed-totp-secret.ts).
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { DENIED, type EnrolmentAuth, enrollingIn, selfActor } from './account-access.ts';
import { checkLabel, invalid, refusedPassword } from './account-input.ts';
import { issueRecoveryCodesIn } from './account-recovery.ts';
import { type PersonInfo, toPerson } from './accounts.ts';
import { checkFactorKey } from './factor-key.ts';
import { type AuditMeta, identityEvent } from './identity-actor.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { checkPasswordPolicy, hashPassword } from './passwords.ts';
import { openTotpSecret, sealTotpSecret } from './sealed-totp-secret.ts';
import { hasStrongFactorIn } from './second-factors.ts';
import { newId, sha256 } from './tokens.ts';
import { newTotpSecret, totpUri, verifyTotp } from './totp.ts';
import { unauthenticated } from './unauthenticated.ts';

/** A pending TOTP enrolment must be confirmed within this time. */
const TOTP_CONFIRM_MS = 15 * 60_000;

export interface EnrolmentStep {
  enrolmentComplete: boolean;
  /** Shown once, when enrolment completes. */
  recoveryCodes?: string[];
}

export interface EnrolmentService {
  /** The account an enrolment token or a fresh session stands for; TRESOR_ERR_UNAUTHENTICATED if none. */
  enrollingPerson(auth: EnrolmentAuth): Promise<PersonInfo>;
  /** Sets the password of an enrolling person, or finishes a password reset. */
  setPassword(enrolmentToken: string, password: string, meta?: AuditMeta): Promise<EnrolmentStep>;
  beginTotpEnrolment(
    auth: EnrolmentAuth,
    input?: { label?: string },
    meta?: AuditMeta,
  ): Promise<{ factorId: string; secret: string; uri: string }>;
  confirmTotpEnrolment(
    auth: EnrolmentAuth,
    factorId: string,
    code: string,
    meta?: AuditMeta,
  ): Promise<EnrolmentStep>;
  /** The hook for webauthn.ts: a credential whose registration it has verified. */
  registerWebauthnFactor(
    auth: EnrolmentAuth,
    input: { credentialId: string; publicKey: string; signCount: number; label?: string },
    meta?: AuditMeta,
  ): Promise<EnrolmentStep & { factorId: string }>;
}

export interface EnrolmentServiceOptions {
  control: Store<IdentityDB>;
  now: () => Date;
  /** The key that seals TOTP secrets (factor-key.ts). */
  factorKey: () => Promise<Buffer>;
  /** The issuer in otpauth URIs. */
  issuer?: string;
}

export function createEnrolmentService(options: EnrolmentServiceOptions): EnrolmentService {
  const { control, now, factorKey } = options;
  const issuer = options.issuer ?? 'Tresor';

  /** Completes enrolment once a password and a strong factor are in place; issues recovery codes. */
  async function completeIfReadyIn(
    trx: Transaction<IdentityDB>,
    personId: string,
    meta: AuditMeta | undefined,
  ): Promise<EnrolmentStep> {
    const row = await trx
      .selectFrom('people')
      .selectAll()
      .where('id', '=', personId)
      .executeTakeFirstOrThrow();
    if (row.enrolled_at !== null) return { enrolmentComplete: true };
    if (row.password_hash === null || !(await hasStrongFactorIn(trx, personId)))
      return { enrolmentComplete: false };
    const at = now().toISOString();
    const completed = await trx
      .updateTable('people')
      .set({ enrolled_at: at, updated_at: at, enrolment_token_hash: null, enrolment_expires_at: null })
      .where('id', '=', personId)
      .where('enrolled_at', 'is', null)
      .executeTakeFirst();
    // A racing step (another node) completed enrolment first and issued the recovery codes.
    if (completed.numUpdatedRows !== 1n) return { enrolmentComplete: true };
    const recoveryCodes = await issueRecoveryCodesIn(trx, now, personId);
    await appendAuditEvent(
      trx,
      identityEvent(
        selfActor(row),
        { at, tenant: row.tenant, action: 'person.enrol', outcome: 'success' },
        { personId },
        meta,
      ),
    );
    return { enrolmentComplete: true, recoveryCodes };
  }

  return {
    async enrollingPerson(auth) {
      const row = await control.write((trx) => enrollingIn(trx, now, auth));
      if (!row) throw unauthenticated();
      return toPerson(row);
    },

    async setPassword(enrolmentToken, password, meta) {
      const found =
        typeof enrolmentToken === 'string' && enrolmentToken.length <= 64
          ? await control.db
              .selectFrom('people')
              .select(['email', 'name'])
              .where('enrolment_token_hash', '=', sha256(enrolmentToken))
              .executeTakeFirst()
          : undefined;
      if (!found) throw unauthenticated();
      const policy = checkPasswordPolicy(password, { email: found.email, name: found.name ?? undefined });
      if (!policy.ok) throw refusedPassword(policy.reasons);
      const hash = await hashPassword(password);
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, now, { enrolmentToken });
        if (!row) return DENIED;
        const at = now().toISOString();
        const reset = row.enrolled_at !== null;
        // A reset token is spent by this update: only if it is still the stored one, so of two
        // racing uses (two nodes) exactly one sets the password.
        const set = await trx
          .updateTable('people')
          .set({
            password_hash: hash,
            password_set_at: at,
            updated_at: at,
            ...(reset ? { enrolment_token_hash: null, enrolment_expires_at: null } : {}),
          })
          .where('id', '=', row.id)
          .where('enrolment_token_hash', '=', sha256(enrolmentToken))
          .executeTakeFirst();
        if (set.numUpdatedRows !== 1n) return DENIED;
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            {
              at,
              tenant: row.tenant,
              action: reset ? 'person.password-reset' : 'person.password-set',
              outcome: 'success',
            },
            { personId: row.id },
            meta,
          ),
        );
        return reset ? { enrolmentComplete: true } : completeIfReadyIn(trx, row.id, meta);
      });
      if (result === DENIED) throw unauthenticated();
      return result;
    },

    async beginTotpEnrolment(auth, input, meta) {
      const key = checkFactorKey(await factorKey());
      const label = checkLabel(input?.label);
      const secret = newTotpSecret();
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, now, auth);
        if (!row) return DENIED;
        const at = now().toISOString();
        const id = newId('fac');
        await trx
          .insertInto('second_factors')
          .values({
            id,
            person: row.id,
            kind: 'totp',
            label,
            secret_sealed: sealTotpSecret(key, row.id, id, secret),
            last_step: null,
            credential_id: null,
            public_key: null,
            sign_count: null,
            recovery_hashes: null,
            created_at: at,
            confirmed_at: null,
            last_used_at: null,
            revoked_at: null,
          })
          .execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            { at, tenant: row.tenant, action: 'factor.totp-begin', outcome: 'success' },
            { personId: row.id, factorId: id },
            meta,
          ),
        );
        return { factorId: id, secret, uri: totpUri({ issuer, account: row.email, secret }) };
      });
      if (result === DENIED) throw unauthenticated();
      return result;
    },

    async confirmTotpEnrolment(auth, factorId, code, meta) {
      const key = checkFactorKey(await factorKey());
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, now, auth);
        if (!row) return DENIED;
        const at = now();
        const f = await trx
          .selectFrom('second_factors')
          .selectAll()
          .where('id', '=', factorId)
          .where('person', '=', row.id)
          .where('kind', '=', 'totp')
          .where('confirmed_at', 'is', null)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        const fresh = f !== undefined && at.getTime() - Date.parse(f.created_at) <= TOTP_CONFIRM_MS;
        const check =
          f && fresh
            ? verifyTotp({
                secret: openTotpSecret(key, row.id, f.id, f.secret_sealed ?? ''),
                code,
                now: at,
                lastAcceptedStep: f.last_step,
              })
            : ({ ok: false, reason: 'invalid' } as const);
        if (!check.ok || !f) {
          await appendAuditEvent(
            trx,
            identityEvent(
              selfActor(row),
              { at: at.toISOString(), tenant: row.tenant, action: 'factor.totp-confirm', outcome: 'failure' },
              {
                personId: row.id,
                factorId,
                reason: !fresh ? 'expired' : check.ok ? 'invalid' : check.reason,
              },
              meta,
            ),
          );
          return 'refused' as const;
        }
        const confirmed = await trx
          .updateTable('second_factors')
          .set({ confirmed_at: at.toISOString(), last_step: check.step, last_used_at: at.toISOString() })
          .where('id', '=', f.id)
          .where('confirmed_at', 'is', null)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        // Confirmed by a racing request first (the same code, another node): this one is refused.
        if (confirmed.numUpdatedRows !== 1n) return 'refused' as const;
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            { at: at.toISOString(), tenant: row.tenant, action: 'factor.totp-confirm', outcome: 'success' },
            { personId: row.id, factorId },
            meta,
          ),
        );
        return completeIfReadyIn(trx, row.id, meta);
      });
      if (result === DENIED || result === 'refused') throw unauthenticated();
      return result;
    },

    async registerWebauthnFactor(auth, input, meta) {
      const label = checkLabel(input.label);
      if (typeof input.credentialId !== 'string' || !/^[A-Za-z0-9_-]{16,1366}$/.test(input.credentialId)) {
        throw invalid('credentialId', 'base64url');
      }
      if (typeof input.publicKey !== 'string' || !/^[A-Za-z0-9_-]{16,4096}$/.test(input.publicKey)) {
        throw invalid('publicKey', 'base64url');
      }
      if (!Number.isSafeInteger(input.signCount) || input.signCount < 0)
        throw invalid('signCount', 'a counter');
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, now, auth);
        if (!row) return DENIED;
        const taken = await trx
          .selectFrom('second_factors')
          .select('id')
          .where('credential_id', '=', input.credentialId)
          .executeTakeFirst();
        if (taken) throw new TresorError('TRESOR_ERR_CONFLICT', 'this credential is registered already');
        const at = now().toISOString();
        const id = newId('fac');
        await trx
          .insertInto('second_factors')
          .values({
            id,
            person: row.id,
            kind: 'webauthn',
            label,
            secret_sealed: null,
            last_step: null,
            credential_id: input.credentialId,
            public_key: input.publicKey,
            sign_count: input.signCount,
            recovery_hashes: null,
            created_at: at,
            confirmed_at: at,
            last_used_at: null,
            revoked_at: null,
          })
          .execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            { at, tenant: row.tenant, action: 'factor.webauthn-register', outcome: 'success' },
            { personId: row.id, factorId: id },
            meta,
          ),
        );
        return { factorId: id, ...(await completeIfReadyIn(trx, row.id, meta)) };
      });
      if (result === DENIED) throw unauthenticated();
      return result;
    },
  };
}
