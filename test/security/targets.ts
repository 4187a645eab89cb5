/**
 * The operations the scanners attack, from the served OpenAPI document (what an outside attacker
 * sees) joined with the route table (who may call each): method, path template, parameters, the
 * JSON body's schema, and the credentials that fit the operation.
 */

import type { AuthMode } from '../../src/http/route.ts';
import { allRouteModules, specOnlyDependencies } from '../../src/http/routes/index.ts';

export type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  required?: string[];
  $ref?: string;
  minimum?: number;
  maximum?: number;
  [key: string]: unknown;
};

export interface Parameter {
  in: 'path' | 'query' | 'header';
  name: string;
  schema: JsonSchema;
}

/** Which credentials an operation is called with. */
export type Caller = 'anonymous' | 'tenant-key' | 'admin-session';

export interface Operation {
  method: string;
  /** The path template: /v1/collections/{name}/records/{id} */
  path: string;
  key: string;
  parameters: Parameter[];
  body: JsonSchema | undefined;
  caller: Caller;
  /** Who the route admits (the route table; `authOf` for a document of another server). */
  auth: AuthMode;
  /** The operator-token scope that admits a token here, if any (src/identity/operator-scopes.ts). */
  scope: string | undefined;
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, Record<string, unknown>>>;
  components?: { schemas?: Record<string, JsonSchema> };
}

function callerFor(auth: AuthMode): Caller {
  switch (auth) {
    case 'none':
      return 'anonymous';
    case 'api-key':
    case 'tenant-data':
    case 'any-authenticated':
      return 'tenant-key';
    case 'operator':
    case 'session':
      return 'admin-session';
  }
}

/** Resolves `#/components/schemas/X` references (one level at a time, as they are met). */
export function deref(doc: OpenApiDocument, schema: JsonSchema | undefined): JsonSchema | undefined {
  if (schema?.$ref === undefined) return schema;
  const name = schema.$ref.replace('#/components/schemas/', '');
  return deref(doc, doc.components?.schemas?.[name]);
}

/** Every operation of the document; `authOf` defaults to the route table. */
export function operationsOf(
  doc: OpenApiDocument,
  authOf: (key: string, security: unknown) => AuthMode | undefined = routeTableAuth(),
  scopeOf: (key: string) => string | undefined = routeTableScope(),
): Operation[] {
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(methods)) {
      const method = m.toUpperCase();
      const key = `${method} ${path}`;
      const auth = authOf(key, op.security);
      if (auth === undefined) throw new Error(`${key} is served but no route defines who may call it`);
      const parameters = ((op.parameters as Parameter[] | undefined) ?? []).map((p) => ({
        in: p.in,
        name: p.name,
        schema: deref(doc, p.schema) ?? {},
      }));
      const content = (op.requestBody as { content?: Record<string, { schema?: JsonSchema }> } | undefined)
        ?.content;
      const body = deref(doc, content?.['application/json']?.schema);
      ops.push({ method, path, key, parameters, body, caller: callerFor(auth), auth, scope: scopeOf(key) });
    }
  }
  return ops;
}

function routeTable(): Map<string, { auth: AuthMode; scope: string | undefined }> {
  const table = new Map<string, { auth: AuthMode; scope: string | undefined }>();
  for (const route of allRouteModules(specOnlyDependencies()).flatMap((m) => m.routes)) {
    table.set(`${route.method} ${route.url.replace(/:([A-Za-z0-9]+)/g, '{$1}').replace(/\/\*$/, '/{*}')}`, {
      auth: route.auth,
      scope: route.scope,
    });
  }
  return table;
}

function routeTableAuth(): (key: string, security: unknown) => AuthMode | undefined {
  const table = routeTable();
  return (key, security) =>
    table.get(key)?.auth ?? (Array.isArray(security) && security.length === 0 ? 'none' : undefined);
}

function routeTableScope(): (key: string) => string | undefined {
  const table = routeTable();
  return (key) => table.get(key)?.scope;
}

/** Operations whose failure ends or locks the admin session (a wrong second factor, a logout). */
export const ENDS_SESSION = /\/auth\/reauthenticate|\/auth\/logout|revoke-all|^DELETE \/v1\/sessions/;

/**
 * Operations that end or lock the caller's own session come last, so they do not cut the fuzzing
 * of the others short (they are still fuzzed).
 */
export function sessionEndingLast(ops: Operation[]): Operation[] {
  const ends = (o: Operation) => ENDS_SESSION.test(o.key);
  return [...ops.filter((o) => !ends(o)), ...ops.filter(ends)];
}
