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
 * timeout. Beyond that the connection is left as Node leaves it: a keep-alive connection goes on
 * reading and dropping the rest after the answer (bounded by the request timeout), so a client still
 * sending its body is not cut off (EPIPE) mid-write.
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
  return async function awaitUnreadBody(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const raw = request.raw;
    if (raw.complete || raw.readableEnded || raw.destroyed || !declaresBody(raw.headers)) return;
    const declared = Number(raw.headers['content-length'] ?? 0);
    if (declared <= limits.maxBytes) await drained(raw, limits);
  };
}

/** A body follows the headers (RFC 9112 §6.3): a transfer coding, or a length above zero. */
function declaresBody(headers: IncomingHttpHeaders): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && length !== '0';
}

/** Reads the rest of the body and drops it, until it ends, the limit is passed or the time is up. */
function drained(raw: IncomingMessage, limits: UnreadBodyLimits): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const finish = () => {
      clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', finish);
      raw.off('close', finish);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limits.maxBytes) finish();
    };
    const timer = setTimeout(finish, limits.maxWaitMs);
    raw.on('data', onData);
    raw.once('end', finish);
    raw.once('close', finish);
    raw.resume();
  });
}
