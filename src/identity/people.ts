/**
 * Console accounts: who they are, their role, their password and their second factors.
 *
 * Life of an account:
 * 1. an admin creates it (accounts.ts) and receives a one-time enrolment token for the person;
 * 2. with that token the person sets a password, enrols a TOTP factor or a passkey, and only then is
 *    the account enrolled: it cannot log in before (enrolment.ts). Completing enrolment issues the
 *    first recovery codes, shown once;
 * 3. role changes, disabling and removal end the account's sessions and grants in the same commit
 *    (accounts.ts); factors are listed and revoked in second-factors.ts;
 * 4. a password reset (by an admin, or by the person with a recovery code) changes the password
 *    only: the second factors stay and login still needs one (account-recovery.ts).
 *
 * TOTP secrets are sealed under the factor key, which keyd gives (factor-key.ts); until it has,
 * every call answers keyd's error. Refusals of a permission are one TRESOR_ERR_FORBIDDEN whatever
 * the reason, audited as `denied`; every change is audited in its own commit.
 */
import type { Store } from '../store/types.ts';
import { createRecoveryService, type RecoveryService } from './account-recovery.ts';
import { type AccountService, type AccountServiceOptions, createAccountService } from './accounts.ts';
import { createEnrolmentService, type EnrolmentService } from './enrolment.ts';
import { afterFactorKey } from './factor-key.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { createLoginThrottle, type LoginThrottle, type LoginThrottleConfig } from './login-throttle.ts';
import { createSecondFactorService, type SecondFactorService } from './second-factors.ts';

// src/access takes these from here.
export { FRESH_2FA_MS } from './account-access.ts';
export type { PersonInfo } from './accounts.ts';

/** Everything the console does with accounts, as one service (the HTTP routes take it whole). */
export type PeopleService = AccountService & EnrolmentService & SecondFactorService & RecoveryService;

export interface PeopleServiceOptions {
  control: Store<IdentityDB>;
  now: () => Date;
  /** 32 bytes: seals TOTP secrets (AES-256-GCM); factor-key.ts. */
  factorKey: () => Promise<Buffer>;
  onAccessRemoved?: AccountServiceOptions['onAccessRemoved'];
  throttle?: LoginThrottle;
  throttleConfig?: Partial<LoginThrottleConfig>;
  /** The issuer in otpauth URIs. */
  issuer?: string;
  enrolmentTtlMs?: number;
}

export function createPeopleService(options: PeopleServiceOptions): PeopleService {
  const { control, now, factorKey, enrolmentTtlMs } = options;
  const throttle = options.throttle ?? createLoginThrottle({ control, now, config: options.throttleConfig });
  return afterFactorKey(factorKey, {
    ...createAccountService({ control, now, enrolmentTtlMs, onAccessRemoved: options.onAccessRemoved }),
    ...createEnrolmentService({ control, now, factorKey, issuer: options.issuer }),
    ...createSecondFactorService({ control, now }),
    ...createRecoveryService({ control, now, factorKey, throttle, enrolmentTtlMs }),
  });
}
