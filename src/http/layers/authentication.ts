/**
 * Layer 3: authentication. Two credentials reach the API:
 *
 * - `Authorization: Bearer <token>` (RFC 6750 §2.1): tenant API keys and scoped operator
 *   tokens, proved by the authenticator (identity) into a Principal;
 * - the console's session cookie `__Host-tresor_session` (HttpOnly, Secure, SameSite=Strict),
 *   looked up server-side (src/identity/sessions.ts). A session request that can change state
 *   (anything but GET, HEAD, OPTIONS) must also carry the session's CSRF token in `X-CSRF-Token`
 *   (OWASP: synchronizer token, on top of SameSite), checked here before anything else runs;
 *   and it must come from the server's own origin (`sameOrigin` below), or it is refused with 403
 *   TRESOR_ERR_ORIGIN_REFUSED, audited as denied.
 *
 * A request with an Authorization header is judged by it alone: a cookie beside it is ignored, so
 * a script's key never mixes with a browser's session. Every way of failing — no credential,
 * another scheme, a malformed, unknown, wrong, expired or revoked token or cookie — gives the same
 * 401 problem and the same `WWW-Authenticate: Bearer realm="tresor"` (RFC 6750 §3), so the answer
 * tells nothing about which. A client error from the authenticator is folded into that one 401;
 * anything else (store down) stays an outage and is answered 503/500.
 *
 * Public routes skip this layer; every other route has a proved principal after it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { TresorError } from '../../errors.ts';
import { SESSION_COOKIE_NAME } from '../../identity/sessions.ts';
import type { Authenticator, RequestMeta, SessionAuthenticator } from '../deps.ts';
import type { HttpPrincipal } from '../route.ts';

/** RFC 6750 §2.1 b64token, bounded: longer than any token Tresor issues. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]{1,512}=*)$/i;
const SESSION_TOKEN = /^[A-Za-z0-9_-]{43}$/;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
export const CSRF_HEADER = 'x-csrf-token';

export const WWW_AUTHENTICATE = 'Bearer realm="tresor"';

/**
 * Whether a cookie-borne request comes from one of the server's own origins (OWASP CSRF Prevention
 * Cheat Sheet, "Verifying Origin with standard headers"), so that a page elsewhere that obtained or
 * guessed a CSRF token still cannot act through a visitor's session:
 * - `Origin` (RFC 6454 §7), which browsers send on every cross-origin request and on same-origin
 *   ones that are not GET/HEAD: it must be one of ours exactly; the opaque `null` never is;
 * - without it (older browsers, some privacy settings), `Sec-Fetch-Site` must be `same-origin` and
 *   `Referer`'s origin one of ours — each that is present, and at least one of them;
 * - with none of the three, the request is refused: a browser always sends one of them, and the
 *   console's non-browser clients (the CLI) send `Origin` themselves.
 */
export function sameOrigin(request: FastifyRequest, own: readonly string[]): boolean {
  const { origin, referer } = request.headers;
  if (typeof origin === 'string') return own.includes(origin);
  const site = request.headers['sec-fetch-site'];
  if (site === undefined && referer === undefined) return false;
  if (site !== undefined && site !== 'same-origin') return false;
  if (referer === undefined) return true;
  try {
    return own.includes(new URL(referer).origin);
  } catch {
    return false;
  }
}

export function originRefused(): TresorError {
  return new TresorError(
    'TRESOR_ERR_ORIGIN_REFUSED',
    "a cookie-authenticated change must come from the server's own origin",
  );
}

/** The presented bearer token, or undefined when the header is absent or not a Bearer token. */
export function bearerTokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  return BEARER.exec(header)?.[1];
}

/**
 * The session token from the Cookie header (RFC 6265 §5.4), or undefined. Only a well-formed value
 * is returned; more than one session cookie is refused (a planted second cookie must not win).
 */
export function sessionTokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== 'string' || header.length > 8192) return undefined;
  let found: string | undefined;
  let count = 0;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== SESSION_COOKIE_NAME) continue;
    count += 1;
    found = part.slice(eq + 1).trim();
  }
  if (count !== 1 || found === undefined || !SESSION_TOKEN.test(found)) return count > 0 ? '' : undefined;
  return found;
}

/**
 * The pipeline's 401 when no credential got through: unlike identity's refusal
 * (src/identity/unauthenticated.ts), it tells the client what the route needs.
 */
export function credentialRequired(): TresorError {
  return new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'a valid bearer token or session is required');
}

export function requestMeta(request: FastifyRequest): RequestMeta {
  const ua = request.headers['user-agent'];
  return {
    requestId: request.id,
    sourceAddress: request.ip,
    ...(typeof ua === 'string' ? { userAgent: ua.slice(0, 256) } : {}),
  };
}

/**
 * `ownOrigins`: the server's own origins (server.ts: the public URL, the console's origins and where
 * it listens); without it no cookie-authenticated change is taken.
 */
export function authentication(
  authenticate: Authenticator,
  sessions?: SessionAuthenticator,
  ownOrigins: () => readonly string[] = () => [],
) {
  const refuse = (reply: FastifyReply): never => {
    reply.header('www-authenticate', WWW_AUTHENTICATE);
    throw credentialRequired();
  };
  /** Runs a credential check; its client errors become the one 401, outages stay outages. */
  const prove = async <T>(reply: FastifyReply, check: () => Promise<T>): Promise<T> => {
    try {
      return await check();
    } catch (err) {
      if (err instanceof TresorError && err.status < 500) return refuse(reply);
      throw err;
    }
  };

  return async function authenticationLayer(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const route = request.tresor.route;
    if (!route || route.auth === 'none') return;

    if (request.headers.authorization !== undefined || !sessions) {
      const token = bearerTokenOf(request);
      if (token === undefined) return refuse(reply);
      const principal = await prove(reply, () => authenticate(token));
      if (principal.kind === 'system' || principal.kind === 'session' || principal.kind === 'staff-grant') {
        // Jobs never come in over HTTP, and sessions never by bearer token: a bug upstream.
        throw new TresorError('TRESOR_ERR_INTERNAL', 'authenticator returned a non-bearer principal');
      }
      request.tresor.principal = principal;
      return;
    }

    const token = sessionTokenOf(request);
    if (!token) return refuse(reply);
    const meta = requestMeta(request);
    const principal = await prove(reply, () => sessions.authenticate(token, meta));
    if (!SAFE_METHODS.has(request.method)) {
      if (!sameOrigin(request, ownOrigins())) {
        // The principal is known, so the error handler audits the refusal as denied.
        request.tresor.principal = principal;
        throw originRefused();
      }
      const presented = request.headers[CSRF_HEADER];
      // A refused CSRF token is 403 TRESOR_ERR_CSRF (the session is real; the request is not its own).
      await sessions.verifyCsrf(principal, typeof presented === 'string' ? presented : undefined, meta);
    }
    request.tresor.principal = principal satisfies HttpPrincipal;
  };
}
