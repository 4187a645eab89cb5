/**
 * Layer 4: second factor, for routes that declare `secondFactor: true` — opening an access grant,
 * approving one, changing who may log in. The caller must be a person in a session that passed a
 * second factor (TOTP, RFC 6238, or WebAuthn) within STEP_UP_MAX_AGE_MS: a step-up, so a stolen
 * session cookie alone does not reach these routes (NIST SP 800-63B §4.2: AAL2 needs two factors;
 * re-authentication before sensitive actions).
 *
 * API keys and operator tokens never satisfy it: each is one secret, copyable anywhere,
 * and no person proves presence with it. Such callers get 403 — no login would help them; a session
 * without a recent second factor gets 401 TRESOR_ERR_SECOND_FACTOR_REQUIRED with the RFC 9470 §3
 * `insufficient_user_authentication` challenge, telling the console to ask for the factor.
 *
 * A session's `fresh2faAt` is when it last passed a second factor: at login, or at a
 * re-authentication (POST /v1/auth/reauthenticate), which also gives the session a new token.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { TresorError } from '../../errors.ts';
import type { Principal } from '../../identity/principal.ts';

export const STEP_UP_MAX_AGE_MS = 5 * 60_000;

type Verdict = 'satisfied' | 'stale' | 'never';

export function secondFactorVerdict(principal: Principal, now: Date): Verdict {
  if (principal.kind !== 'session') return 'never';
  const at = principal.fresh2faAt === null ? Number.NaN : Date.parse(principal.fresh2faAt);
  const age = now.getTime() - at;
  return Number.isFinite(age) && age >= 0 && age <= STEP_UP_MAX_AGE_MS ? 'satisfied' : 'stale';
}

export function secondFactor(now: () => Date) {
  return async function secondFactorLayer(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const { route, principal } = request.tresor;
    if (!route?.secondFactor) return;
    const verdict = principal ? secondFactorVerdict(principal, now()) : 'never';
    if (verdict === 'never') {
      throw new TresorError(
        'TRESOR_ERR_FORBIDDEN',
        'this operation needs a person who passed a second factor; API keys and tokens cannot',
      );
    }
    if (verdict === 'stale') {
      reply.header('www-authenticate', 'Bearer realm="tresor", error="insufficient_user_authentication"');
      throw new TresorError('TRESOR_ERR_SECOND_FACTOR_REQUIRED', 'pass a second factor again, then retry');
    }
  };
}
