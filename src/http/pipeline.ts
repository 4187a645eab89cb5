/**
 * THE request pipeline. Every request to every route passes these layers, in this order, as
 * Fastify hooks installed once on the root instance before any route exists — so no route can be
 * registered without them, and a route cannot opt out: what varies per route is only what it
 * declared (route.ts), which each layer reads.
 *
 *   1. request id and limits     onRequest      layers/request-id.ts, layers/duplicate-headers.ts
 *   2. rate limit                onRequest      layers/rate-limit.ts      (per address, per credential)
 *   3. authentication            onRequest      layers/authentication.ts  (Bearer or session+origin+CSRF → Principal)
 *   4. second factor             onRequest      layers/second-factor.ts   (routes with secondFactor)
 *   5. authorization             onRequest      layers/authorization.ts   (grant, caller kind, route.authorize)
 *      — only now is the body read: strict JSON, json-body.ts (415, 413, 400) —
 *   6. schema validation         preValidation  layers/validation.ts      (params, query, headers, body)
 *   7. audit                     preHandler     layers/audit.ts
 *   →  handler                                  handler.ts                (checks the audit was recorded)
 *   ✗  any failure                              error-handler.ts          (audits it, problem+json)
 *
 * Authentication, authorization and the rest run before the body is parsed, so a caller who may
 * not ask makes the server read nothing. `registeredRoutes(app)` lists every route with what it
 * declared for each layer; test/http/route-walk.test.ts checks them all.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { OperatorScope } from '../identity/operator-scopes.ts';
import type {
  AuditRecorder,
  Authenticator,
  GrantResolver,
  RefusedGrantResolver,
  SessionAuthenticator,
} from './deps.ts';
import { audit } from './layers/audit.ts';
import { authentication } from './layers/authentication.ts';
import { authorization } from './layers/authorization.ts';
import { rejectDuplicateHeaders } from './layers/duplicate-headers.ts';
import { type RateLimitConfig, rateLimit } from './layers/rate-limit.ts';
import { requestIdAndLimits } from './layers/request-id.ts';
import { secondFactor } from './layers/second-factor.ts';
import { validation } from './layers/validation.ts';
import type { AuthMode, HttpMethod, RouteDefinition } from './route.ts';

export const LAYERS = [
  'request-id-and-limits',
  'rate-limit',
  'authentication',
  'second-factor',
  'authorization',
  'validation',
  'audit',
] as const;
export type LayerName = (typeof LAYERS)[number];

export interface PipelineDeps {
  bodyLimit: number;
  rateLimit: RateLimitConfig;
  authenticate: Authenticator;
  /** Console sessions (cookie + CSRF); without it only bearer tokens are taken. */
  sessions?: SessionAuthenticator;
  /** The server's own origins, which a cookie-authenticated change must come from. */
  ownOrigins?: () => readonly string[];
  /** Live access grants for staff sessions on tenant-data routes; without it none is live. */
  grants?: GrantResolver;
  /** Why a named grant is not live, to record the refused attempt with its tenant. */
  refusedGrants?: RefusedGrantResolver;
  audit: AuditRecorder;
  now: () => Date;
  /** Called as each layer starts (tests prove the order with it; tracing can hook in here). */
  onLayer?: (layer: LayerName, request: FastifyRequest) => void;
}

type Hook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

interface Step {
  layer: LayerName;
  hook: 'onRequest' | 'preValidation' | 'preHandler';
  run: Hook;
}

/** Installs the layers on the root instance. Call before registering any route. */
export function installPipeline(app: FastifyInstance, deps: PipelineDeps): void {
  const idAndLimits = requestIdAndLimits({ bodyLimit: deps.bodyLimit });
  const steps: Step[] = [
    {
      layer: 'request-id-and-limits',
      hook: 'onRequest',
      // The id first, so that even a refused request's problem answer carries it.
      run: async function requestIdAndLimitsLayer(request, reply) {
        await idAndLimits(request, reply);
        rejectDuplicateHeaders(request);
      },
    },
    { layer: 'rate-limit', hook: 'onRequest', run: rateLimit(app, deps.rateLimit) },
    {
      layer: 'authentication',
      hook: 'onRequest',
      run: authentication(deps.authenticate, deps.sessions, deps.ownOrigins),
    },
    { layer: 'second-factor', hook: 'onRequest', run: secondFactor(deps.now) },
    { layer: 'authorization', hook: 'onRequest', run: authorization(deps.grants, deps.refusedGrants) },
    { layer: 'validation', hook: 'preValidation', run: validation() },
    { layer: 'audit', hook: 'preHandler', run: audit({ audit: deps.audit, now: deps.now }) },
  ];
  for (const step of steps) app.addHook(step.hook, layer(step, deps.onLayer));
}

/**
 * Marks which layer is running while it runs (a failure is classified by it: audit.ts) and reports
 * it; keeps the layer's function name, which Fastify's route listing shows.
 */
function layer(step: Step, onLayer: PipelineDeps['onLayer']): Hook {
  const run = async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.tresor) request.tresor.layer = step.layer;
    onLayer?.(step.layer, request);
    await step.run(request, reply);
    request.tresor.layer = undefined;
  };
  Object.defineProperty(run, 'name', { value: step.run.name });
  return run;
}

/** What one route declared for each layer, as the route walk inspects it. */
export interface RouteDeclaration {
  method: HttpMethod;
  url: string;
  auth: AuthMode;
  secondFactor: boolean;
  /** The operator-token scope that admits a token, if any. */
  scope: OperatorScope | undefined;
  authorize: 'public' | 'function';
  schema: { params: boolean; querystring: boolean; headers: boolean; body: boolean; responses: number[] };
  audit: 'none-public' | string;
}

const registries = new WeakMap<FastifyInstance, RouteDefinition[]>();

/** Remembers a route registered on `app` (server.ts does this for every route it adds). */
export function rememberRoute(app: FastifyInstance, route: RouteDefinition): void {
  const list = registries.get(app) ?? [];
  list.push(route);
  registries.set(app, list);
}

/** Every route registered on `app`, with its declared layers. */
export function registeredRoutes(app: FastifyInstance): RouteDeclaration[] {
  return (registries.get(app) ?? []).map((r) => ({
    method: r.method,
    url: r.url,
    auth: r.auth,
    secondFactor: r.secondFactor,
    scope: r.scope,
    authorize: r.authorize === 'public' ? 'public' : 'function',
    schema: {
      params: r.schema.params !== undefined,
      querystring: r.schema.querystring !== undefined,
      headers: r.schema.headers !== undefined,
      body: r.schema.body !== undefined,
      responses: Object.keys(r.schema.response).map(Number),
    },
    audit: r.audit === 'none-public' ? 'none-public' : r.audit.action,
  }));
}
