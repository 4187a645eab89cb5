/**
 * A cookie-authenticated request that can change state must come from the server's own origin
 * (OWASP CSRF Prevention Cheat Sheet, "Verifying Origin with standard headers"), on top of its
 * CSRF token: `Origin`, or when a browser sent none, `Sec-Fetch-Site` and `Referer`. A foreign or
 * opaque (`null`) origin, or none at all, is refused with 403 TRESOR_ERR_ORIGIN_REFUSED and the
 * handler never runs. Bearer-token requests are not cookie-borne, so no origin matters for them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearer, buildTestApp, SESSION_TOKENS, TEST_CSRF, TEST_ORIGIN } from './fixtures/harness.ts';

/** The session's cookie and CSRF token, and only the origin headers a test gives. */
function cookieRequest(headers: Record<string, string>): Record<string, string> {
  return {
    cookie: `__Host-tresor_session=${SESSION_TOKENS.adminFresh2fa}`,
    'x-csrf-token': TEST_CSRF,
    ...headers,
  };
}

async function stepUp(headers: Record<string, string>) {
  const h = await buildTestApp();
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/test/step-up',
    headers: cookieRequest(headers),
  });
  return { res, ran: h.world.log.includes('handler'), audit: h.audit.events };
}

async function refused(headers: Record<string, string>): Promise<void> {
  const { res, ran, audit } = await stepUp(headers);
  assert.equal(res.statusCode, 403, res.body);
  assert.equal(res.json<{ code: string }>().code, 'TRESOR_ERR_ORIGIN_REFUSED');
  assert.equal(ran, false, 'the handler did not run');
  assert.equal(audit.at(-1)?.outcome, 'denied', 'the refusal is audited');
}

async function allowed(headers: Record<string, string>): Promise<void> {
  const { res, ran } = await stepUp(headers);
  assert.equal(res.statusCode, 204, res.body);
  assert.equal(ran, true);
}

describe('origin of cookie-authenticated state changes', () => {
  it('takes the server’s own Origin', async () => {
    await allowed({ origin: TEST_ORIGIN });
  });

  it('refuses a foreign Origin despite a valid CSRF token', async () => {
    await refused({ origin: 'https://evil.example' });
    // Same host, another port or scheme: another origin (RFC 6454 §5).
    await refused({ origin: `${TEST_ORIGIN}:8444` });
    await refused({ origin: TEST_ORIGIN.replace('https:', 'http:') });
  });

  it('refuses the opaque origin null (sandboxed frames, data: URLs, some redirects)', async () => {
    await refused({ origin: 'null' });
  });

  it('falls back to Referer without Origin: same-origin allowed, foreign refused', async () => {
    await allowed({ referer: `${TEST_ORIGIN}/console/people` });
    await refused({ referer: 'https://evil.example/page' });
    await refused({ referer: 'not a url' });
  });

  it('falls back to Sec-Fetch-Site without Origin: same-origin allowed, anything else refused', async () => {
    await allowed({ 'sec-fetch-site': 'same-origin' });
    for (const site of ['same-site', 'cross-site', 'none']) await refused({ 'sec-fetch-site': site });
    // Both present: both must say it is our own.
    await refused({ 'sec-fetch-site': 'same-origin', referer: 'https://evil.example/' });
  });

  it('refuses a cookie-authenticated state change that names no origin at all', async () => {
    await refused({});
  });

  it('does not look at the origin of safe methods or of bearer-token requests', async () => {
    const h = await buildTestApp();
    const read = await h.app.inject({
      url: '/v1/test/operator-only',
      headers: cookieRequest({ origin: 'https://evil.example' }),
    });
    assert.notEqual(read.statusCode, 403, read.body);
    const created = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: { ...bearer('tenantA'), origin: 'https://evil.example', 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'x' }),
    });
    assert.equal(created.statusCode, 201, created.body);
  });
});
