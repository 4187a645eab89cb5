/**
 * Every 429 says when to come back in a `Retry-After` header (RFC 9110 §10.2.3, RFC 6585 §4), as
 * whole seconds rounded up — not only in its body — and so does a 503 that knows its wait. Over
 * each throttled path of the pipeline: the per-address and per-credential rate limits, and the
 * sign-in throttle's refusal as identity raises it (login-throttle.ts `rateLimited`), which the
 * error handler answers for every sign-in route. test/e2e/transport-signin.test.ts proves the same
 * against the real sign-in routes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Type from 'typebox';
import { TresorError } from '../../src/errors.ts';
import { defineRoute, type RouteModule } from '../../src/http/route.ts';
import { rateLimited } from '../../src/identity/login-throttle.ts';
import { bearer, buildTestApp } from './fixtures/harness.ts';

/** Routes that fail the way a domain does: a sign-in throttle's 429, a 503 with or without a wait. */
function failingRoutes(): RouteModule {
  const failing = (url: string, error: () => Error) =>
    defineRoute({
      method: 'GET',
      url,
      summary: 'Fails on purpose (test)',
      tags: ['test'],
      auth: 'api-key',
      secondFactor: false,
      authorize: () => {},
      audit: { action: 'thing.read' },
      schema: { response: { 200: Type.Object({}) } },
    }).handle(async () => {
      throw error();
    });
  return {
    name: 'failing',
    routes: [
      failing('/v1/test/throttled', () => rateLimited(1_500)),
      failing('/v1/test/throttled-long', () => rateLimited(14 * 60_000 + 1)),
      failing(
        '/v1/test/unavailable-for-a-while',
        () => new TresorError('TRESOR_ERR_UNAVAILABLE', 'busy', { retryAfterSeconds: 7 }),
      ),
      failing('/v1/test/unavailable', () => new TresorError('TRESOR_ERR_UNAVAILABLE', 'busy')),
    ],
  };
}

function retryAfterOf(res: { headers: Record<string, unknown> }): number {
  const value = String(res.headers['retry-after']);
  assert.match(value, /^[1-9]\d*$/, `Retry-After is whole seconds: ${value}`);
  return Number(value);
}

describe('Retry-After', () => {
  it('is on the 429 of the per-address rate limit', async () => {
    const h = await buildTestApp({ config: { rateLimit: { windowMs: 60_000, perAddress: 2, perKey: 100 } } });
    for (let i = 0; i < 2; i++) assert.equal((await h.app.inject({ url: '/healthz' })).statusCode, 200);
    const res = await h.app.inject({ url: '/healthz' });
    assert.equal(res.statusCode, 429);
    assert.ok(retryAfterOf(res) <= 60);
  });

  it('is on the 429 of the per-credential rate limit', async () => {
    const h = await buildTestApp({ config: { rateLimit: { windowMs: 60_000, perAddress: 100, perKey: 1 } } });
    await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') });
    const res = await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') });
    assert.equal(res.statusCode, 429);
    assert.ok(retryAfterOf(res) <= 60);
  });

  it('is on the 429 of the sign-in throttle, rounded up, agreeing with the body', async () => {
    const h = await buildTestApp({ routes: () => [failingRoutes()] });
    const res = await h.app.inject({ headers: bearer('tenantA'), url: '/v1/test/throttled' });
    assert.equal(res.statusCode, 429);
    assert.equal(retryAfterOf(res), 2);
    assert.equal(res.json<{ errors: { retryAfterSeconds: number } }>().errors.retryAfterSeconds, 2);
    const long = await h.app.inject({ headers: bearer('tenantA'), url: '/v1/test/throttled-long' });
    assert.equal(retryAfterOf(long), 14 * 60 + 1);
  });

  it('is on a 503 that knows its wait, and not on one that does not', async () => {
    const h = await buildTestApp({ routes: () => [failingRoutes()] });
    const known = await h.app.inject({ headers: bearer('tenantA'), url: '/v1/test/unavailable-for-a-while' });
    assert.equal(known.statusCode, 503);
    assert.equal(retryAfterOf(known), 7);
    assert.equal(known.json<Record<string, unknown>>().errors, undefined, 'no 5xx detail');
    const unknown = await h.app.inject({ headers: bearer('tenantA'), url: '/v1/test/unavailable' });
    assert.equal(unknown.statusCode, 503);
    assert.equal(unknown.headers['retry-after'], undefined);
  });
});
