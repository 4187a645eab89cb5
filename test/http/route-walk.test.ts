/**
 * The route walk: every route the server registers — the system routes, every domain module in
 * src/http/routes/index.ts, and the test routes — has each layer declared and really passes each
 * layer. A route cannot opt out by accident: defineRoute refuses incomplete declarations, the
 * server refuses routes that did not come through defineRoute, and this test checks both the
 * declarations and the hooks Fastify attached, and knocks on every route without credentials.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Type from 'typebox';
import { TresorError } from '../../src/errors.ts';
import { buildApp } from '../../src/http/app.ts';
import { registeredRoutes } from '../../src/http/pipeline.ts';
import { defineRoute, PUBLIC_ROUTES, RouteDefinitionError, type RouteModule } from '../../src/http/route.ts';
import { allRouteModules, specOnlyDependencies } from '../../src/http/routes/index.ts';
import { bearer, buildTestApp, problemOf } from './fixtures/harness.ts';
import { testRoutes } from './fixtures/test-routes.ts';

const EXPECTED_HOOKS = {
  onRequest: [
    'securityHeadersLayer()',
    'requestIdAndLimitsLayer()',
    'rateLimitLayer()',
    'authenticationLayer()',
    'secondFactorLayer()',
    'authorizationLayer()',
  ],
  preValidation: ['validationLayer()'],
  preHandler: ['auditLayer()'],
  onSend: ['awaitUnreadBody()', 'closeConnectionWhenShuttingDown()'],
  onResponse: ['logRequest()'],
};

/** Every domain module (on stand-in dependencies) plus the test routes. */
async function everyRoute() {
  return buildTestApp({
    routes: (world) => [...allRouteModules(specOnlyDependencies()), testRoutes(world)],
  });
}

/** Parses `printRoutes({ includeHooks: true })`: each route node with the hooks Fastify attached to it. */
function attachedHooks(tree: string): { node: string; methods: string[]; hooks: Record<string, string[]> }[] {
  const nodes: { node: string; methods: string[]; hooks: Record<string, string[]> }[] = [];
  for (const line of tree.split('\n')) {
    const route = /([^\s│├└─]+) \(([A-Z, ]+)\)$/.exec(line);
    if (route?.[1] && route[2]) {
      nodes.push({ node: route[1], methods: route[2].split(', '), hooks: {} });
      continue;
    }
    const hook = /• \((\w+)\) (\[.*\])$/.exec(line);
    const current = nodes.at(-1);
    if (hook?.[1] && hook[2] && current) current.hooks[hook[1]] = JSON.parse(hook[2]) as string[];
  }
  return nodes;
}

function concreteUrl(url: string): string {
  return url.replace(/:[A-Za-z0-9]+/g, 'x1');
}

describe('route walk', () => {
  it('lists every route with auth, authorize, schema and audit declared, within the rules', async () => {
    const { app } = await everyRoute();
    const routes = registeredRoutes(app);
    assert.ok(routes.length >= 13);
    for (const r of routes) {
      const key = `${r.method} ${r.url}`;
      assert.ok(
        ['api-key', 'tenant-data', 'operator', 'session', 'any-authenticated', 'none'].includes(r.auth),
        key,
      );
      assert.equal(
        r.authorize === 'public',
        r.auth === 'none',
        `${key}: authorize is public exactly when auth is none`,
      );
      if (r.auth === 'none') assert.ok(PUBLIC_ROUTES.has(key), `${key} is public but not on PUBLIC_ROUTES`);
      if (r.audit === 'none-public') assert.equal(r.auth, 'none', `${key}: only public routes skip audit`);
      else assert.match(r.audit, /^[a-z-]+(\.[a-z-]+)+$/, key);
      if (r.secondFactor) assert.notEqual(r.auth, 'none', key);
      assert.ok(
        r.schema.responses.some((s) => s >= 200 && s < 300),
        `${key} declares a 2xx answer`,
      );
      assert.equal(
        r.schema.params,
        r.url.includes(':') || r.url.endsWith('/*'),
        `${key}: params declared exactly when the url has some`,
      );
    }
  });

  it('finds the pipeline hooks, and only them, attached to every registered route', async () => {
    const { app } = await everyRoute();
    await app.ready();
    const nodes = attachedHooks(app.printRoutes({ includeHooks: true }));
    const methodsSeen = nodes.reduce((n, node) => n + node.methods.length, 0);
    assert.equal(methodsSeen, registeredRoutes(app).length, 'no route exists outside the registry');
    for (const node of nodes) assert.deepEqual(node.hooks, EXPECTED_HOOKS, node.node);
  });

  it('answers 401 without credentials on every non-public route, before any handler or body', async () => {
    const h = await everyRoute();
    for (const r of registeredRoutes(h.app).filter((route) => route.auth !== 'none')) {
      const res = await h.app.inject({
        method: r.method,
        url: concreteUrl(r.url),
        headers: { 'content-type': 'application/json' },
        payload: r.method === 'GET' || r.method === 'DELETE' ? undefined : '{"x":',
      });
      assert.equal(res.statusCode, 401, `${r.method} ${r.url}`);
      assert.equal(problemOf(res).code, 'TRESOR_ERR_UNAUTHENTICATED');
    }
    assert.deepEqual(h.world.log, []);
  });

  it('answers 403 to callers of the wrong kind on every route that names a kind', async () => {
    const h = await everyRoute();
    for (const r of registeredRoutes(h.app).filter(
      (route) => route.auth === 'api-key' || route.auth === 'operator',
    )) {
      const wrong = r.auth === 'api-key' ? bearer('operatorToken') : bearer('tenantA');
      const res = await h.app.inject({ method: r.method, url: concreteUrl(r.url), headers: wrong });
      assert.equal(res.statusCode, 403, `${r.method} ${r.url}`);
    }
    assert.deepEqual(h.world.log, []);
  });

  it('serves the public system routes without credentials', async () => {
    const h = await everyRoute();
    for (const url of ['/healthz', '/readyz', '/v1/openapi.json', '/docs']) {
      assert.equal((await h.app.inject({ url })).statusCode, 200, url);
    }
  });
});

