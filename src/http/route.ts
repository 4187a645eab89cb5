/**
 * The route definition API: how a domain's routes (src/http/routes/<domain>.ts) say what each
 * request must pass before their handler runs. A route declares every layer explicitly — who may
 * call it (`auth`), whether it needs a fresh second factor, how it is authorized, the schemas of
 * everything it reads and returns, and what it audits — and `defineRoute` refuses a definition
 * that leaves one out or weakens one by accident:
 *
 * - `auth: 'none'` (and `authorize: 'public'`) only for the routes on PUBLIC_ROUTES;
 * - `audit: 'none-public'` only for public routes; every other route names its audit action, and
 *   the pipeline refuses to answer (500) when the handler returns without having recorded it;
 * - every `:param` in the URL is declared as a bounded string with a pattern (or enum/const/format),
 *   so a path trick (`..%2F`, NUL, a 10 kB id) never reaches a handler;
 * - request schemas are closed: `additionalProperties: false` is added to every object schema that
 *   does not say otherwise, so unknown fields and query parameters are refused, not ignored.
 *
 * Domain code never sees Fastify: it gets a RequestContext with the proved principal, validated
 * input and the audit helpers, and returns a Reply — one of the statuses it declared, with a body
 * of that status's schema.
 */
import type { Static, TSchema } from 'typebox';
import type { AuditEvent } from '../audit/event.ts';
import type { OperatorScope } from '../identity/operator-scopes.ts';
import type { Principal } from '../identity/principal.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export const HTTP_METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

/**
 * Who may call a route:
 * - `api-key`: a tenant API key (tenant administration: schemas, keys, export);
 * - `tenant-data`: a tenant API key, or a staff session presenting a live access grant for that
 *   tenant in the `Tresor-Grant` header (record reads and changes: "tenant key, staff with grant"
 *   in the HTTP contract);
 * - `operator`: a console session of the operator-admin role, or an operator token of the route's
 *   `scope`;
 * - `session`: a person logged in to the console (staff or customer), cookie + CSRF;
 * - `any-authenticated`: any of these (an operator token only with the route's `scope`); the
 *   route's authorize decides;
 * - `none`: anyone (public routes only).
 */
export type AuthMode = 'api-key' | 'tenant-data' | 'operator' | 'session' | 'any-authenticated' | 'none';

export type ApiKeyPrincipal = Extract<Principal, { kind: 'api-key' }>;
export type GrantPrincipal = Extract<Principal, { kind: 'staff-grant' }>;
export type SessionPrincipal = Extract<Principal, { kind: 'session' }>;
export type OperatorTokenPrincipal = Extract<Principal, { kind: 'operator-token' }>;
/** An operator admin: a console session of that role, or an operator token of the route's scope. */
export type OperatorPrincipal = OperatorTokenPrincipal | SessionPrincipal;
/** Principals that reach tenant records: the tenant's keys, and staff through a live grant. */
export type TenantDataPrincipal = ApiKeyPrincipal | GrantPrincipal;
/** Principals that can arrive over HTTP; `system` principals are the server's own jobs. */
export type HttpPrincipal = ApiKeyPrincipal | GrantPrincipal | OperatorTokenPrincipal | SessionPrincipal;

export type PrincipalFor<A extends AuthMode> = A extends 'api-key'
  ? ApiKeyPrincipal
  : A extends 'tenant-data'
    ? TenantDataPrincipal
    : A extends 'operator'
      ? OperatorPrincipal
      : A extends 'session'
        ? SessionPrincipal
        : A extends 'any-authenticated'
          ? HttpPrincipal
          : null;

/**
 * The routes that answer without authentication. Each is a probe, the API description or a public
 * key, or a step of console login and enrolment; nothing on it is customer data. Adding a route here is a security decision: review it so.
 */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set([
  'GET /healthz',
  'GET /readyz',
  'GET /v1/openapi.json',
  'GET /docs',
  'GET /v1/audit/public-key',
  'GET /v1/keys',
  // The live trust page (routes/trust.ts): what the deployment promises with its live evidence —
  // protocol versions, the certificate, keyd's state, the latest signed checkpoint, backup ages,
  // availability — for the public, signed by keyd; no tenant, person, path or secret in it.
  'GET /trust',
  'GET /trust.json',
  // Console login and enrolment: nobody is logged in yet. Each proves itself with what it carries
  // (password then second factor, a one-time enrolment or reset token, a recovery code), is
  // throttled per account and address, and is audited by the identity services, refusals included.
  'POST /v1/auth/login',
  'POST /v1/auth/login/second-factor',
  'POST /v1/auth/login/webauthn/options',
  'POST /v1/auth/login/webauthn',
  'POST /v1/auth/recovery-reset',
  'POST /v1/enrolment/password',
  'POST /v1/enrolment/totp',
  'POST /v1/enrolment/totp/confirm',
  'POST /v1/enrolment/webauthn/options',
  'POST /v1/enrolment/webauthn',
  // The sign-in page and its static assets (routes/signin.ts): files read at start, the same for
  // everyone, with no data in them; it signs in through the routes above, so it must load before
  // anyone is signed in. Its CSP allows only same-origin scripts, styles and fetches.
  'GET /signin',
  'GET /signin/app.js',
  'GET /signin/app.css',
  'GET /signin/webauthn.js',
]);

