/**
 * Methods a route does not declare, and cross-origin headers (docs/security/asvs.md 3.4.2, 4.1.4,
 * 13.4.4): TRACE never echoes the request (cross-site tracing), an unknown method on a known
 * path is 405 with Allow, and no answer — not even to a CORS preflight — carries an
 * Access-Control-* header, so a browser on another origin can read nothing Tresor answers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearer, buildTestApp, problemOf } from './fixtures/harness.ts';

const KNOWN_PATH = '/v1/test/things/th_1';

describe('methods a route does not declare', () => {
  for (const method of ['TRACE', 'PROPFIND', 'CONNECT', 'SEARCH'] as const) {
    it(`answers ${method} on a known path without echoing the request`, async () => {
      const h = await buildTestApp();
      const res = await h.app.inject({
        // inject types list Fastify's methods only; the server receives whatever the client sends.
        method: method as 'GET',
        url: KNOWN_PATH,
        headers: { ...bearer('tenantA'), 'x-echo-probe': 'tresor-xst-probe' },
      });
      assert.ok(
        res.statusCode === 405 || res.statusCode === 404 || res.statusCode === 400,
        `${res.statusCode}`,
      );
      assert.doesNotMatch(res.body, /tresor-xst-probe|authorization/i);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      if (res.statusCode === 405) assert.equal(problemOf(res).code, 'TRESOR_ERR_METHOD_NOT_ALLOWED');
    });
  }
});

describe('cross-origin headers', () => {
  it('sends no Access-Control-* header, to a preflight or to a request with a foreign Origin', async () => {
    const h = await buildTestApp();
    const answers = [
      await h.app.inject({
        method: 'OPTIONS',
        url: KNOWN_PATH,
        headers: {
          origin: 'https://attacker.example',
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'authorization',
        },
      }),
      await h.app.inject({
        method: 'GET',
        url: KNOWN_PATH,
        headers: { ...bearer('tenantA'), origin: 'https://attacker.example' },
      }),
      await h.app.inject({ method: 'GET', url: '/healthz', headers: { origin: 'https://attacker.example' } }),
    ];
    for (const res of answers) {
      const cors = Object.keys(res.headers).filter((name) => name.startsWith('access-control-'));
      assert.deepEqual(cors, [], `status ${res.statusCode}`);
    }
  });
});