describe('a route cannot opt out by accident', () => {
  const base = {
    method: 'GET' as const,
    url: '/v1/things',
    summary: 'x',
    tags: ['t'],
    secondFactor: false,
    schema: { response: { 200: Type.Object({}) } },
  };
  const refusals: [string, () => unknown][] = [
    [
      "auth 'none' off the public list",
      () => defineRoute({ ...base, auth: 'none', authorize: 'public', audit: 'none-public' }),
    ],
    [
      "authorize 'public' on an authenticated route",
      () =>
        defineRoute({
          ...base,
          auth: 'api-key',
          authorize: 'public' as never,
          audit: { action: 'thing.read' },
        }),
    ],
    [
      "audit 'none-public' on a private route",
      () => defineRoute({ ...base, auth: 'api-key', authorize: () => {}, audit: 'none-public' }),
    ],
    [
      'a token scope on a route that needs a second factor',
      () =>
        defineRoute({
          ...base,
          auth: 'operator',
          secondFactor: true,
          scope: 'tenants:read',
          authorize: () => {},
          audit: { action: 'thing.read' },
        }),
    ],
    [
      'a token scope on a route no operator reaches (API keys, sessions, tenant data)',
      () =>
        defineRoute({
          ...base,
          auth: 'api-key',
          scope: 'tenants:read',
          authorize: () => {},
          audit: { action: 'thing.read' },
        }),
    ],
    [
      'an audit action without a domain',
      () => defineRoute({ ...base, auth: 'api-key', authorize: () => {}, audit: { action: 'read' } }),
    ],
    [
      'a :param without a schema',
      () =>
        defineRoute({
          ...base,
          url: '/v1/things/:id',
          auth: 'api-key',
          authorize: () => {},
          audit: { action: 'thing.read' },
        }),
    ],
    [
      'a :param without a pattern',
      () =>
        defineRoute({
          ...base,
          url: '/v1/things/:id',
          auth: 'api-key',
          authorize: () => {},
          audit: { action: 'thing.read' },
          schema: { params: Type.Object({ id: Type.String() }), response: { 200: Type.Object({}) } },
        }),
    ],
    [
      'no 2xx answer',
      () =>
        defineRoute({
          ...base,
          auth: 'api-key',
          authorize: () => {},
          audit: { action: 'thing.read' },
          schema: { response: { 404: Type.Object({}) } },
        }),
    ],
    [
      'a second factor on a public route',
      () =>
        defineRoute({
          ...base,
          url: '/healthz',
          auth: 'none',
          authorize: 'public',
          audit: 'none-public',
          secondFactor: true,
        }),
    ],
    [
      'a url with a path trick',
      () =>
        defineRoute({
          ...base,
          url: '/v1/../x',
          auth: 'api-key',
          authorize: () => {},
          audit: { action: 'thing.read' },
        }),
    ],
  ];
  for (const [what, define] of refusals) {
    it(`defineRoute refuses ${what}`, () => {
      assert.throws(define, RouteDefinitionError);
    });
  }

  it('closes request object schemas that do not say otherwise', () => {
    const route = defineRoute({
      ...base,
      method: 'POST',
      auth: 'api-key',
      authorize: () => {},
      audit: { action: 'thing.create' },
      schema: {
        body: Type.Object({
          a: Type.Object({ b: Type.String() }),
          open: Type.Record(Type.String(), Type.String()),
        }),
        response: { 201: Type.Object({}) },
      },
    }).handle(async (ctx) => {
      await ctx.audit.record();
      return { status: 201, body: {} };
    });
    const body = route.schema.body as unknown as {
      additionalProperties: unknown;
      properties: { a: { additionalProperties: unknown } };
    };
    assert.equal(body.additionalProperties, false);
    assert.equal(body.properties.a.additionalProperties, false);
  });

  it('refuses a route added to Fastify directly', async () => {
    const { app } = await buildTestApp();
    assert.throws(
      () => app.get('/v1/sneaky', async () => ({ data: 'unguarded' })),
      /not registered through defineRoute/,
    );
  });

  it('refuses a module whose routes did not come from defineRoute', async () => {
    const sneaky = {
      name: 'sneaky',
      routes: [{ method: 'GET', url: '/v1/sneaky' }],
    } as unknown as RouteModule;
    await assert.rejects(
      buildApp({
        config: {
          bodyLimit: 1024,
          rateLimit: { windowMs: 1000, perAddress: 1, perKey: 1 },
          trustProxy: [],
          timeouts: {
            headersMs: 1,
            requestMs: 1,
            keepAliveMs: 1,
            idleMs: 1,
            handshakeMs: 1,
            shutdownGraceMs: 1,
          },
          logLevel: 'silent',
        },
        authenticate: async () => {
          throw new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'x');
        },
        audit: { record: async () => {} },
        readiness: [],
        routes: [sneaky],
      }),
      /not made by defineRoute/,
    );
  });
});
