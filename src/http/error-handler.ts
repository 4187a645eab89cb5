/**
 * Every failure becomes one RFC 9457 problem+json answer here — the TresorErrors of the layers and
 * domains (keyd's and crypto's included), Fastify's own (media type, body size, bad URL), unknown
 * routes (404) and known paths with the wrong method (405, with Allow per RFC 9110 §15.5.6).
 *
 * - 5xx answers carry no detail; nothing internal (messages, stacks, paths) reaches a client, and
 *   Fastify's messages are replaced by ours, since some of them quote the request;
 * - every 404 has the same detail whatever the cause, so a record of another tenant, a deleted one
 *   and one that never existed cannot be told apart by their answers;
 * - a failure after authentication is audited before the answer goes out (layers/audit.ts); if that
 *   cannot be recorded the answer is 503;
 * - the error is logged with the request id, never with the request body or credentials.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TresorError } from '../errors.ts';
import type { AuditRecorder } from './deps.ts';
import { AuditUnavailableError, mustAuditFailure, recordFailure } from './layers/audit.ts';
import { REQUEST_ID_HEADER } from './layers/request-id.ts';
import { PROBLEM_CONTENT_TYPE, type Problem, toProblem } from './problem.ts';
import { HTTP_METHODS } from './route.ts';
import { SECURITY_HEADERS } from './security-headers.ts';

export const NOT_FOUND_DETAIL = 'no such resource, or it is not visible to these credentials';

const FASTIFY_ERRORS: Readonly<Record<string, () => TresorError>> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () =>
    new TresorError('TRESOR_ERR_UNSUPPORTED_MEDIA_TYPE', 'request bodies must be application/json (UTF-8)'),
  FST_ERR_CTP_INVALID_TYPE: () =>
    new TresorError('TRESOR_ERR_UNSUPPORTED_MEDIA_TYPE', 'request bodies must be application/json (UTF-8)'),
  FST_ERR_CTP_BODY_TOO_LARGE: () =>
    new TresorError('TRESOR_ERR_PAYLOAD_TOO_LARGE', 'the request body is too large'),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () =>
    new TresorError('TRESOR_ERR_BAD_REQUEST', 'Content-Length does not match the body'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () =>
    new TresorError('TRESOR_ERR_MALFORMED_JSON', 'the request body is empty'),
  FST_ERR_BAD_URL: () => new TresorError('TRESOR_ERR_BAD_REQUEST', 'the request URL is malformed'),
  FST_ERR_MAX_PARAM_LENGTH: () => new TresorError('TRESOR_ERR_BAD_REQUEST', 'a path segment is too long'),
};

const BY_STATUS: Readonly<Record<number, () => TresorError>> = {
  404: () => new TresorError('TRESOR_ERR_NOT_FOUND', NOT_FOUND_DETAIL),
  405: () => new TresorError('TRESOR_ERR_METHOD_NOT_ALLOWED', 'method not allowed'),
  413: () => new TresorError('TRESOR_ERR_PAYLOAD_TOO_LARGE', 'the request body is too large'),
  415: () =>
    new TresorError('TRESOR_ERR_UNSUPPORTED_MEDIA_TYPE', 'request bodies must be application/json (UTF-8)'),
  429: () => new TresorError('TRESOR_ERR_RATE_LIMITED', 'too many requests'),
};

/** Fastify's and Node's client errors in our catalogue; anything unrecognised stays as is (→ 500). */
export function normaliseError(error: unknown): unknown {
  if (error instanceof TresorError) return error;
  const e = error as Partial<FastifyError> | null;
  const known = e?.code ? FASTIFY_ERRORS[e.code] : undefined;
  if (known) return known();
  const status = e?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return (
      BY_STATUS[status] ??
      (() => new TresorError('TRESOR_ERR_BAD_REQUEST', 'the request cannot be processed'))
    )();
  }
  return error;
}

export function problemFor(err: unknown, requestId: string): Problem & { requestId: string } {
  const problem = toProblem(err) as Problem & { requestId: string; errors?: unknown };
  if (problem.status === 404) {
    problem.detail = NOT_FOUND_DETAIL;
    delete problem.errors;
  }
  problem.requestId = requestId;
  return problem;
}

export function sendProblem(reply: FastifyReply, problem: Problem): FastifyReply {
  return reply
    .code(problem.status)
    .header('content-type', PROBLEM_CONTENT_TYPE)
    .send(JSON.stringify(problem));
}

export function errorHandler(deps: { audit: AuditRecorder; now: () => Date }) {
  return async function handleError(error: unknown, request: FastifyRequest, reply: FastifyReply) {
    let err = normaliseError(error);
    let problem = problemFor(err, request.id);
    if (mustAuditFailure(request.tresor ?? undefined, err)) {
      try {
        await recordFailure(request, problem.code, deps);
      } catch {
        err = new AuditUnavailableError();
        problem = problemFor(err, request.id);
      }
    }
    if (problem.status >= 500) {
      request.log.error({ err: error, code: problem.code }, 'request failed');
      // Headers a layer set for another answer (WWW-Authenticate, Retry-After) do not belong on a 5xx.
      reply.removeHeader('www-authenticate');
      reply.removeHeader('retry-after');
    } else {
      request.log.info({ code: problem.code, status: problem.status }, 'request refused');
    }
    setRetryAfter(reply, problem.status, err);
    return sendProblem(reply, problem);
  };
}

/**
 * `Retry-After` (RFC 9110 §10.2.3, in whole seconds) on every 429 and on a 503 that knows its wait:
 * from the error's `retryAfterSeconds` (the sign-in throttle's, rounded up where it is made), else
 * as a layer already set it (the rate limit). RFC 6585 §4 lets a 429 leave it out; ours never does,
 * and one whose wait nobody knows says the shortest, 1 s.
 */
function setRetryAfter(reply: FastifyReply, status: number, err: unknown): void {
  if (status !== 429 && status !== 503) return;
  const known = err instanceof TresorError ? err.details?.retryAfterSeconds : undefined;
  if (typeof known === 'number' && Number.isFinite(known) && known > 0) {
    reply.header('retry-after', String(Math.ceil(known)));
  } else if (status === 429 && !reply.hasHeader('retry-after')) {
    reply.header('retry-after', '1');
  }
}

/**
 * Errors Fastify meets before routing (a URL that does not decode, an over-long path parameter):
 * no hook has run, so this sets the headers layers 0 and 1 of the pipeline would have set.
 */
export function frameworkErrorHandler(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  const problem = problemFor(normaliseError(error), request.id);
  request.log.info({ code: problem.code, status: problem.status }, 'request refused');
  for (const [name, value] of SECURITY_HEADERS) reply.header(name, value);
  reply.header(REQUEST_ID_HEADER, request.id);
  reply.header('cache-control', 'no-store');
  sendProblem(reply, problem);
}

/** Unknown route: 405 when the path exists for other methods (RFC 9110 §15.5.6), else 404. */
export function notFoundHandler(app: FastifyInstance) {
  return async function handleNotFound(request: FastifyRequest, reply: FastifyReply) {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = HTTP_METHODS.filter(
      (method) => method !== request.method && app.findRoute({ method, url: path }),
    );
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      throw new TresorError('TRESOR_ERR_METHOD_NOT_ALLOWED', 'this path does not support the method');
    }
    throw new TresorError('TRESOR_ERR_NOT_FOUND', NOT_FOUND_DETAIL);
  };
}
