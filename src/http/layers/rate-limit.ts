/**
 * Layer 2: rate limiting, before authentication so that guessing credentials costs the guesser
 * too. Two budgets per window, both counted by @fastify/rate-limit's store:
 *
 * - per address — every request, authenticated or not, from one client address (IPv6 counted per
 *   /64, the smallest block a client usually holds; behind a load balancer the address comes from
 *   X-Forwarded-For only when the balancer is listed in `trustProxy`);
 * - per credential — requests bearing the same bearer token, keyed by an HMAC of the whole token
 *   under a per-process key. Not by the key id the token names: ids are public, and a flood of wrong
 *   secrets for someone's key id would otherwise spend that key's budget. A valid token maps to
 *   exactly one key, so for real keys this is the per-key limit.
 *
 * Over budget → 429 problem+json with Retry-After (RFC 9110 §10.2.3; RFC 6585 §4).
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TresorError } from '../../errors.ts';
import { bearerTokenOf } from './authentication.ts';

export interface RateLimitConfig {
  windowMs: number;
  perAddress: number;
  perKey: number;
}

const tokenKey = randomBytes(32);

function credentialBucket(token: string): string {
  return `key:${createHmac('sha256', tokenKey).update(token).digest('base64url')}`;
}

/** Needs @fastify/rate-limit registered on `app` (with `global: false`). */
export function rateLimit(app: FastifyInstance, config: RateLimitConfig) {
  const perAddress = app.createRateLimit({ max: config.perAddress, timeWindow: config.windowMs });
  const perKey = app.createRateLimit({
    max: config.perKey,
    timeWindow: config.windowMs,
    keyGenerator: (req) => credentialBucket(bearerTokenOf(req) ?? ''),
  });

  return async function rateLimitLayer(request: FastifyRequest): Promise<void> {
    const checks = [perAddress(request)];
    if (bearerTokenOf(request) !== undefined) checks.push(perKey(request));
    for (const result of await Promise.all(checks)) {
      if (!result.isAllowed && result.isExceeded) {
        // The error handler sets Retry-After from it (every 429 carries one), the body says it too.
        throw new TresorError(
          'TRESOR_ERR_RATE_LIMITED',
          'too many requests; retry after the time in Retry-After',
          {
            retryAfterSeconds: Math.max(1, result.ttlInSeconds),
          },
        );
      }
    }
  };
}
