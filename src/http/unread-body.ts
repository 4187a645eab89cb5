/**
 * An answer goes out after the request's body has arrived.
 *
 * Fastify answers some requests without reading their body: GET and HEAD take none, and a request
 * refused before its body is parsed (401, 403, 404, 429) is answered at once. Node then closes the
 * connection right after the answer when the client asked for that, and a socket closed with
 * request bytes still unread, or still arriving, is reset rather than closed: the client's TCP stack
 * may then throw away the answer it had not yet read (RFC 9112 §9.6, "tear-down"). The fuzzer's GET
 * of the OpenAPI document with a 60 KB body met exactly that on a loaded machine: no answer, a reset.
 *
 * So the rest of a declared body is read and dropped before the answer is sent — at most the body
 * limit (a larger body was refused unread, 413, and is not waited for) and for at most the request
 * timeout. When the rest is not waited for, the answer closes the connection.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';

export interface UnreadBodyLimits {
  /** Bytes read and dropped at most (the body limit). */
  maxBytes: number;
  /** How long an answer waits for the rest at most (the request timeout). */
  maxWaitMs: number;
}

export function awaitUnreadBody(limits: UnreadBodyLimits) {
  return async function awaitUnreadBody(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const raw = request.raw;
    if (raw.complete || raw.readableEnded || raw.destroyed || !declaresBody(raw.headers)) return;
    const declared = Number(raw.headers['content-length'] ?? 0);
    const arrived = declared <= limits.maxBytes && (await drained(raw, limits));
    if (!arrived) reply.header('connection', 'close');
  };
}

/** A body follows the headers (RFC 9112 §6.3): a transfer coding, or a length above zero. */
function declaresBody(headers: IncomingHttpHeaders): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && length !== '0';
}

/** Reads the rest of the body and drops it; true when it all arrived within the limits. */
function drained(raw: IncomingMessage, limits: UnreadBodyLimits): Promise<boolean> {
  return new Promise((resolve) => {
    let seen = 0;
    const finish = (arrived: boolean) => {
      clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('close', onClose);
      resolve(arrived);
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limits.maxBytes) finish(false);
    };
    const onEnd = () => finish(true);
    const onClose = () => finish(raw.complete);
    const timer = setTimeout(() => finish(false), limits.maxWaitMs);
    raw.on('data', onData);
    raw.once('end', onEnd);
    raw.once('close', onClose);
    raw.resume();
  });
}
