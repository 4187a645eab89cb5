/**
 * The last step: run the route's handler with a RequestContext built from what the layers proved,
 * then check what it hands back before anything is sent —
 *
 * - the success audit event was recorded (Invariant 4), else 500 and nothing served;
 * - the status is one the route declared (its schema serialises the body: undeclared fields of a
 *   declared object are dropped, never leaked);
 * - extra headers are visible ASCII only, so no handler can split a response with CR/LF
 *   (RFC 9110 §5.5) or echo raw input into a header.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { TresorError } from '../errors.ts';
import { auditEventFor, userAgentOf } from './layers/audit.ts';
import type { RequestContext, RouteDefinition } from './route.ts';

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
const HEADER_VALUE = /^[\x20-\x7e]{0,1024}$/;

function internal(message: string): TresorError {
  return new TresorError('TRESOR_ERR_INTERNAL', message);
}

export function routeHandler(route: RouteDefinition, now: () => Date) {
  return async function handler(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const state = request.tresor;
    const { input, audit } = state;
    if (!input || !audit) throw internal('handler reached before validation and audit');
    state.layer = 'handler';

    const ctx: RequestContext = {
      principal: state.principal,
      requestId: request.id,
      sourceAddress: request.ip,
      userAgent: userAgentOf(request),
      params: input.params,
      query: input.query,
      body: input.body,
      headers: input.headers,
      audit,
      auditEvent: (eventInput) => auditEventFor(request, route, now(), eventInput),
    } as RequestContext;

    const result = await route.handler(ctx);

    if (route.audit !== 'none-public' && !audit.recorded) {
      request.log.error(
        { route: `${route.method} ${route.url}` },
        'handler returned without recording its audit event',
      );
      throw internal('handler returned without recording its audit event');
    }
    if (!Object.hasOwn(route.schema.response, result.status)) {
      throw internal(`handler answered undeclared status ${result.status}`);
    }
    for (const [name, value] of Object.entries(result.headers ?? {})) {
      if (!HEADER_NAME.test(name) || !HEADER_VALUE.test(value))
        throw internal('handler set an invalid header');
      reply.header(name, value);
    }
    reply.code(result.status);
    if (result.status === 204 || result.body === undefined || result.body === null) return reply.send();
    return reply.send(result.body);
  };
}
