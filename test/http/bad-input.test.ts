/**
 * Bad input gets a clear 4xx problem+json and changes nothing, and no input yields a 5xx: malformed
 * JSON, wrong types, oversized bodies and fields, deep nesting, prototype keys, duplicate keys,
 * unknown fields and parameters, other tenants' ids, invalid cursors, path tricks, wrong media
 * types, header tricks. Every case also checks that no handler ran and nothing was stored.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_RATE_LIMIT } from '../../src/config/server-config.ts';
import { NOT_FOUND_DETAIL } from '../../src/http/error-handler.ts';
import { bearer, buildTestApp, type Harness, problemOf, session, TOKENS } from './fixtures/harness.ts';

const json = { 'content-type': 'application/json' };

async function post(h: Harness, payload: string | Buffer, headers: Record<string, string> = json) {
  return h.app.inject({
    method: 'POST',
    url: '/v1/test/things',
    headers: { ...bearer('tenantA'), ...headers },
    payload,
  });
}

function assertNothingChanged(h: Harness): void {
  assert.equal(h.world.things.size, 0, 'nothing stored');
  assert.ok(!h.world.log.includes('handler'), 'no handler ran');
}

describe('malformed and hostile JSON bodies', () => {
  const cases: [string, string | Buffer, string][] = [
    ['truncated JSON', '{"name": "lamp"', 'TRESOR_ERR_MALFORMED_JSON'],
    ['trailing garbage', '{"name": "lamp"} x', 'TRESOR_ERR_MALFORMED_JSON'],
    ['single quotes', "{'name': 'lamp'}", 'TRESOR_ERR_MALFORMED_JSON'],
    ['a trailing comma', '{"name": "lamp",}', 'TRESOR_ERR_MALFORMED_JSON'],
    ['NaN', '{"name": "lamp", "count": NaN}', 'TRESOR_ERR_MALFORMED_JSON'],
    ['a raw control character in a string', '{"name": "la\u0001mp"}', 'TRESOR_ERR_MALFORMED_JSON'],
    [
      'invalid UTF-8',
      Buffer.from([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]),
      'TRESOR_ERR_MALFORMED_JSON',
    ],
    ['a duplicate key', '{"name": "lamp", "name": "bomb"}', 'TRESOR_ERR_BAD_REQUEST'],
    [
      'a duplicate key spelt with an escape',
      '{"name": "lamp", "n\\u0061me": "bomb"}',
      'TRESOR_ERR_BAD_REQUEST',
    ],
    ['a __proto__ key', '{"name": "lamp", "__proto__": {"admin": true}}', 'TRESOR_ERR_BAD_REQUEST'],
    ['a nested __proto__ key', '{"name": "lamp", "meta": {"__proto__": {"x": 1}}}', 'TRESOR_ERR_BAD_REQUEST'],
    ['an escaped __proto__ key', '{"name": "lamp", "\\u005f_proto__": {}}', 'TRESOR_ERR_BAD_REQUEST'],
    ['a constructor key', '{"name": "lamp", "constructor": {"prototype": {}}}', 'TRESOR_ERR_BAD_REQUEST'],
    [
      'a prototype key in an array element',
      '{"name": "lamp", "tags": [{"prototype": 1}]}',
      'TRESOR_ERR_BAD_REQUEST',
    ],
    ['nesting deeper than 32', `${'['.repeat(33)}${']'.repeat(33)}`, 'TRESOR_ERR_BAD_REQUEST'],
    [
      'very deep nesting',
      `{"name": "lamp", "meta": ${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`,
      'TRESOR_ERR_BAD_REQUEST',
    ],
    ['a lone surrogate', '{"name": "\\ud800"}', 'TRESOR_ERR_BAD_REQUEST'],
  ];
  for (const [what, payload, code] of cases) {
    it(`refuses ${what} with 400 ${code}`, async () => {
      const h = await buildTestApp();
      const res = await post(h, payload);
      assert.equal(res.statusCode, 400, res.body);
      const problem = problemOf(res);
      assert.equal(problem.code, code);
      assert.doesNotMatch(res.body, /bomb|admin/);
      assertNothingChanged(h);
    });
  }

  it('does not pollute prototypes even transiently', async () => {
    const h = await buildTestApp();
    await post(h, '{"name": "lamp", "__proto__": {"polluted": true}}');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('accepts nesting of exactly 32 levels (and validation then judges it)', async () => {
    const h = await buildTestApp();
    const res = await post(h, `${'['.repeat(32)}${']'.repeat(32)}`);
    assert.equal(res.statusCode, 422);
  });
});

describe('schema validation', () => {
  it('refuses a wrong type with 422 and the field path, without the value', async () => {
    const h = await buildTestApp();
    const res = await post(h, JSON.stringify({ name: 'lamp', count: 'secret-value-12' }));
    assert.equal(res.statusCode, 422);
    const problem = problemOf(res);
    assert.equal(problem.code, 'TRESOR_ERR_VALIDATION');
    assert.deepEqual(Object.keys(problem.errors ?? {}), ['/body/count']);
    assert.doesNotMatch(res.body, /secret-value/);
    assertNothingChanged(h);
  });

  it('never coerces body types ("12" is not 12)', async () => {
    const h = await buildTestApp();
    const res = await post(h, JSON.stringify({ name: 'lamp', count: '12' }));
    assert.equal(res.statusCode, 422);
  });

  it('refuses unknown fields with TRESOR_ERR_UNKNOWN_FIELDS, naming them', async () => {
    const h = await buildTestApp();
    const res = await post(h, JSON.stringify({ name: 'lamp', colour: 'red', meta: { size: 1 } }));
    assert.equal(res.statusCode, 422);
    const problem = problemOf(res);
    assert.equal(problem.code, 'TRESOR_ERR_UNKNOWN_FIELDS');
    assert.deepEqual(Object.keys(problem.errors ?? {}).sort(), ['/body/colour', '/body/meta/size']);
    assertNothingChanged(h);
  });

  it('refuses oversized fields and arrays', async () => {
    const h = await buildTestApp();
    for (const body of [{ name: 'x'.repeat(21) }, { name: 'lamp', tags: ['a', 'b', 'c', 'd', 'e', 'f'] }]) {
      const res = await post(h, JSON.stringify(body));
      assert.equal(res.statusCode, 422);
    }
    assertNothingChanged(h);
  });

  it('refuses a missing body and a body that is not an object', async () => {
    const h = await buildTestApp();
    for (const payload of ['', 'null', '[]', '"lamp"', '42']) {
      const res = await post(h, payload);
      assert.equal(res.statusCode, 422, payload);
    }
    assertNothingChanged(h);
  });

  it('refuses a body on an operation that takes none', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/step-up',
      headers: { ...session('adminFresh2fa'), ...json },
      payload: '{}',
    });
    assert.equal(res.statusCode, 400);
    assert.ok(!h.world.log.includes('handler'));
  });

  it('refuses unknown, repeated and mistyped query parameters with 400', async () => {
    const h = await buildTestApp();
    for (const query of ['?limit=abc', '?limit=0', '?limit=1&limit=2', '?where=1', '?limit=5&debug=true']) {
      const res = await h.app.inject({ url: `/v1/test/things${query}`, headers: bearer('tenantA') });
      assert.equal(res.statusCode, 400, query);
      assert.equal(problemOf(res).code, 'TRESOR_ERR_BAD_REQUEST');
    }
    assert.ok(!h.world.log.includes('handler'));
    const ok = await h.app.inject({ url: '/v1/test/things?limit=5', headers: bearer('tenantA') });
    assert.equal(ok.statusCode, 200);
  });

  it('refuses query parameters on an operation that takes none', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/v1/test/operator-only?x=1', headers: bearer('operatorToken') });
    assert.equal(res.statusCode, 400);
  });

  it('passes an invalid cursor to the handler, which refuses it with 400', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/v1/test/things?cursor=forged', headers: bearer('tenantA') });
    assert.equal(res.statusCode, 400);
    assert.equal(problemOf(res).code, 'TRESOR_ERR_INVALID_CURSOR');
  });

  it('validates declared headers (If-Match) and refuses a missing one', async () => {
    const h = await buildTestApp();
    h.world.things.set('th_1', { id: 'th_1', tenant: 'tn_a', name: 'lamp', count: 1, version: 1 });
    for (const headers of [{}, { 'if-match': 'W/"1"' }, { 'if-match': '*' }]) {
      const res = await h.app.inject({
        method: 'PATCH',
        url: '/v1/test/things/th_1',
        headers: { ...bearer('tenantA'), ...json, ...headers },
        payload: '{"count": 3}',
      });
      assert.equal(res.statusCode, 400);
      assert.ok(Object.keys(problemOf(res).errors ?? {}).every((k) => k.startsWith('/headers/')));
    }
    assert.equal(h.world.things.get('th_1')?.count, 1);
  });
});

describe('sizes and media types', () => {
  it('refuses a body over the limit with 413, also without a Content-Length', async () => {
    const h = await buildTestApp({ config: { bodyLimit: 2048 } });
    const big = JSON.stringify({ name: 'lamp', tags: ['x'.repeat(4000)] });
    const res = await post(h, big);
    assert.equal(res.statusCode, 413);
    assert.equal(problemOf(res).code, 'TRESOR_ERR_PAYLOAD_TOO_LARGE');
    assertNothingChanged(h);
  });

  it('answers 415 for any media type but application/json (UTF-8)', async () => {
    const h = await buildTestApp();
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/json; charset=latin1',
      'application/json; charset=utf-16',
      'application/jsonx',
      'application/merge-patch+json',
      'application/xml',
    ]) {
      const res = await post(h, '{"name":"lamp"}', { 'content-type': type });
      assert.equal(res.statusCode, 415, type);
      assert.equal(problemOf(res).code, 'TRESOR_ERR_UNSUPPORTED_MEDIA_TYPE');
    }
    assertNothingChanged(h);
  });

  it('answers 415 for a body without a Content-Type', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/test/things',
      headers: bearer('tenantA'),
      payload: Buffer.from('{"name":"lamp"}'),
    });
    assert.equal(res.statusCode, 415);
    assertNothingChanged(h);
  });

  it('accepts application/json with charset=utf-8 in any case', async () => {
    const h = await buildTestApp();
    for (const type of ['application/json; charset=utf-8', 'Application/JSON; Charset="UTF-8"']) {
      const res = await post(h, '{"name":"lamp"}', { 'content-type': type });
      assert.equal(res.statusCode, 201, type);
    }
  });
});

describe('ids, paths and tenants', () => {
  it("answers another tenant's record exactly as a missing one", async () => {
    const h = await buildTestApp();
    h.world.things.set('th_7', { id: 'th_7', tenant: 'tn_b', name: 'theirs', count: 1, version: 1 });
    const theirs = await h.app.inject({ url: '/v1/test/things/th_7', headers: bearer('tenantA') });
    const missing = await h.app.inject({ url: '/v1/test/things/th_8', headers: bearer('tenantA') });
    assert.equal(theirs.statusCode, 404);
    const strip = (body: string) => body.replace(/"requestId":"[^"]+"/, '');
    assert.equal(strip(theirs.body), strip(missing.body));
    assert.equal(problemOf(theirs).detail, NOT_FOUND_DETAIL);
    assert.doesNotMatch(theirs.body, /theirs|tn_b/);
    const patch = await h.app.inject({
      method: 'PATCH',
      url: '/v1/test/things/th_7',
      headers: { ...bearer('tenantA'), ...json, 'if-match': '"1"' },
      payload: '{"name":"mine"}',
    });
    assert.equal(patch.statusCode, 404);
    assert.equal(h.world.things.get('th_7')?.name, 'theirs');
  });

  it('refuses path tricks in parameters before any handler runs', async () => {
    const h = await buildTestApp();
    for (const id of [
      '',
      '..%2F..%2Fetc%2Fpasswd',
      '%2e%2e',
      'th_1%00',
      'th_1%0d%0aSet-Cookie:x',
      `th_${'a'.repeat(300)}`,
      'TH_1',
      'th_1;x',
    ]) {
      const res = await h.app.inject({ url: `/v1/test/things/${id}`, headers: bearer('tenantA') });
      assert.ok([400, 404].includes(res.statusCode), `${id}: ${res.statusCode}`);
      problemOf(res);
      assert.equal(res.headers['set-cookie'], undefined);
    }
    assert.ok(!h.world.log.includes('handler'));
  });

  it('answers 404 for unknown routes, double slashes, a trailing slash and other case', async () => {
    const h = await buildTestApp();
    for (const url of ['/v1/nothing', '/healthz/', '//v1/test/things', '/V1/TEST/THINGS']) {
      const res = await h.app.inject({ url, headers: bearer('tenantA') });
      assert.equal(res.statusCode, 404, url);
      assert.equal(problemOf(res).code, 'TRESOR_ERR_NOT_FOUND');
    }
  });

  it('answers 405 with Allow for a known path and another method', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({
      method: 'DELETE',
      url: '/v1/test/things/th_1',
      headers: bearer('tenantA'),
    });
    assert.equal(res.statusCode, 405);
    assert.equal(res.headers.allow, 'GET, PATCH');
    assert.equal(problemOf(res).code, 'TRESOR_ERR_METHOD_NOT_ALLOWED');
  });

  it('answers a URL that does not decode with 400 problem+json, without echoing it', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/v1/test/things/%zz<script>', headers: bearer('tenantA') });
    assert.equal(res.statusCode, 400);
    assert.doesNotMatch(res.body, /script|%zz/);
    assert.equal(res.headers['cache-control'], 'no-store');
  });
});

describe('headers and problems', () => {
  it('echoes nothing the client sent except a validated request id', async () => {
    const h = await buildTestApp();
    const marker = 'zz-marker-zz';
    const res = await h.app.inject({
      method: 'POST',
      url: `/v1/test/things?${marker}=1`,
      headers: {
        authorization: `Bearer ${marker}`,
        'user-agent': marker,
        'x-forwarded-for': marker,
        'content-type': `application/${marker}`,
        origin: `https://${marker}`,
        'x-request-id': `${marker}<>`,
      },
      payload: marker,
    });
    assert.ok(res.statusCode >= 400 && res.statusCode < 500);
    assert.doesNotMatch(JSON.stringify(res.headers) + res.body, new RegExp(marker));
  });

  it('answers 429 problem+json with Retry-After once a budget is spent, per address and per key', async () => {
    const h = await buildTestApp({ config: { rateLimit: { windowMs: 60_000, perAddress: 100, perKey: 3 } } });
    const statuses = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') })).statusCode);
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    const limited = await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') });
    assert.equal(problemOf(limited).code, 'TRESOR_ERR_RATE_LIMITED');
    assert.match(String(limited.headers['retry-after']), /^\d+$/);
    // Another key from the same address still has its own budget…
    assert.equal(
      (await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantB') })).statusCode,
      200,
    );
    // …and guessing secrets for a key does not spend that key's budget.
    const wrong = `${TOKENS.tenantB.slice(0, -3)}xyz`;
    for (let i = 0; i < 5; i++)
      await h.app.inject({ url: '/v1/test/things', headers: { authorization: `Bearer ${wrong}` } });
    assert.equal(
      (await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantB') })).statusCode,
      200,
    );

    const perAddress = await buildTestApp({
      config: { rateLimit: { windowMs: 60_000, perAddress: 2, perKey: 100 } },
    });
    const answers = [];
    for (let i = 0; i < 3; i++)
      answers.push((await perAddress.app.inject({ url: '/v1/test/things' })).statusCode);
    assert.deepEqual(answers, [401, 401, 429]);
    assert.deepEqual(perAddress.authenticateCalls, []);
  });

  it('by default lets a client at 50 requests a second through and stops a guessing loop', async () => {
    const h = await buildTestApp();
    const perMinute = DEFAULT_RATE_LIMIT.windowMs === 60_000 ? DEFAULT_RATE_LIMIT.perKey : Number.NaN;
    assert.ok(perMinute >= 50 * 60, 'a key may send 50 requests a second for a whole minute');
    const statuses = new Map<number, number>();
    for (let i = 0; i < perMinute; i++) {
      const { statusCode } = await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') });
      statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1);
    }
    assert.deepEqual([...statuses], [[200, perMinute]], 'every request of the busy client answered');
    const over = await h.app.inject({ url: '/v1/test/things', headers: bearer('tenantA') });
    assert.equal(over.statusCode, 429);
    assert.match(String(over.headers['retry-after']), /^\d+$/);

    // Guessing secrets from one address: each guess is a new credential, so the address budget
    // is what stops it, within the minute.
    const guesser = await buildTestApp();
    let refusedAt = -1;
    for (let i = 0; refusedAt < 0 && i <= DEFAULT_RATE_LIMIT.perAddress; i++) {
      const guess = `${TOKENS.tenantB.slice(0, -6)}${String(i).padStart(6, '0')}`;
      const res = await guesser.app.inject({
        url: '/v1/test/things',
        headers: { authorization: `Bearer ${guess}` },
      });
      if (res.statusCode === 429) refusedAt = i;
      else assert.equal(res.statusCode, 401);
    }
    assert.equal(refusedAt, DEFAULT_RATE_LIMIT.perAddress, 'the guess after the address budget is refused');
    assert.equal(
      guesser.authenticateCalls.length,
      DEFAULT_RATE_LIMIT.perAddress,
      'refused before authentication',
    );
  });

  describe('refuses a header that may appear once but came twice, with 400 and changing nothing', () => {
    const twice: [string, Record<string, string | string[]>][] = [
      ['Content-Type', { ...bearer('tenantA'), 'content-type': ['application/json', 'text/plain'] }],
      ['Content-Length', { ...bearer('tenantA'), ...json, 'content-length': ['15', '15'] }],
      ['Authorization', { ...json, authorization: [`Bearer ${TOKENS.tenantA}`, `Bearer ${TOKENS.tenantB}`] }],
    ];
    for (const [name, headers] of twice) {
      it(name, async () => {
        const h = await buildTestApp();
        const res = await h.app.inject({
          method: 'POST',
          url: '/v1/test/things',
          headers,
          payload: '{"name":"lamp"}',
        });
        assert.equal(res.statusCode, 400, res.body);
        const problem = problemOf(res);
        assert.equal(problem.code, 'TRESOR_ERR_BAD_REQUEST');
        assert.match(String(problem.detail), new RegExp(name, 'i'));
        assert.deepEqual(h.authenticateCalls, [], 'no credential was looked at');
        assertNothingChanged(h);
      });
    }

    it('while the same request with each header once is stored', async () => {
      const h = await buildTestApp();
      const res = await post(h, '{"name":"lamp"}');
      assert.equal(res.statusCode, 201, res.body);
    });
  });

  it('never shows a stack trace or internal message, for any error', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/v1/test/crash', headers: bearer('tenantA') });
    assert.equal(res.statusCode, 500);
    const problem = problemOf(res);
    assert.deepEqual(Object.keys(problem).sort(), ['code', 'requestId', 'status', 'title', 'type']);
    assert.doesNotMatch(res.body, /ENOENT|var\/lib|store\.ts|at /);
  });

  it('gives each status a stable type URI derived from its code', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/v1/test/things' });
    const problem = problemOf(res);
    assert.equal(problem.type, 'https://tresor.dev/problems/unauthenticated');
    assert.equal(problem.title, 'Authentication required');
  });
});
