/**
 * Layer 1: request id and limits. Every request gets an id that ties its log lines, its problem
 * answer and its audit event together. A caller's `X-Request-Id` is kept only when it is a short
 * token of safe characters — it is echoed in a response header and written to logs and the audit
 * log, so nothing else from the caller is; otherwise the id is fresh (128 random bits). The random
 * bits come from the CSPRNG 16 KiB at a time (one randomBytes call per 1,024 ids instead of one per
 * request); each 16-byte slice is handed out once and never reused.
 *
 * Limits that need no body: a declared Content-Length above the body limit is refused (413) here,
 * before authentication, so an oversized upload is never read. Bodies without a length (chunked)
 * are cut off at the same limit while they are read (json-body.ts). Header size and count, and the
 * header, request and idle timeouts, are the HTTPS server's (server.ts).
 *
 * Every answer is `Cache-Control: no-store` (RFC 9111 §5.2.2.5): customer data must not stay in
 * browser or proxy caches, and probes and errors lose nothing by it.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { pooledRandomBytes } from '../../crypto/index.ts';
import { TresorError } from '../../errors.ts';
import { newRequestState } from '../request-state.ts';

export const REQUEST_ID_HEADER = 'x-request-id';
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const ID_BYTES = 16;

/** 128 fresh random bits as 22 base64url characters. */
export function newRequestId(): string {
  return pooledRandomBytes(ID_BYTES).toString('base64url');
}

/** Fastify's genReqId: the caller's id when it is safe to echo, a fresh one otherwise. */
export function requestIdFor(req: IncomingMessage): string {
  const offered = req.headers[REQUEST_ID_HEADER];
  if (typeof offered === 'string' && REQUEST_ID_PATTERN.test(offered)) return offered;
  return newRequestId();
}

export function requestIdAndLimits(options: { bodyLimit: number }) {
  return async function requestIdAndLimitsLayer(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    request.tresor = newRequestState(request.routeOptions.config.tresor);
    reply.header(REQUEST_ID_HEADER, request.id);
    reply.header('cache-control', 'no-store');
    const length = request.headers['content-length'];
    if (length !== undefined && Number(length) > options.bodyLimit) {
      throw new TresorError(
        'TRESOR_ERR_PAYLOAD_TOO_LARGE',
        `request bodies are limited to ${options.bodyLimit} bytes`,
      );
    }
  };
}
