/**
 * Console login in two steps, and re-authentication.
 *
 *   beginLogin(email, password, …)   → a pending-login handle (5 min), never a session
 *   completeLogin(handle, factor)    → a new session (sessions.ts), with a new token
 *   reauthenticate(session, factor)  → a new session token with `fresh2faAt` now (grants need it)
 *
 * No user enumeration (OWASP Authentication Cheat Sheet): beginLogin answers every request it
 * does not throttle with the same shape — a handle and "second factor needed" — whether the account
 * exists, the password is right, or the account is disabled or not enrolled. An unknown account is
 * verified against a dummy argon2id hash, so the work is the same. Whatever went wrong shows only
 * at completeLogin, as the one TRESOR_ERR_UNAUTHENTICATED. The throttle keys on the identifier as
 * typed, so throttling treats unknown accounts alike too (login-throttle.ts).
 *
 * Every failure is counted by the throttle and audited as `auth.login` (outcome failure, with the
 * step and reason, never the code or password) in the same commit; throttled attempts are refused
 * with TRESOR_ERR_RATE_LIMITED and a retry-after, audited as denied.
 * A handle takes at most `maxHandleFailures` wrong second factors, then it is spent.
 *
 * WebAuthn as the second factor of a login: the challenge is bound to the pending login (its
 * handle's hash), not to a person, and the options name no credential (discoverable credentials),
 * so they are the same whether the password step passed or not. The assertion must then be of a
 * credential of the person the handle stands for — none when the password was wrong — and a refused
 * one counts and answers exactly like a wrong TOTP code, through completeLogin.
 *
 * Transparent rehash: a right password whose stored hash was made with older argon2id settings
 * (passwords.ts, needsRehash) is hashed again at today's, and the new hash replaces the old in the
 * same write as the password step's bookkeeping, only if the stored hash is still the one verified.
 * It is not a password change (the password is the same, password_set_at stays); the password step's
 * audit entry says `rehashed: true`, and neither hash is ever logged or audited.
 */
import { randomBytes } from 'node:crypto';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import type { Store } from '../store/types.ts';
import { normaliseEmail } from './account-input.ts';
import { afterFactorKey, checkFactorKey } from './factor-key.ts';
import { type AuditMeta, identityEvent, resolveActorIn } from './identity-actor.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { SECOND_FACTOR_KINDS, type SecondFactorKind } from './identity-store-schema.ts';
import {
  accountSubject,
  createLoginThrottle,
  type LoginThrottle,
  type LoginThrottleConfig,
  rateLimited,
  type ThrottleSubjects,
  type ThrottleVerdict,
} from './login-throttle.ts';
import { type ChangePassword, createPasswordChange } from './password-change.ts';
import { hashPassword, needsRehash, verifyPassword } from './passwords.ts';
import { auditActorKind, type Side } from './roles.ts';
import { type SecondFactorProof, verifySecondFactorIn } from './second-factor-check.ts';
import type { SessionFactor, SessionPrincipal } from './session-principal.ts';
import type { NewSession, SessionService } from './sessions.ts';
import { newToken, sha256 } from './tokens.ts';
import { unauthenticated } from './unauthenticated.ts';
import { WebAuthnRefusedError, type WebAuthnService } from './webauthn.ts';

export const DEFAULT_PENDING_LOGIN_MS = 5 * 60_000;
export const DEFAULT_MAX_HANDLE_FAILURES = 3;
const HANDLE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export interface BeginLoginInput {
  email: string;
  password: string;
  side: Side;
  tenant?: string | null;
  address: string;
  userAgent?: string;
  requestId?: string;
}

/** The only answer beginLogin gives: the same for every account, real or not. */
export interface PendingLogin {
  handle: string;
  expiresAt: string;
  next: 'second-factor';
  factors: readonly SecondFactorKind[];
}