export interface RouteSchemas {
  params?: TSchema;
  querystring?: TSchema;
  headers?: TSchema;
  body?: TSchema;
  /** Status → body schema; a bodiless answer (204) uses Type.Null(). At least one 2xx. */
  response: Readonly<Record<number, TSchema>>;
}

/** What authorization may look at: the route's raw (not yet validated) path and query parameters. */
export interface AuthorizationInput {
  method: HttpMethod;
  /** The route pattern, e.g. `/v1/collections/:name/records/:id`. */
  route: string;
  params: Readonly<Record<string, string>>;
  query: Readonly<Record<string, unknown>>;
}

/** Throws TresorError FORBIDDEN (or NOT_FOUND, to hide that something exists) to refuse. */
export type Authorize<P> = (principal: P, request: AuthorizationInput) => void | Promise<void>;

/** What a handler says about its audit event; the pipeline fills in who, when, where. */
export interface AuditEventInput {
  /** Defaults to the route's declared action. */
  action?: string;
  /** Defaults to the API key's tenant, else null. */
  tenant?: string | null;
  target?: AuditEvent['target'];
  /** Defaults to 'success'. */
  outcome?: AuditEvent['outcome'];
}

export interface AuditContext {
  /** The route's declared action; null on public routes. */
  readonly action: string | null;
  /**
   * Set to true once the success event is durably recorded — by the handler after the domain wrote
   * `ctx.auditEvent(...)` in the same transaction as its change, or by `record()`.
   */
  recorded: boolean;
  /**
   * Records an event through the audit recorder (durable before it resolves) and marks the request
   * audited. For handlers whose work has no store transaction to carry the event. Rejects with
   * TRESOR_ERR_UNAVAILABLE (503) when the audit log cannot be written: then nothing is served.
   */
  record(input?: AuditEventInput): Promise<void>;
}

type Part<T> = T extends TSchema ? Static<T> : undefined;

export interface RequestContext<A extends AuthMode = AuthMode, S extends RouteSchemas = RouteSchemas> {
  principal: PrincipalFor<A>;
  requestId: string;
  sourceAddress: string;
  userAgent: string | undefined;
  params: Part<S['params']>;
  query: Part<S['querystring']>;
  body: Part<S['body']>;
  /** Only the headers the route declared, validated. */
  headers: Part<S['headers']>;
  audit: AuditContext;
  /** A complete AuditEvent for this request (actor, request id, source, user agent, time filled in). */
  auditEvent(input?: AuditEventInput): AuditEvent;
}

type ResponseBody<S extends RouteSchemas, K extends keyof S['response']> = S['response'][K] extends TSchema
  ? Static<S['response'][K]>
  : never;

type ReplyFor<S extends RouteSchemas, K extends keyof S['response']> = {
  status: K;
  /** Extra response headers (ETag, Location…). Values must be visible ASCII; never echo raw input. */
  headers?: Readonly<Record<string, string>>;
} & (ResponseBody<S, K> extends null | undefined ? { body?: null } : { body: ResponseBody<S, K> });

/** One of the answers the route declared, with the body its schema describes. */
export type Reply<S extends RouteSchemas = RouteSchemas> = {
  [K in keyof S['response'] & number]: ReplyFor<S, K>;
}[keyof S['response'] & number];

/** Everything a route declares; the handler is attached with `.handle()` (see defineRoute). */
export interface RouteSpec<A extends AuthMode, S extends RouteSchemas> {
  method: HttpMethod;
  /** Fastify syntax: `/v1/collections/:name/records/:id`. */
  url: string;
  summary: string;
  description?: string;
  operationId?: string;
  tags: readonly string[];
  auth: A;
  /** True when the caller must have passed a second factor recently (step-up); API keys never have. */
  secondFactor: boolean;
  /**
   * The one operator-token scope that admits a token here (operator-scopes.ts); without it no
   * operator token reaches the route. Only on `operator` and `any-authenticated` routes without a
   * second factor: a token is a copyable secret, never a person's fresh factor.
   */
  scope?: OperatorScope;
  authorize: A extends 'none' ? 'public' : Authorize<PrincipalFor<A>>;
  schema: S;
  audit: { action: string } | 'none-public';
}

export type RouteHandler<A extends AuthMode, S extends RouteSchemas> = (
  ctx: RequestContext<A, S>,
) => Promise<Reply<S>>;

