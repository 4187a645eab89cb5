/**
 * Console accounts made through the real identity services (no HTTP): created by an admin, enrolled
 * with a password and a confirmed TOTP factor, and logged in with password and TOTP code.
 */
import assert from 'node:assert/strict';
import type { IdentityActor } from '../../src/identity/identity-actor.ts';
import type { LoginService } from '../../src/identity/login.ts';
import type { PeopleService } from '../../src/identity/people.ts';
import type { Role, Side } from '../../src/identity/roles.ts';
import type { NewSession } from '../../src/identity/sessions.ts';
import { totpCode } from './totp.ts';

export const ADMIN = { kind: 'operator-admin' as const, id: 'opr_000000000000000000000001' };
export const PASSWORD = 'correct horse battery staple';

export interface AccountServices {
  people: PeopleService;
  login: LoginService;
  now(): Date;
  advance(ms: number): void;
  /** Every secret handled here is added (tests prove none reaches the audit log). */
  secrets?: string[];
}

/**
 * Creates and enrols an account. The clock moves on a step after each TOTP code, so the next code
 * is not a replay.
 */
export async function enrolAccount(
  s: AccountServices,
  email: string,
  role: Role = 'support-agent',
  side: Side = 'operator',
  tenant?: string,
  by: IdentityActor = ADMIN,
) {
  const seen = (...values: string[]) => s.secrets?.push(...values);
  const { person, enrolmentToken } = await s.people.createPerson(by, { side, role, email, tenant });
  await s.people.setPassword(enrolmentToken, PASSWORD);
  const totp = await s.people.beginTotpEnrolment({ enrolmentToken });
  const confirm = totpCode(totp.secret, s.now());
  const done = await s.people.confirmTotpEnrolment({ enrolmentToken }, totp.factorId, confirm);
  assert.equal(done.enrolmentComplete, true);
  seen(enrolmentToken, totp.secret, confirm, ...(done.recoveryCodes ?? []));
  s.advance(30_000); // the confirmation code's step is spent
  const logIn = async (password = PASSWORD): Promise<NewSession> => {
    const pending = await s.login.beginLogin({ email, password, side, tenant, address: '192.0.2.1' });
    const code = totpCode(totp.secret, s.now());
    seen(pending.handle, code);
    const session = await s.login.completeLogin(pending.handle, { totp: code });
    seen(session.token, session.csrfToken);
    s.advance(30_000); // the next login needs the next step's code
    return session;
  };
  return {
    person,
    factorId: totp.factorId,
    secret: totp.secret,
    recoveryCodes: done.recoveryCodes ?? [],
    logIn,
  };
}

/** enrolAccount's arguments after the services. */
export type EnrolArgs = [email: string, role?: Role, side?: Side, tenant?: string, by?: IdentityActor];