export interface LoginService {
  beginLogin(input: BeginLoginInput): Promise<PendingLogin>;
  completeLogin(handle: string, proof: SecondFactorProof, meta?: AuditMeta): Promise<NewSession>;
  /** A fresh second-factor check inside a session: a new token, `fresh2faAt` now, same absolute expiry. */
  reauthenticate(
    principal: SessionPrincipal,
    proof: SecondFactorProof,
    meta?: AuditMeta,
  ): Promise<NewSession>;
  /** WebAuthn options for a pending login: the same for every live handle (see the header). */
  webauthnLoginOptions(handle: string, meta?: AuditMeta): Promise<PublicKeyCredentialRequestOptionsJSON>;
  /** Completes a pending login with a WebAuthn assertion; refusals as completeLogin's. */
  completeWebauthnLogin(handle: string, response: unknown, meta?: AuditMeta): Promise<NewSession>;
  /** WebAuthn options for re-authenticating a session (its person's own credentials). */
  webauthnReauthenticationOptions(
    principal: SessionPrincipal,
  ): Promise<PublicKeyCredentialRequestOptionsJSON>;
  reauthenticateWithWebauthn(
    principal: SessionPrincipal,
    response: unknown,
    meta?: AuditMeta,
  ): Promise<NewSession>;
  /** The caller changes their own password (password-change.ts): a new session, every other one ended. */
  changePassword: ChangePassword;
}

export interface LoginServiceOptions {
  control: Store<IdentityDB>;
  now: () => Date;
  /** The key that opens sealed TOTP secrets (factor-key.ts); until keyd gives it, every call fails. */
  factorKey: () => Promise<Buffer>;
  sessions: SessionService;
  throttle?: LoginThrottle;
  throttleConfig?: Partial<LoginThrottleConfig>;
  pendingLoginMs?: number;
  maxHandleFailures?: number;
  /** WebAuthn ceremonies; without it the WebAuthn steps refuse. */
  webauthn?: WebAuthnService;
}

/** A WebAuthn assertion that was refused: counted and audited as a wrong second factor. */
const REFUSED_WEBAUTHN: SecondFactorProof = { webauthnRefused: true };

type Denied = { denied: ThrottleVerdict & { allowed: false } };

