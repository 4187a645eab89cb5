/**
 * What the pipeline learns about one request as it passes the layers, kept on the request object
 * (`request.tresor`) so each layer and the error handler read what the earlier layers proved.
 * Only the pipeline writes it; handlers receive a RequestContext built from it.
 */
import type { RefusedGrantView } from './deps.ts';
import type { AuditContext, HttpPrincipal, RouteDefinition } from './route.ts';

export interface ValidatedInput {
  params: unknown;
  query: unknown;
  headers: unknown;
  body: unknown;
}

export interface RequestState {
  /** The route's definition; undefined for requests that matched no route (404/405). */
  route: RouteDefinition | undefined;
  /** Set by the authentication layer; null before it and on public routes. */
  principal: HttpPrincipal | null;
  /** The layer running now ('handler' for the handler), so a failure can be classified as denied or failed. */
  layer: string | undefined;
  /** Set by the validation layer. */
  input: ValidatedInput | undefined;
  /** Set by the audit layer. */
  audit: AuditContext | undefined;
  /** Set by the authorization layer when it refuses a named grant that exists: the attempt's tenant. */
  refusedGrant?: RefusedGrantView;
}

declare module 'fastify' {
  interface FastifyRequest {
    tresor: RequestState;
  }
  interface FastifyContextConfig {
    tresor?: RouteDefinition;
  }
}

export function newRequestState(route: RouteDefinition | undefined): RequestState {
  return { route, principal: null, layer: undefined, input: undefined, audit: undefined };
}
