/**
 * The request pipeline: its layers run in the declared order, each does its job, and the audit
 * layer fails closed. Driven through Fastify's inject() against the test routes (fixtures/).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { TresorError } from '../../src/errors.ts';
import { newRequestId } from '../../src/http/layers/request-id.ts';
import { LAYERS } from '../../src/http/pipeline.ts';
import { bearer, buildTestApp, NOW, problemOf, session, TOKENS } from './fixtures/harness.ts';

const thing = { name: 'lamp', count: 2 };

describe('pipeline order', () => {
  it('runs request id, rate limit, authentication, second factor, authorization, validation, audit, then the handler', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: bearer('tenantA'),
      payload: thing,
    });
    assert.equal(res.statusCode, 201);
    assert.deepEqual(h.layers, [...LAYERS]);
    assert.deepEqual(h.world.log, ['authorize', 'handler']);
  });

  it('stops at the first layer that refuses: nothing after it runs', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ method: 'POST', url: '/v1/test/things', payload: thing });
    assert.equal(res.statusCode, 401);
    assert.deepEqual(h.layers, ['request-id-and-limits', 'rate-limit', 'authentication']);
    assert.deepEqual(h.world.log, []);
  });

  it('authorizes before it reads the body: an unauthorized caller makes the server parse nothing', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: { ...bearer('tenantAReadOnly'), 'content-type': 'application/json' },
      payload: '{"not json',
    });
    assert.equal(res.statusCode, 403);
    assert.equal(problemOf(res).code, 'TRESOR_ERR_FORBIDDEN');
  });

  it('refuses an oversized declared body before authentication', async () => {
    const h = await buildTestApp({ config: { bodyLimit: 1024 } });
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: { 'content-type': 'application/json', 'content-length': '5000' },
      payload: 'x'.repeat(5000),
    });
    assert.equal(res.statusCode, 413);
    assert.deepEqual(h.authenticateCalls, []);
  });
});

describe('request id', () => {
  it('generates a random id and echoes it in X-Request-Id and the problem', async () => {
    const h = await buildTestApp();
    const a = await h.app.inject({ url: '/v1/test/things' });
    const b = await h.app.inject({ url: '/v1/test/things' });
    const id = String(a.headers['x-request-id']);
    assert.match(id, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(id, b.headers['x-request-id']);
    assert.equal(problemOf(a).requestId, id);
  });

  it('draws ids from a pool of random bytes without ever repeating one, across refills', () => {
    const ids = new Set<string>();
    const count = 3 * 1024 + 7; // more than three 16 KiB pools of 16-byte ids
    for (let i = 0; i < count; i++) {
      const id = newRequestId();
      assert.match(id, /^[A-Za-z0-9_-]{22}$/);
      assert.equal(Buffer.from(id, 'base64url').length, 16);
      ids.add(id);
    }
    assert.equal(ids.size, count);
  });

  it('keeps a caller id of safe characters', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/healthz', headers: { 'x-request-id': 'lb-7f3a.42_x' } });
    assert.equal(res.headers['x-request-id'], 'lb-7f3a.42_x');
  });

  it('replaces a caller id that is too long or has other characters, never echoing it', async () => {
    const h = await buildTestApp();
    for (const offered of ['a'.repeat(65), 'abc def', '<script>', 'id;drop', 'é', '"quoted"', '']) {
      const res = await h.app.inject({ url: '/healthz', headers: { 'x-request-id': offered } });
      assert.notEqual(res.headers['x-request-id'], offered);
      assert.match(String(res.headers['x-request-id']), /^[A-Za-z0-9_-]{22}$/);
    }
  });
});

describe('authentication', () => {
  it('gives one 401 for a missing header, another scheme, a malformed and an unknown token', async () => {
    const h = await buildTestApp();
    const answers = [];
    for (const authorization of [
      undefined,
      `Basic ${Buffer.from('a:b').toString('base64')}`,
      'Bearer',
      'Bearer a b',
      `Bearer ${'x'.repeat(600)}`,
      'Bearer tresor_ak_000000000000000000000000_unknown',
    ]) {
      const res = await h.app.inject({
        url: '/v1/test/things',
        headers: authorization ? { authorization } : {},
      });
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="tresor"');
      const { requestId: _, ...problem } = problemOf(res);
      answers.push(JSON.stringify(problem));
    }
    assert.equal(new Set(answers).size, 1);
    assert.deepEqual(h.authenticateCalls, ['tresor_ak_000000000000000000000000_unknown']);
  });

  it('accepts the scheme name in any case (RFC 9110 §11.1)', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      url: '/v1/test/things',
      headers: { authorization: `bEaReR ${TOKENS.tenantA}` },
    });
    assert.equal(res.statusCode, 200);
  });

  it('treats an authenticator outage as an outage (5xx), not as a wrong key', async () => {
    const down = await buildTestApp({
      authenticate: async () => {
        throw new TresorError('TRESOR_ERR_UNAVAILABLE', 'control store unreachable');
      },
    });
    const res = await down.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') });
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['www-authenticate'], undefined);
    const broken = await buildTestApp({
      authenticate: async () => {
        throw new Error('SQLITE_CORRUPT at /var/lib/tresor/control.db');
      },
    });
    const crash = await broken.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') });
    assert.equal(crash.statusCode, 500);
    assert.doesNotMatch(crash.body, /SQLITE|var\/lib/);
  });
});

describe('second factor', () => {
  it('refuses API keys and operator tokens on a step-up route, whatever else they may do', async () => {
    const h = await buildTestApp();
    for (const who of ['tenantA', 'operatorToken'] as const) {
      const res = await h.app.inject({ method: 'POST', url: '/v1/test/step-up', headers: bearer(who) });
      assert.equal(res.statusCode, 403);
      assert.match(problemOf(res).detail ?? '', /second factor/);
    }
    assert.deepEqual(h.world.log, []);
  });

  it('asks a session whose second factor is not recent to pass it again (RFC 9470 challenge)', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/step-up',
      headers: session('adminStale2fa'),
    });
    assert.equal(res.statusCode, 401);
    assert.equal(problemOf(res).code, 'TRESOR_ERR_SECOND_FACTOR_REQUIRED');
    assert.match(String(res.headers['www-authenticate']), /error="insufficient_user_authentication"/);
    assert.deepEqual(h.world.log, []);
  });

  it('lets a session with a fresh second factor through', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/step-up',
      headers: session('adminFresh2fa'),
    });
    assert.equal(res.statusCode, 204);
    assert.equal(res.body, '');
    assert.deepEqual(h.world.log, ['handler']);
  });

  it('does not ask for it on routes that do not declare it', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/v1/test/operator-only', headers: bearer('operatorToken') });
    assert.equal(res.statusCode, 200);
  });
});

describe('authorization', () => {
  it('refuses a caller of the wrong kind before the route is asked (operator token on tenant data)', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/v1/test/things', headers: bearer('operatorToken') });
    assert.equal(res.statusCode, 403);
    const other = await h.app.inject({ url: '/v1/test/operator-only', headers: bearer('tenantA') });
    assert.equal(other.statusCode, 403);
    assert.deepEqual(h.world.log, []);
  });

  it('admits an operator token only on the routes of its scope', async () => {
    const token = 'tresor_op_eeeeeeeeeeeeeeeeeeeeeeee_other-scope';
    const h = await buildTestApp({
      authenticate: async (presented) => {
        if (presented !== token) throw new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'unknown');
        return {
          kind: 'operator-token',
          tokenId: 'op_eeeeeeeeeeeeeeeeeeeeeeee',
          personId: 'psn_adm_1',
          scope: 'jobs:read',
        };
      },
    });
    // /v1/test/operator-only admits tokens of scope tenants:read (the harness's operatorToken).
    const res = await h.app.inject({
      url: '/v1/test/operator-only',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(res.statusCode, 403);
    assert.equal(problemOf(res).code, 'TRESOR_ERR_FORBIDDEN');
    assert.deepEqual(h.world.log, []);
    const own = await buildTestApp();
    const ok = await own.app.inject({ url: '/v1/test/operator-only', headers: bearer('operatorToken') });
    assert.equal(ok.statusCode, 200);
    assert.deepEqual(own.world.log, ['handler']);
  });

  it("applies the route's own rule", async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: bearer('tenantAReadOnly'),
      payload: thing,
    });
    assert.equal(res.statusCode, 403);
    assert.deepEqual(h.world.log, ['authorize']);
    assert.equal(h.world.things.size, 0);
  });
});

describe('audit', () => {
  it('records a success with who, what, where, filled in by the pipeline', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: { ...bearer('tenantA'), 'user-agent': 'sdk/1.0', 'x-request-id': 'req-1' },
      payload: thing,
    });
    assert.equal(res.statusCode, 201);
    assert.deepEqual(h.audit.events, [
      {
        at: NOW.toISOString(),
        actor: { kind: 'api-key', id: 'ak_aaaaaaaaaaaaaaaaaaaaaaaa' },
        tenant: 'tn_a',
        action: 'thing.create',
        outcome: 'success',
        requestId: 'req-1',
        sourceAddress: '127.0.0.1',
        userAgent: 'sdk/1.0',
        target: { recordIds: ['th_1'] },
      },
    ]);
  });

  it('records a denial after authentication itself, naming the route and the problem', async () => {
    const h = await buildTestApp();
    await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: bearer('tenantAReadOnly'),
      payload: thing,
    });
    assert.equal(h.audit.events.length, 1);
    const [event] = h.audit.events;
    assert.equal(event?.outcome, 'denied');
    assert.equal(event?.action, 'thing.create');
    assert.deepEqual(event?.target, { route: 'POST /v1/test/things', problem: 'TRESOR_ERR_FORBIDDEN' });
  });

  it('records a failure after validation with the validated path parameters', async () => {
    const h = await buildTestApp();
    await h.app.inject({ url: '/v1/test/things/th_404', headers: bearer('tenantA') });
    assert.equal(h.audit.events[0]?.outcome, 'failure');
    assert.deepEqual(h.audit.events[0]?.target, {
      route: 'GET /v1/test/things/:id',
      problem: 'TRESOR_ERR_NOT_FOUND',
      params: { id: 'th_404' },
    });
  });

  it('records a refused body after authorization as a failure, not a denial', async () => {
    const h = await buildTestApp();
    await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: { ...bearer('tenantA'), 'content-type': 'text/plain' },
      payload: 'lamp',
    });
    assert.equal(h.audit.events[0]?.outcome, 'failure');
    assert.equal(h.audit.events[0]?.target?.problem, 'TRESOR_ERR_UNSUPPORTED_MEDIA_TYPE');
  });

  it('records nothing for a failed authentication (no durable write for strangers)', async () => {
    const h = await buildTestApp();
    await h.app.inject({ url: '/v1/test/things', headers: { authorization: 'Bearer nope' } });
    assert.deepEqual(h.audit.events, []);
  });

  it('answers 503 and never runs the handler when a denial cannot be recorded', async () => {
    const h = await buildTestApp();
    h.audit.failing = true;
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: bearer('tenantAReadOnly'),
      payload: thing,
    });
    assert.equal(res.statusCode, 503);
    const problem = problemOf(res);
    assert.equal(problem.code, 'TRESOR_ERR_UNAVAILABLE');
    assert.equal(problem.detail, undefined);
    assert.doesNotMatch(res.body, /disk full|var\/lib/);
    assert.ok(!h.world.log.includes('handler'));
  });

  it('answers 503 and serves nothing when the success event cannot be recorded', async () => {
    const h = await buildTestApp();
    h.world.things.set('th_9', { id: 'th_9', tenant: 'tn_a', name: 'secret-name', count: 1, version: 1 });
    h.audit.failing = true;
    const res = await h.app.inject({ url: '/v1/test/things/th_9', headers: bearer('tenantA') });
    assert.equal(res.statusCode, 503);
    assert.doesNotMatch(res.body, /secret-name/);
    const create = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: bearer('tenantA'),
      payload: thing,
    });
    assert.equal(create.statusCode, 503);
    assert.equal(h.world.things.size, 1, 'the change was not made');
  });

  it('refuses to serve what a handler returns without having recorded its audit event', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/v1/test/forgets-audit', headers: bearer('tenantA') });
    assert.equal(res.statusCode, 500);
    assert.doesNotMatch(res.body, /customer data/);
    assert.equal(problemOf(res).code, 'TRESOR_ERR_INTERNAL');
    assert.equal(h.audit.events[0]?.outcome, 'failure');
  });

  it('lets a handler build the event and mark it recorded itself', async () => {
    const h = await buildTestApp();
    h.world.things.set('th_1', { id: 'th_1', tenant: 'tn_a', name: 'lamp', count: 1, version: 1 });
    const res = await h.app.inject({
      method: 'PATCH',
      url: '/v1/test/things/th_1',
      headers: { ...bearer('tenantA'), 'if-match': '"1"' },
      payload: { count: 5 },
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers.etag, '"2"');
    assert.ok(h.world.log.includes('event:thing.update:ak_aaaaaaaaaaaaaaaaaaaaaaaa'));
  });
});

describe('logs', () => {
  it('record each request and failure without tokens, bodies or query values', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => lines.push(line) });
    const h = await buildTestApp({ logger });
    await h.app.inject({
      method: 'POST',
      url: '/v1/test/things?q=query-value-secret',
      headers: { ...bearer('tenantA'), cookie: 'session=cookie-secret' },
      payload: { name: 'body-secret' },
    });
    await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: bearer('tenantA'),
      payload: { name: 'body-secret' },
    });
    await h.app.inject({ url: '/v1/test/crash', headers: bearer('tenantA') });
    const text = lines.join('');
    assert.match(text, /"route":"\/v1\/test\/things","status":201/);
    assert.match(text, /"code":"TRESOR_ERR_INTERNAL"/);
    for (const secret of [
      TOKENS.tenantA,
      'tenant-a-secret',
      'body-secret',
      'query-value-secret',
      'cookie-secret',
    ]) {
      assert.ok(!text.includes(secret), `the log holds ${secret}`);
    }
  });
});

describe('responses', () => {
  it('serialises through the declared schema: undeclared fields never leave', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: bearer('tenantA'),
      payload: thing,
    });
    assert.deepEqual(res.json(), { id: 'th_1', name: 'lamp', count: 2, version: 1 });
    assert.equal(res.headers.location, '/v1/test/things/th_1');
  });

  it('sends security headers and Cache-Control: no-store on data, errors and probes', async () => {
    const h = await buildTestApp();
    for (const res of [
      await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') }),
      await h.app.inject({ url: '/v1/test/things' }),
      await h.app.inject({ url: '/healthz' }),
      await h.app.inject({ url: '/nowhere' }),
    ]) {
      assert.equal(res.headers['cache-control'], 'no-store');
      assert.match(String(res.headers['strict-transport-security']), /^max-age=(\d+); includeSubDomains$/);
      const maxAge = Number(/max-age=(\d+)/.exec(String(res.headers['strict-transport-security']))?.[1]);
      assert.ok(maxAge >= 31_536_000);
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
      assert.equal(res.headers['referrer-policy'], 'no-referrer');
      assert.match(String(res.headers['content-security-policy']), /frame-ancestors 'none'/);
      assert.match(String(res.headers['content-security-policy']), /default-src 'none'/);
      assert.equal(res.headers['x-powered-by'], undefined);
      // Exactly what @fastify/helmet sent with this policy before the headers were computed once.
      const security = Object.fromEntries(
        Object.entries(res.headers).filter(([name]) =>
          /^(content-security-policy|cross-origin-|origin-agent-cluster|referrer-policy|strict-transport-security|x-)/.test(
            name,
          ),
        ),
      );
      delete security['x-request-id'];
      assert.deepEqual(security, {
        'content-security-policy':
          "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'",
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-resource-policy': 'same-origin',
        'origin-agent-cluster': '?1',
        'referrer-policy': 'no-referrer',
        'strict-transport-security': 'max-age=63072000; includeSubDomains',
        'x-content-type-options': 'nosniff',
        'x-dns-prefetch-control': 'off',
        'x-download-options': 'noopen',
        'x-frame-options': 'DENY',
        'x-permitted-cross-domain-policies': 'none',
        'x-xss-protection': '0',
      });
    }
  });

  it('sends the same security headers on errors Fastify answers before any hook runs', async () => {
    const h = await buildTestApp();
    const normal = await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') });
    // A URL that does not decode and an over-long path parameter: frameworkErrorHandler answers them.
    for (const url of ['/v1/test/things/%zz', `/v1/test/things/th_${'a'.repeat(300)}`]) {
      const res = await h.app.inject({ url, headers: bearer('tenantA') });
      assert.equal(res.statusCode, 400, url);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/, url);
      const unlike = (name: string) =>
        ['date', 'content-type', 'content-length', 'x-request-id'].includes(name);
      const headersOf = (r: typeof res) =>
        Object.fromEntries(Object.entries(r.headers).filter(([name]) => !unlike(name)));
      assert.deepEqual(headersOf(res), headersOf(normal), url);
      assert.match(String(res.headers['x-request-id']), /^[A-Za-z0-9_-]{22}$/);
    }
  });
});