/** A checked declaration waiting for its handler. */
export interface DeclaredRoute<A extends AuthMode, S extends RouteSchemas> {
  handle(handler: RouteHandler<A, S>): RouteDefinition;
}

const ROUTE_BRAND: unique symbol = Symbol('tresor.route');

/** A checked route definition, types erased so modules can list them together. */
export interface RouteDefinition {
  readonly [ROUTE_BRAND]: true;
  readonly method: HttpMethod;
  readonly url: string;
  readonly summary: string;
  readonly description: string | undefined;
  readonly operationId: string | undefined;
  readonly tags: readonly string[];
  readonly auth: AuthMode;
  readonly secondFactor: boolean;
  readonly scope: OperatorScope | undefined;
  readonly authorize: 'public' | Authorize<HttpPrincipal>;
  /** The request schemas closed (additionalProperties: false); copies of the module's. */
  readonly schema: Readonly<RouteSchemas>;
  readonly audit: { readonly action: string } | 'none-public';
  readonly handler: (ctx: RequestContext) => Promise<ErasedReply>;
}

export interface ErasedReply {
  status: number;
  body?: unknown;
  headers?: Readonly<Record<string, string>>;
}

/** A domain's routes, as src/http/routes/<domain>.ts exports them. */
export interface RouteModule {
  name: string;
  routes: readonly RouteDefinition[];
}

/**
 * A route table that contradicts itself, met while the app is built: a programmer error that stops
 * the start-up and never reaches a client, so it is not in the error catalogue.
 */
export class RouteDefinitionError extends Error {
  constructor(route: string, problem: string) {
    super(`route ${route}: ${problem}`);
    this.name = 'RouteDefinitionError';
  }
}

/**
 * Segments of unreserved characters (RFC 3986 §2.3), never `.` or `..` (§5.2.4), or `:params`; the
 * last may be `*`, the rest of the path as the param `*` (tlog-tiles paths have a varying depth).
 */
const URL_PATTERN = /^(?:\/(?:(?!\.{1,2}(?:\/|$))[A-Za-z0-9._~-]+|:[A-Za-z][A-Za-z0-9]*))+(?:\/\*)?$/;
const ACTION_PATTERN = /^[a-z][a-z-]*(?:\.[a-z][a-z-]*)+$/;
const MAX_PARAM_LENGTH = 256;

export function routeKey(method: string, url: string): string {
  return `${method} ${url}`;
}

/**
 * Checks a route's declarations (throws RouteDefinitionError at module load when one is missing or
 * not allowed) and returns a builder for its handler:
 *
 *   defineRoute({ method: 'GET', url: '/v1/…', …, schema, audit }).handle(async (ctx) => ({ status: 200, body }))
 *
 * Two steps so TypeScript fixes the schema types before it checks the handler: in one object
 * literal it would widen `status: 200` to `number` and refuse it.
 */
export function defineRoute<const A extends AuthMode, const S extends RouteSchemas>(
  spec: RouteSpec<A, S>,
): DeclaredRoute<A, S> {
  const key = routeKey(spec.method, spec.url);
  const fail = (problem: string): never => {
    throw new RouteDefinitionError(key, problem);
  };

  if (!HTTP_METHODS.includes(spec.method)) fail(`method must be one of ${HTTP_METHODS.join(', ')}`);
  if (!URL_PATTERN.test(spec.url))
    fail('url must be /-separated segments of unreserved characters or :params');
  if (spec.summary.trim() === '') fail('summary is required (it documents the route)');
  if (spec.tags.length === 0) fail('at least one tag is required');

  const isPublic = PUBLIC_ROUTES.has(key);
  if (spec.auth === 'none') {
    if (!isPublic) fail("auth 'none' is only for the routes on PUBLIC_ROUTES");
    if (spec.authorize !== 'public') fail("a route with auth 'none' declares authorize: 'public'");
    if (spec.secondFactor) fail('a second factor needs an authenticated caller');
  } else if (typeof spec.authorize !== 'function') {
    fail("an authenticated route needs an authorize function ('public' is only for auth 'none')");
  }
  if (spec.scope !== undefined) {
    if (spec.auth !== 'operator' && spec.auth !== 'any-authenticated')
      fail("a token scope is only for 'operator' and 'any-authenticated' routes");
    if (spec.secondFactor) fail('a token scope cannot admit a route that needs a second factor');
  }
  if (spec.audit === 'none-public') {
    if (!isPublic || spec.auth !== 'none') fail("audit 'none-public' is only for public routes");
  } else if (!ACTION_PATTERN.test(spec.audit.action)) {
    fail('audit.action must look like domain.verb, e.g. record.read');
  }

  const statuses = Object.keys(spec.schema.response).map(Number);
  if (!statuses.some((s) => s >= 200 && s < 300)) fail('schema.response must declare a 2xx answer');
  if (statuses.some((s) => !Number.isInteger(s) || s < 200 || s > 599))
    fail('response keys must be statuses');

  checkParams(spec.url, spec.schema.params, fail);

  const schema: RouteSchemas = { response: copySchema(spec.schema.response) };
  if (spec.schema.params) schema.params = closeObjects(copySchema(spec.schema.params));
  if (spec.schema.querystring) schema.querystring = closeObjects(copySchema(spec.schema.querystring));
  // Headers stay open at the top: a request always carries headers the route did not declare.
  if (spec.schema.headers) schema.headers = copySchema(spec.schema.headers);
  if (spec.schema.body) schema.body = closeObjects(copySchema(spec.schema.body));

  return {
    handle(handler) {
      if (typeof handler !== 'function') fail('handle() needs the handler function');
      return Object.freeze({
        [ROUTE_BRAND]: true as const,
        method: spec.method,
        url: spec.url,
        summary: spec.summary,
        description: spec.description,
        operationId: spec.operationId,
        tags: Object.freeze([...spec.tags]),
        auth: spec.auth,
        secondFactor: spec.secondFactor,
        scope: spec.scope,
        authorize: spec.authorize as RouteDefinition['authorize'],
        schema: Object.freeze(schema),
        audit: spec.audit === 'none-public' ? spec.audit : Object.freeze({ action: spec.audit.action }),
        handler: handler as unknown as RouteDefinition['handler'],
      });
    },
  };
}

