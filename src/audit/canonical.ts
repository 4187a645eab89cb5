/**
 * The bytes an audit entry is hashed as: its RFC 8785 (JCS) canonical JSON in UTF-8, so an outside
 * verifier holding the entry as JSON can recompute the leaf hash with any JCS implementation.
 * The `canonicalize` package does the serialisation (property names sorted by UTF-16 code units,
 * ECMAScript number formatting, no whitespace); it refuses NaN, Infinity, lone surrogates and cycles.
 */
import canonicalize from 'canonicalize';
import { TresorError } from '../errors.ts';

export type CanonicalJsonErrorCode = 'TRESOR_ERR_CANONICAL_JSON';

export class CanonicalJsonError extends TresorError<CanonicalJsonErrorCode> {
  constructor(message: string) {
    super('TRESOR_ERR_CANONICAL_JSON', message);
  }
}

/** RFC 8785 canonical JSON of `value`; throws CanonicalJsonError for what JSON cannot represent. */
export function canonicalJson(value: unknown): string {
  let text: string | undefined;
  try {
    text = canonicalize(value);
  } catch (err) {
    // RFC 8785 §3.2.2.3: NaN and Infinity are not JSON; I-JSON (RFC 7493) forbids lone surrogates.
    throw new CanonicalJsonError(`value has no canonical JSON form: ${(err as Error).message}`);
  }
  if (text === undefined) throw new CanonicalJsonError('value has no JSON form');
  return text;
}

/** The leaf bytes of an audit entry: UTF-8 of its canonical JSON (RFC 8785 §3.2.4). */
export function leafBytes(entry: unknown): Buffer {
  return Buffer.from(canonicalJson(entry), 'utf8');
}