export function createLoginService(options: LoginServiceOptions): LoginService {
  const { control, now, sessions, factorKey } = options;
  const throttle = options.throttle ?? createLoginThrottle({ control, now, config: options.throttleConfig });
  const pendingMs = options.pendingLoginMs ?? DEFAULT_PENDING_LOGIN_MS;
  const maxHandleFailures = options.maxHandleFailures ?? DEFAULT_MAX_HANDLE_FAILURES;
  let dummyHash: Promise<string> | undefined;
  const dummy = () => {
    dummyHash ??= hashPassword(randomBytes(18).toString('base64url'));
    return dummyHash;
  };

  const anonymous = { kind: 'anonymous' as const, id: 'login' };

  async function auditThrottled(
    trx: Transaction<IdentityDB>,
    verdict: ThrottleVerdict & { allowed: false },
    step: string,
    meta: AuditMeta,
  ): Promise<Denied> {
    await appendAuditEvent(
      trx,
      identityEvent(
        anonymous,
        { at: now().toISOString(), tenant: null, action: 'auth.login', outcome: 'denied' },
        { step, reason: 'throttled', throttle: verdict.reason },
        meta,
      ),
    );
    return { denied: verdict };
  }

  /** Counts a wrong second factor against the throttle and the handle; audits it. */
  async function secondFactorFailureIn(
    trx: Transaction<IdentityDB>,
    pending: IdentityDB['pending_logins'],
    subjects: ThrottleSubjects,
    actor: { kind: 'anonymous' | ReturnType<typeof auditActorKind>; id: string },
    tenant: string | null,
    reason: string,
    meta: AuditMeta,
  ): Promise<'refused'> {
    const at = now().toISOString();
    const { locked } = await throttle.recordFailureIn(trx, subjects);
    const failures = pending.failures + 1;
    await trx
      .updateTable('pending_logins')
      .set({ failures, used_at: failures >= maxHandleFailures ? at : null })
      .where('handle_hash', '=', pending.handle_hash)
      .execute();
    await appendAuditEvent(
      trx,
      identityEvent(
        actor,
        { at, tenant, action: 'auth.login', outcome: 'failure' },
        { step: 'second-factor', reason, ...(pending.person ? { personId: pending.person } : {}) },
        meta,
      ),
    );
    if (locked) await auditLockout(trx, pending.person, tenant, meta);
    return 'refused';
  }

  async function auditLockout(
    trx: Transaction<IdentityDB>,
    personId: string | null,
    tenant: string | null,
    meta: AuditMeta,
  ): Promise<void> {
    await appendAuditEvent(
      trx,
      identityEvent(
        { kind: 'system', id: 'login-throttle' },
        { at: now().toISOString(), tenant, action: 'auth.lockout', outcome: 'success' },
        personId ? { personId } : { reason: 'unknown-account' },
        meta,
      ),
    );
  }

  /** The live pending login of a handle, read outside a write; undefined when none. */
  async function livePending(handle: string): Promise<IdentityDB['pending_logins'] | undefined> {
    if (typeof handle !== 'string' || !HANDLE_PATTERN.test(handle)) return undefined;
    const pending = await control.db
      .selectFrom('pending_logins')
      .selectAll()
      .where('handle_hash', '=', sha256(handle))
      .executeTakeFirst();
    if (!pending || pending.used_at !== null || Date.parse(pending.expires_at) <= now().getTime())
      return undefined;
    return pending;
  }

  /** The proof a WebAuthn assertion amounts to: verified, or refused (never thrown from here). */
  async function webauthnProof(verify: () => Promise<{ credentialId: string; counter: number }>) {
    try {
      const signIn = await verify();
      return { webauthnVerified: { credentialId: signIn.credentialId, signCount: signIn.counter } };
    } catch (err) {
      if (err instanceof WebAuthnRefusedError) return REFUSED_WEBAUTHN;
      throw err;
    }
  }

  const ceremonyOf = (pending: IdentityDB['pending_logins']) => `login:${pending.handle_hash}`;

  const service: LoginService = {
    changePassword: createPasswordChange({ control, now, sessions, throttle }),

    async webauthnLoginOptions(handle, meta = {}) {
      const pending = await livePending(handle);
      if (!pending || !options.webauthn) {
        // Audited and refused (it cannot succeed) by the one path every bad handle takes.
        await service.completeLogin(handle, REFUSED_WEBAUTHN, meta);
        throw unauthenticated();
      }
      return options.webauthn.beginCeremonyAuthentication(ceremonyOf(pending));
    },

    async completeWebauthnLogin(handle, response, meta = {}) {
      const pending = await livePending(handle);
      const webauthn = options.webauthn;
      const proof =
        pending && webauthn
          ? await webauthnProof(() =>
              webauthn.finishCeremonyAuthentication(ceremonyOf(pending), pending.person, response),
            )
          : REFUSED_WEBAUTHN;
      return service.completeLogin(handle, proof, meta);
    },

    async webauthnReauthenticationOptions(principal) {
      if (!options.webauthn) throw unauthenticated();
      return options.webauthn.beginAuthentication(principal.personId);
    },

    async reauthenticateWithWebauthn(principal, response, meta = {}) {
      const webauthn = options.webauthn;
      const proof = webauthn
        ? await webauthnProof(() => webauthn.finishAuthentication(principal.personId, response))
        : REFUSED_WEBAUTHN;
      return service.reauthenticate(principal, proof, meta);
    },

    async beginLogin(input) {
      const meta: AuditMeta = {
        sourceAddress: input.address,
        userAgent: input.userAgent,
        requestId: input.requestId,
      };
      const side: Side = input.side === 'customer' ? 'customer' : 'operator';
      const tenant = side === 'customer' && typeof input.tenant === 'string' ? input.tenant : null;
      let email: string | undefined;
      try {
        email = normaliseEmail(input.email);
      } catch {
        email = undefined;
      }
      const typed = email ?? (typeof input.email === 'string' ? input.email.slice(0, 320).toLowerCase() : '');
      const subjects: ThrottleSubjects = {
        account: accountSubject(side, tenant, typed),
        address: input.address,
      };

      const early = await throttle.check(subjects);
      if (!early.allowed) {
        await control.write((trx) => auditThrottled(trx, early, 'password', meta));
        throw rateLimited(early.retryAfterMs);
      }

      let lookup = control.db
        .selectFrom('people')
        .selectAll()
        .where('side', '=', side)
        .where('email', '=', email ?? '')
        .where('removed_at', 'is', null);
      lookup = tenant === null ? lookup.where('tenant', 'is', null) : lookup.where('tenant', '=', tenant);
      const row =
        email === undefined || (side === 'customer' && tenant === null)
          ? undefined
          : await lookup.executeTakeFirst();
      const passwordOk = await verifyPassword(row?.password_hash ?? (await dummy()), input.password);
      const reason =
        row === undefined
          ? 'unknown-account'
          : row.password_hash === null || !passwordOk
            ? 'wrong-password'
            : row.disabled_at !== null
              ? 'disabled'
              : row.enrolled_at === null
                ? 'not-enrolled'
                : undefined;
      const verifiedHash = reason === undefined ? row?.password_hash : null;
      const rehashed =
        verifiedHash && needsRehash(verifiedHash) ? await hashPassword(input.password) : undefined;

      const handle = newToken();
      const at = now();
      const expiresAt = new Date(at.getTime() + pendingMs).toISOString();
      const result = await control.write(async (trx): Promise<Denied | 'ok'> => {
        const verdict = await throttle.checkIn(trx, subjects);
        if (!verdict.allowed) return auditThrottled(trx, verdict, 'password', meta);
        await trx.deleteFrom('pending_logins').where('expires_at', '<', at.toISOString()).execute();
        await trx
          .insertInto('pending_logins')
          .values({
            handle_hash: sha256(handle),
            person: reason === undefined && row ? row.id : null,
            account_subject: subjects.account,
            address: input.address.slice(0, 64),
            created_at: at.toISOString(),
            expires_at: expiresAt,
            failures: 0,
            used_at: null,
          })
          .execute();
        const actor = row ? { kind: auditActorKind(row.role), id: row.id } : anonymous;
        if (reason !== undefined) {
          const { locked } = await throttle.recordFailureIn(trx, subjects);
          await appendAuditEvent(
            trx,
            identityEvent(
              actor,
              { at: at.toISOString(), tenant: row?.tenant ?? null, action: 'auth.login', outcome: 'failure' },
              { step: 'password', reason, ...(row ? { personId: row.id } : {}) },
              meta,
            ),
          );
          if (locked) await auditLockout(trx, row?.id ?? null, row?.tenant ?? null, meta);
        } else {
          if (rehashed && row && verifiedHash) {
            await trx
              .updateTable('people')
              .set({ password_hash: rehashed })
              .where('id', '=', row.id)
              .where('password_hash', '=', verifiedHash)
              .execute();
          }
          await appendAuditEvent(
            trx,
            identityEvent(
              actor,
              {
                at: at.toISOString(),
                tenant: row?.tenant ?? null,
                action: 'auth.password',
                outcome: 'success',
              },
              { step: 'password', personId: row?.id, ...(rehashed ? { rehashed: true } : {}) },
              meta,
            ),
          );
        }
        return 'ok';
      });
      if (result !== 'ok') throw rateLimited(result.denied.retryAfterMs);
      return { handle, expiresAt, next: 'second-factor', factors: SECOND_FACTOR_KINDS };
    },

    async completeLogin(handle, proof, meta = {}) {
      const key = checkFactorKey(await factorKey());
      const hash = typeof handle === 'string' && HANDLE_PATTERN.test(handle) ? sha256(handle) : undefined;
      const result = await control.write(async (trx): Promise<Denied | 'refused' | NewSession> => {
        const at = now();
        const pending =
          hash === undefined
            ? undefined
            : await trx
                .selectFrom('pending_logins')
                .selectAll()
                .where('handle_hash', '=', hash)
                .executeTakeFirst();
        if (!pending || pending.used_at !== null || Date.parse(pending.expires_at) <= at.getTime()) {
          await appendAuditEvent(
            trx,
            identityEvent(
              anonymous,
              { at: at.toISOString(), tenant: null, action: 'auth.login', outcome: 'failure' },
              { step: 'second-factor', reason: pending ? 'handle-spent-or-expired' : 'unknown-handle' },
              meta,
            ),
          );
          return 'refused';
        }
        const subjects = { account: pending.account_subject, address: pending.address };
        const verdict = await throttle.checkIn(trx, subjects);
        if (!verdict.allowed) return auditThrottled(trx, verdict, 'second-factor', meta);
        const person =
          pending.person === null
            ? undefined
            : await trx.selectFrom('people').selectAll().where('id', '=', pending.person).executeTakeFirst();
        if (
          !person ||
          person.disabled_at !== null ||
          person.removed_at !== null ||
          person.enrolled_at === null
        ) {
          const actor = person ? { kind: auditActorKind(person.role), id: person.id } : anonymous;
          return secondFactorFailureIn(
            trx,
            pending,
            subjects,
            actor,
            person?.tenant ?? null,
            'password-step-failed',
            meta,
          );
        }
        const actor = { kind: auditActorKind(person.role), id: person.id };
        const check = await verifySecondFactorIn(trx, {
          personId: person.id,
          proof,
          factorKey: key,
          now: at,
        });
        if (!check.ok)
          return secondFactorFailureIn(trx, pending, subjects, actor, person.tenant, check.reason, meta);
        const spent = await trx
          .updateTable('pending_logins')
          .set({ used_at: at.toISOString() })
          .where('handle_hash', '=', pending.handle_hash)
          .where('used_at', 'is', null)
          .executeTakeFirst();
        // A racing login (another node) spent the handle first: undo this job's writes, refuse.
        if (spent.numUpdatedRows !== 1n) throw unauthenticated();
        await throttle.recordSuccessIn(trx, pending.account_subject);
        const created = await sessions.createIn(trx, {
          personId: person.id,
          side: person.side,
          tenant: person.tenant,
          factors: ['password', check.kind],
          fresh2faAt: at.toISOString(),
          address: meta.sourceAddress ?? pending.address,
          userAgent: meta.userAgent ?? null,
        });
        await appendAuditEvent(
          trx,
          identityEvent(
            actor,
            { at: at.toISOString(), tenant: person.tenant, action: 'auth.login', outcome: 'success' },
            { personId: person.id, sessionId: created.session.id, factor: check.kind },
            meta,
          ),
        );
        return created;
      });
      if (result === 'refused') throw unauthenticated();
      if ('denied' in result) throw rateLimited(result.denied.retryAfterMs);
      return result;
    },

    async reauthenticate(principal, proof, meta = {}) {
      const key = checkFactorKey(await factorKey());
      const result = await control.write(async (trx): Promise<Denied | 'refused' | NewSession> => {
        const at = now();
        const session = await trx
          .selectFrom('sessions')
          .selectAll()
          .where('id', '=', principal.sessionId)
          .executeTakeFirst();
        const actor = { kind: auditActorKind(principal.role), id: principal.personId };
        const refuse = async (reason: string) => {
          await appendAuditEvent(
            trx,
            identityEvent(
              actor,
              {
                at: at.toISOString(),
                tenant: principal.tenant,
                action: 'auth.reauthenticate',
                outcome: 'failure',
              },
              { sessionId: principal.sessionId, reason },
              meta,
            ),
          );
          return 'refused' as const;
        };
        const live =
          session !== undefined &&
          session.person === principal.personId &&
          session.revoked_at === null &&
          Date.parse(session.idle_expires_at) > at.getTime() &&
          Date.parse(session.absolute_expires_at) > at.getTime();
        const person = await trx
          .selectFrom('people')
          .selectAll()
          .where('id', '=', principal.personId)
          .executeTakeFirst();
        if (!live || !session || !person || (await resolveActorIn(trx, principal)) === undefined) {
          return refuse('session-not-live');
        }
        const subjects = {
          account: accountSubject(person.side, person.tenant, person.email),
          address: meta.sourceAddress ?? session.address ?? 'unknown',
        };
        const verdict = await throttle.checkIn(trx, subjects);
        if (!verdict.allowed) return auditThrottled(trx, verdict, 'reauthenticate', meta);
        const check = await verifySecondFactorIn(trx, {
          personId: person.id,
          proof,
          factorKey: key,
          now: at,
        });
        if (!check.ok) {
          await throttle.recordFailureIn(trx, subjects);
          return refuse(check.reason);
        }
        await throttle.recordSuccessIn(trx, subjects.account);
        await trx
          .updateTable('sessions')
          .set({ revoked_at: at.toISOString(), revoke_reason: 'reauthenticated' })
          .where('id', '=', session.id)
          .execute();
        const factors = [
          ...new Set<SessionFactor>([...(JSON.parse(session.factors) as SessionFactor[]), check.kind]),
        ];
        const created = await sessions.createIn(trx, {
          personId: person.id,
          side: person.side,
          tenant: person.tenant,
          factors,
          fresh2faAt: at.toISOString(),
          address: meta.sourceAddress ?? session.address,
          userAgent: meta.userAgent ?? session.user_agent,
          absoluteExpiresAt: session.absolute_expires_at,
        });
        await appendAuditEvent(
          trx,
          identityEvent(
            actor,
            {
              at: at.toISOString(),
              tenant: person.tenant,
              action: 'auth.reauthenticate',
              outcome: 'success',
            },
            { previousSessionId: session.id, sessionId: created.session.id, factor: check.kind },
            meta,
          ),
        );
        return created;
      });
      if (result === 'refused') throw unauthenticated();
      if ('denied' in result) throw rateLimited(result.denied.retryAfterMs);
      return result;
    },
  };
  return afterFactorKey(factorKey, service);
}