export function isRouteDefinition(value: unknown): value is RouteDefinition {
  return typeof value === 'object' && value !== null && ROUTE_BRAND in value;
}

function checkParams(url: string, params: TSchema | undefined, fail: (p: string) => never): void {
  const inUrl = [...url.matchAll(/:([A-Za-z][A-Za-z0-9]*)/g)].map((m) => m[1] as string);
  if (url.endsWith('/*')) inUrl.push('*');
  if (inUrl.length === 0) {
    if (params) fail('schema.params is declared but the url has no :params');
    return;
  }
  const p = params as { type?: unknown; properties?: Record<string, Record<string, unknown>> } | undefined;
  if (p?.type !== 'object' || !p.properties) fail('every :param needs a schema in schema.params');
  const properties = p?.properties ?? {};
  const declared = Object.keys(properties);
  for (const name of inUrl) if (!declared.includes(name)) fail(`:${name} has no schema`);
  for (const name of declared) {
    if (!inUrl.includes(name)) fail(`schema.params.${name} is not in the url`);
    const s = properties[name] ?? {};
    const bounded =
      s.type === 'string' &&
      typeof s.maxLength === 'number' &&
      s.maxLength <= MAX_PARAM_LENGTH &&
      (typeof s.pattern === 'string' || typeof s.format === 'string');
    const enumerated = Array.isArray(s.enum) || s.const !== undefined;
    if (!bounded && !enumerated) {
      fail(`:${name} must be a string with maxLength <= ${MAX_PARAM_LENGTH} and a pattern, or an enum`);
    }
  }
}

/**
 * A deep copy that keeps TypeBox's non-enumerable metadata (Value.Convert needs it to convert
 * query and path values), so closing the copy never changes a schema a module shares.
 */
function copySchema<T>(schema: T): T {
  if (typeof schema !== 'object' || schema === null) return schema;
  const copy = (Array.isArray(schema) ? [] : Object.create(Object.getPrototypeOf(schema))) as Record<
    PropertyKey,
    unknown
  >;
  for (const key of Reflect.ownKeys(schema)) {
    const descriptor = Object.getOwnPropertyDescriptor(schema, key) as PropertyDescriptor;
    if ('value' in descriptor) descriptor.value = copySchema(descriptor.value);
    Object.defineProperty(copy, key, descriptor);
  }
  return copy as T;
}

/**
 * Adds `additionalProperties: false` to every object schema that does not set it, through
 * properties, items, anyOf/oneOf and patternProperties. allOf is left alone: closing its members
 * would refuse every property the other members declare.
 */
export function closeObjects<T>(schema: T): T {
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null) return;
    if (Array.isArray(node)) {
      for (const item of node) visit(item);
      return;
    }
    const s = node as Record<string, unknown>;
    if ((s.type === 'object' || s.properties !== undefined) && s.additionalProperties === undefined) {
      s.additionalProperties = false;
    }
    for (const key of ['properties', 'patternProperties'] as const) {
      const children = s[key];
      if (typeof children === 'object' && children !== null)
        for (const child of Object.values(children)) visit(child);
    }
    for (const key of ['items', 'prefixItems', 'anyOf', 'oneOf', 'additionalProperties'] as const)
      visit(s[key]);
  };
  visit(schema);
  return schema;
}
