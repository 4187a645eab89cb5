/**
 * Part of layer 1: a request that sends Content-Type, Content-Length or Authorization more than
 * once is refused (400). Node keeps the first of some repeated headers and joins others, so two
 * parts of a system (a proxy, the body parser, authentication) could each act on a different
 * value; refusing is the only reading all agree on. Counted on the raw headers, which keep every
 * occurrence. (A real socket's parser already refuses a repeated Content-Length; this covers the
 * rest and anything that builds requests without it.)
 */
import type { FastifyRequest } from 'fastify';
import { TresorError } from '../../errors.ts';

export const SINGLE_HEADERS = ['content-type', 'content-length', 'authorization'] as const;

export function rejectDuplicateHeaders(request: FastifyRequest): void {
  const raw = request.raw.rawHeaders;
  const seen = new Set<string>();
  // rawHeaders alternates names and values.
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (!(SINGLE_HEADERS as readonly string[]).includes(name)) continue;
    if (seen.has(name)) {
      throw new TresorError('TRESOR_ERR_BAD_REQUEST', `the ${name} header must be sent at most once`);
    }
    seen.add(name);
  }
}
