/**
 * The server's own routes: liveness and readiness probes, the OpenAPI document and the reference
 * page. All public (PUBLIC_ROUTES) and unaudited: they carry no customer data and a load balancer
 * polls the probes every few seconds.
 *
 * /healthz answers 200 while the process can answer at all. /readyz runs every readiness check —
 * store writable, keyd unsealed and reachable, audit log writable — in parallel, each bounded by
 * READINESS_TIMEOUT_MS, and answers 503 problem+json naming the checks that failed, so a balancer
 * stops sending traffic to a node that would fail closed anyway.
 */
import Type from 'typebox';
import type { ReadinessCheck } from '../deps.ts';
import { PROBLEM_SCHEMA } from '../openapi.ts';
import { PROBLEM_CONTENT_TYPE } from '../problem.ts';
import { REFERENCE_PAGE_CSP, renderReferencePage } from '../reference-page.ts';
import { defineRoute, type RouteModule } from '../route.ts';

export const READINESS_TIMEOUT_MS = 2000;

const CheckResults = Type.Record(Type.String(), Type.Union([Type.Literal('ok'), Type.Literal('failing')]));

async function passes(check: ReadinessCheck): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), READINESS_TIMEOUT_MS);
  });
  try {
    return await Promise.race([check.check().then((ok) => ok === true), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export function systemRoutes(deps: {
  readiness: readonly ReadinessCheck[];
  openapi: () => unknown;
}): RouteModule {
  let referencePage: string | undefined;
  return {
    name: 'system',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/healthz',
        summary: 'Liveness: the process is up',
        tags: ['system'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: 'none-public',
        schema: { response: { 200: Type.Object({ status: Type.Literal('live') }) } },
      }).handle(async () => ({ status: 200, body: { status: 'live' } })),
      defineRoute({
        method: 'GET',
        url: '/readyz',
        summary: 'Readiness: store, keyd and audit log can serve requests',
        tags: ['system'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: 'none-public',
        schema: {
          response: {
            200: Type.Object({ status: Type.Literal('ready'), checks: CheckResults }),
            503: Type.Unsafe<Record<string, unknown>>({
              ...PROBLEM_SCHEMA,
              properties: { ...PROBLEM_SCHEMA.properties, checks: CheckResults },
            }),
          },
        },
      }).handle(async () => {
        const results = await Promise.all(deps.readiness.map(passes));
        const checks: Record<string, 'ok' | 'failing'> = {};
        deps.readiness.forEach((c, i) => {
          checks[c.name] = results[i] ? 'ok' : 'failing';
        });
        if (results.every(Boolean)) return { status: 200, body: { status: 'ready', checks } };
        return {
          status: 503,
          headers: { 'content-type': PROBLEM_CONTENT_TYPE },
          body: {
            type: 'https://tresor.dev/problems/not-ready',
            title: 'Service Unavailable',
            status: 503,
            code: 'TRESOR_ERR_UNAVAILABLE',
            checks,
          },
        };
      }),
      defineRoute({
        method: 'GET',
        url: '/v1/openapi.json',
        summary: 'This API described in OpenAPI 3.1',
        tags: ['system'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: 'none-public',
        schema: {
          response: {
            200: Type.Unsafe<Record<string, unknown>>({ type: 'object', additionalProperties: true }),
          },
        },
      }).handle(async () => ({ status: 200, body: deps.openapi() as Record<string, unknown> })),
      defineRoute({
        method: 'GET',
        url: '/docs',
        summary: 'API reference page (HTML)',
        tags: ['system'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: 'none-public',
        schema: { response: { 200: Type.String({ description: 'text/html' }) } },
      }).handle(async () => {
        referencePage ??= renderReferencePage(deps.openapi());
        return {
          status: 200,
          headers: {
            'content-type': 'text/html; charset=utf-8',
            'content-security-policy': REFERENCE_PAGE_CSP,
          },
          body: referencePage,
        };
      }),
    ],
  };
}
