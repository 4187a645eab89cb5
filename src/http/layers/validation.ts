/**
 * Layer 6: schema validation of everything the handler will read — path parameters, query, the
 * declared headers and the body — against the route's (closed) schemas, with TypeBox's compiled
 * checker. It runs after authorization, so only a caller allowed to ask gets to learn what a valid
 * request looks like.
 *
 * Path, query and header values arrive as text and are converted to the declared types first
 * ("12" → 12); a body is JSON and is checked as it is, never coerced: `"age": "12"` is a wrong type.
 * A route that declares no query, body or headers takes none: unvalidated input never reaches a
 * handler. The handler sees only the declared headers.
 *
 * Failures: 400 for path, query and headers; 422 for a body that is JSON but not what the route
 * takes (TRESOR_ERR_UNKNOWN_FIELDS when the only fault is undeclared fields). The problem's
 * `errors` maps a JSON pointer (RFC 6901) per fault — `/body/address/zip`, `/query/limit` — to
 * what is wrong; the offending value is never repeated.
 */
import type { FastifyRequest } from 'fastify';
import type { TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { Value } from 'typebox/value';
import { TresorError } from '../../errors.ts';
import type { RouteDefinition } from '../route.ts';

type Part = 'params' | 'query' | 'headers' | 'body';
type Checker = ReturnType<typeof Compile>;

interface RouteValidators {
  params?: Checker;
  query?: Checker;
  headers?: Checker;
  headerNames: readonly string[];
  body?: Checker;
}

const MAX_REPORTED = 20;
const MAX_TOKEN_CHARS = 64;
const compiled = new WeakMap<RouteDefinition, RouteValidators>();

/** Compiles a route's validators once (at registration, so a bad schema fails at start). */
export function validatorsFor(route: RouteDefinition): RouteValidators {
  let v = compiled.get(route);
  if (!v) {
    const { params, querystring, headers, body } = route.schema;
    const headerProperties = (headers as { properties?: Record<string, unknown> } | undefined)?.properties;
    v = {
      params: params && Compile(params),
      query: querystring && Compile(querystring),
      headers: headers && Compile(headers),
      headerNames: Object.keys(headerProperties ?? {}).map((h) => h.toLowerCase()),
      body: body && Compile(body),
    };
    compiled.set(route, v);
  }
  return v;
}

interface Fault {
  instancePath: string;
  keyword: string;
  message: string;
  params?: Record<string, unknown>;
}

function escapeToken(token: string): string {
  return token.slice(0, MAX_TOKEN_CHARS).replace(/~/g, '~0').replace(/\//g, '~1');
}

function faultsOf(
  part: Part,
  checker: Checker,
  value: unknown,
): { errors: Record<string, string>; unknownOnly: boolean } {
  const errors: Record<string, string> = {};
  let unknownOnly = true;
  for (const fault of checker.Errors(value) as Iterable<Fault>) {
    if (Object.keys(errors).length >= MAX_REPORTED) break;
    const path = fault.instancePath
      .split('/')
      .map((t) => t.slice(0, MAX_TOKEN_CHARS))
      .join('/');
    if (fault.keyword === 'additionalProperties') {
      const names = (fault.params?.additionalProperties as unknown[] | undefined) ?? [];
      for (const name of names)
        errors[`/${part}${path}/${escapeToken(String(name))}`] ??= 'is not a known field';
      continue;
    }
    if (fault.keyword === 'required') {
      const names = (fault.params?.requiredProperties as unknown[] | undefined) ?? [];
      for (const name of names) errors[`/${part}${path}/${escapeToken(String(name))}`] ??= 'is required';
      unknownOnly = false;
      continue;
    }
    // TypeBox also reports each undeclared field against `additionalProperties: false` itself.
    if (fault.keyword === 'boolean' && fault.message === 'schema is false') continue;
    unknownOnly = false;
    errors[`/${part}${path}`] ??= fault.message;
  }
  return { errors, unknownOnly };
}

function refuse(part: Part, checker: Checker, value: unknown): never {
  const { errors, unknownOnly } = faultsOf(part, checker, value);
  if (part === 'body') {
    if (unknownOnly)
      throw new TresorError('TRESOR_ERR_UNKNOWN_FIELDS', 'the request body has unknown fields', errors);
    throw new TresorError('TRESOR_ERR_VALIDATION', 'the request body does not match the schema', errors);
  }
  const where = part === 'query' ? 'query parameters' : part === 'params' ? 'path parameters' : 'headers';
  throw new TresorError('TRESOR_ERR_BAD_REQUEST', `the ${where} do not match the schema`, errors);
}

function convertAndCheck(part: Part, checker: Checker, schema: TSchema, raw: unknown): unknown {
  // A wildcard route's `*` param is a string and needs no conversion; TypeBox's Convert cannot take it
  // (it builds a regular expression from the property names, and `^*$` is none).
  const wildcard =
    part === 'params' && Object.hasOwn((schema as { properties?: object }).properties ?? {}, '*');
  const value = wildcard ? raw : Value.Convert(schema, raw);
  if (!checker.Check(value)) refuse(part, checker, value);
  return value;
}

export function validation() {
  return async function validationLayer(request: FastifyRequest): Promise<void> {
    const route = request.tresor.route;
    if (!route) return;
    const v = validatorsFor(route);
    const { schema } = route;

    const params =
      v.params && schema.params ? convertAndCheck('params', v.params, schema.params, request.params) : {};

    const rawQuery = request.query as Record<string, unknown>;
    let query: unknown;
    if (v.query && schema.querystring)
      query = convertAndCheck('query', v.query, schema.querystring, rawQuery);
    else if (Object.keys(rawQuery).length > 0) {
      throw new TresorError('TRESOR_ERR_BAD_REQUEST', 'this operation takes no query parameters');
    }

    let headers: unknown;
    if (v.headers && schema.headers) {
      const declared: Record<string, unknown> = {};
      for (const name of v.headerNames) {
        if (request.headers[name] !== undefined) declared[name] = request.headers[name];
      }
      headers = convertAndCheck('headers', v.headers, schema.headers, declared);
    }

    let body: unknown;
    if (v.body) {
      if (!v.body.Check(request.body)) refuse('body', v.body, request.body);
      body = request.body;
    } else if (request.body !== undefined) {
      throw new TresorError('TRESOR_ERR_BAD_REQUEST', 'this operation takes no request body');
    }

    request.tresor.input = { params, query, headers, body };
  };
}
