/**
 * The `Idempotency-Key` request header of creates (record and tenant POSTs): a client-chosen key,
 * 1–255 visible ASCII characters (anything else → 400), scoped to the caller, with a hash of the
 * request. What the key guarantees is in src/vault/idempotency.ts.
 */
import Type from 'typebox';
import { TresorError } from '../errors.ts';
import {
  IDEMPOTENCY_KEY_PATTERN,
  type IdempotentRequest,
  idempotencyRequestHash,
} from '../vault/idempotency.ts';

/** The header as routes declare it (validated here, not by the schema, so a bad key is a 400). */
export const IdempotencyKeyHeader = Type.Optional(
  Type.String({
    description:
      'Client-chosen key (1–255 visible ASCII characters) making this create safe to retry: a retry with ' +
      'the same key and request returns the first answer and creates nothing; the same key with another ' +
      'request → 422; while the first is still running → 409. Kept 24 hours (server setting).',
  }),
);

/** The request's idempotency, or undefined without the header; TRESOR_ERR_BAD_REQUEST if malformed. */
export function idempotencyOf(input: {
  header: string | undefined;
  scope: string;
  method: string;
  path: string;
  body: unknown;
}): IdempotentRequest | undefined {
  if (input.header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY_PATTERN.test(input.header)) {
    throw new TresorError(
      'TRESOR_ERR_BAD_REQUEST',
      'Idempotency-Key must be 1 to 255 visible ASCII characters',
    );
  }
  return {
    scope: input.scope,
    key: input.header,
    requestHash: idempotencyRequestHash(input.method, input.path, input.body),
  };
}
