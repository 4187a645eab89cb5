/**
 * The security headers of every answer, computed ONCE from helmet's policies and then set by one
 * onRequest hook (layer 0 of the pipeline). @fastify/helmet rebuilt helmet's middleware chain and
 * re-parsed the CSP directives on every request: a twentieth of a record read's CPU for a header
 * set that never changes. The policy is the same: API answers are JSON, so nothing may load from or
 * frame them; /docs and /signin set their own CSP in their handlers, which overrides this one.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import helmet, { type HelmetOptions } from 'helmet';

/** HSTS for two years with subdomains (RFC 6797 §6.1; ≥ 1 year is what preload lists ask). */
export const HSTS_MAX_AGE_SECONDS = 63_072_000;

export const SECURITY_HEADER_POLICY: Readonly<HelmetOptions> = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      defaultSrc: ["'none'"],
      frameAncestors: ["'none'"],
      baseUri: ["'none'"],
      formAction: ["'none'"],
    },
  },
  strictTransportSecurity: { maxAge: HSTS_MAX_AGE_SECONDS, includeSubDomains: true, preload: false },
  xFrameOptions: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
  crossOriginResourcePolicy: { policy: 'same-origin' },
  crossOriginOpenerPolicy: { policy: 'same-origin' },
};

/** The headers helmet's middleware sets for `policy`, run once against a recording response. */
export function securityHeadersOf(policy: Readonly<HelmetOptions>): ReadonlyArray<readonly [string, string]> {
  const headers = new Map<string, string>();
  const recorder = {
    setHeader(name: string, value: unknown) {
      headers.set(name.toLowerCase(), String(value));
    },
    removeHeader(name: string) {
      headers.delete(name.toLowerCase());
    },
  };
  let finished = false;
  helmet(policy as HelmetOptions)(
    {} as IncomingMessage,
    recorder as unknown as ServerResponse,
    (err?: unknown) => {
      if (err) throw err;
      finished = true;
    },
  );
  // Every policy above is static; one that needed the request (a nonce) would not finish here.
  if (!finished) throw new Error('helmet did not finish synchronously: a policy needs the request');
  return [...headers];
}

/** Set on every answer, including those Fastify gives before any hook runs (error-handler.ts). */
export const SECURITY_HEADERS = securityHeadersOf(SECURITY_HEADER_POLICY);

export function securityHeadersLayer(
  _request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
): void {
  for (const [name, value] of SECURITY_HEADERS) reply.header(name, value);
  done();
}
