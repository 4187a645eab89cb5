/**
 * What the console identity routes take from a request and give back with every answer.
 *
 * The domain (src/identity) decides and audits everything — every success and every refusal is
 * written by the service in the same commit as its change — so each handler is: call the service,
 * mark the request audited (`audited`), shape the answer.
 */

import type { AuditMeta } from '../../identity/identity-actor.ts';
import type { SecondFactorProof } from '../../identity/second-factor-check.ts';
import type { RequestContext } from '../route.ts';

/** The parts of a request every identity handler uses, whatever its route declared. */
export type IdentityRequest = Pick<RequestContext, 'requestId' | 'sourceAddress' | 'userAgent' | 'audit'>;

/**
 * `Cache-Control: no-store` on every answer that carries a secret shown once (enrolment and reset
 * tokens, TOTP secrets, recovery codes, the CSRF token).
 */
export const NO_STORE = { 'cache-control': 'no-store' } as const;

export function metaOf(ctx: Pick<IdentityRequest, 'requestId' | 'sourceAddress' | 'userAgent'>): AuditMeta {
  return {
    requestId: ctx.requestId,
    sourceAddress: ctx.sourceAddress,
    ...(ctx.userAgent !== undefined ? { userAgent: ctx.userAgent } : {}),
  };
}

/** The identity service has audited its work once it answers: the request is audited then. */
export async function audited<T>(ctx: Pick<IdentityRequest, 'audit'>, work: Promise<T>): Promise<T> {
  const result = await work;
  ctx.audit.recorded = true;
  return result;
}

export function proofOf(body: { totp: string } | { recoveryCode: string }): SecondFactorProof {
  return 'totp' in body ? { totp: body.totp } : { recoveryCode: body.recoveryCode };
}
