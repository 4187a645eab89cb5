/**
 * Layer 3: authentication. `Authorization: Bearer <token>` (RFC 6750 §2.1) is the only credential
 * the API takes; the authenticator (identity) proves it into a Principal.
 *
 * Every way of failing — no header, another scheme, a malformed token, an unknown, wrong, expired or
 * revoked one — gives the same 401 problem and the same `WWW-Authenticate: Bearer realm="tresor"`
 * (RFC 6750 §3), so the answer tells nothing about which. The authenticator does the same work for
 * each token it is given; a missing or malformed header is answered without calling it, which
 * reveals only what the caller already knows. A client error from the authenticator is folded into
 * that one 401; anything else (store down) stays an outage and is answered 503/500.
 *
 * Public routes skip this layer; every other route has a proved principal after it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { TresorError } from '../../errors.ts';
import type { Authenticator } from '../deps.ts';

/** RFC 6750 §2.1 b64token, bounded: longer than any token Tresor issues. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]{1,512}=*)$/i;

export const WWW_AUTHENTICATE = 'Bearer realm="tresor"';

/** The presented bearer token, or undefined when the header is absent or not a Bearer token. */
export function bearerTokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  return BEARER.exec(header)?.[1];
}

export function unauthenticated(): TresorError {
  return new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'a valid bearer token is required');
}

export function authentication(authenticate: Authenticator) {
  return async function authenticationLayer(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const route = request.tresor.route;
    if (!route || route.auth === 'none') return;
    const token = bearerTokenOf(request);
    if (token === undefined) {
      reply.header('www-authenticate', WWW_AUTHENTICATE);
      throw unauthenticated();
    }
    let principal: Awaited<ReturnType<Authenticator>>;
    try {
      principal = await authenticate(token);
    } catch (err) {
      if (err instanceof TresorError && err.status < 500) {
        reply.header('www-authenticate', WWW_AUTHENTICATE);
        throw unauthenticated();
      }
      throw err;
    }
    if (principal.kind === 'system') {
      // The server's own jobs never come in over HTTP; a token that proves one is a bug upstream.
      throw new TresorError('TRESOR_ERR_INTERNAL', 'authenticator returned a system principal');
    }
    request.tresor.principal = principal;
  };
}
