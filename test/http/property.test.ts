/**
 * Property: whatever a client sends — any method, path, query, headers, media type or body — the
 * answer is never a 5xx, and every error is problem+json without internals (the invariant: bad
 * input gets a clear 4xx and changes nothing; no input yields a 5xx). Runs against the test routes, minus the two that fail on purpose.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { bearer, buildTestApp, TOKENS } from './fixtures/harness.ts';

const templates = [
  '/healthz',
  '/readyz',
  '/docs',
  '/v1/openapi.json',
  '/v1/test/things',
  '/v1/test/things/{id}',
  '/v1/test/step-up',
  '/v1/test/operator-only',
  '/v1/{id}',
  '/{id}/{id}',
];

const segment = fc.oneof(
  fc.constantFrom('th_1', 'th_2', 'th_x', '', '..', '%2e%2e', '%00', '%zz', '%2F', 'th_1%0d%0a'),
  fc.string({ maxLength: 30 }).map(encodeURIComponent),
  fc.string({ unit: 'binary', maxLength: 10 }).map(encodeURIComponent),
);

const path = fc
  .tuple(fc.constantFrom(...templates), fc.array(segment, { minLength: 2, maxLength: 2 }))
  .map(([template, [a, b]]) => template.replace('{id}', a ?? '').replace('{id}', b ?? ''));

const query = fc.oneof(
  fc.constant(''),
  fc.constantFrom(
    '?limit=5',
    '?limit=-1',
    '?limit=1e3',
    '?cursor=c1',
    '?cursor=zzz',
    '?limit=1&limit=2',
    '?__proto__=1',
  ),
  fc
    .dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 })
    .map((d) => `?${new URLSearchParams(d).toString()}`),
);

const jsonBody = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc
    .record({ name: fc.string({ maxLength: 25 }), count: fc.oneof(fc.integer(), fc.string(), fc.double()) })
    .map((v) => JSON.stringify(v)),
  fc.constantFrom(
    '{"name":"a","name":"b"}',
    '{"__proto__":{}}',
    '{"constructor":{}}',
    '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
    '{',
  ),
  fc.string({ maxLength: 50 }),
);

const request = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'),
  url: fc.tuple(path, query).map(([p, q]) => p + q),
  auth: fc.oneof(
    fc.constantFrom(...(Object.keys(TOKENS) as (keyof typeof TOKENS)[])).map((who) => bearer(who)),
    fc.string({ maxLength: 40 }).map((s) => ({ authorization: `Bearer ${s.replace(/[\r\n]/g, '')}` })),
    fc.constant({}),
  ),
  contentType: fc.constantFrom(
    undefined,
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    'application/json; charset=latin1',
    'multipart/form-data',
  ),
  body: fc.option(jsonBody, { nil: undefined }),
  ifMatch: fc.option(fc.constantFrom('"1"', '"2"', '*', 'W/"1"', '"x"'), { nil: undefined }),
  requestId: fc.option(
    fc.string({ maxLength: 70 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
    { nil: undefined },
  ),
});

describe('no input yields a 5xx', () => {
  it('answers every random request with a non-5xx, and every error with problem+json', async () => {
    const h = await buildTestApp({
      config: { rateLimit: { windowMs: 60_000, perAddress: 1_000_000, perKey: 1_000_000 } },
    });
    h.world.things.set('th_1', { id: 'th_1', tenant: 'tn_a', name: 'lamp', count: 1, version: 1 });
    h.world.things.set('th_2', { id: 'th_2', tenant: 'tn_b', name: 'desk', count: 1, version: 1 });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = { ...r.auth };
        if (r.contentType) headers['content-type'] = r.contentType;
        if (r.ifMatch) headers['if-match'] = r.ifMatch;
        if (r.requestId !== undefined) headers['x-request-id'] = r.requestId;
        const res = await h.app.inject({
          method: r.method as 'GET',
          url: r.url,
          headers,
          ...(r.body === undefined ? {} : { payload: r.body }),
        });
        assert.ok(res.statusCode < 500, `${r.method} ${r.url} → ${res.statusCode} ${res.body}`);
        if (res.statusCode >= 400) {
          assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
          if (r.method !== 'HEAD') {
            const problem = JSON.parse(res.body);
            assert.equal(problem.status, res.statusCode);
            assert.match(problem.code, /^TRESOR_ERR_[A-Z_]+$/);
          }
        }
        assert.doesNotMatch(res.body, /\n\s+at |node_modules|FST_ERR/);
      }),
      { numRuns: 400 },
    );
  });
});
