/**
 * Opaque pagination cursors. A cursor names the creation position (`seq`) of the last record a page
 * returned, and is authenticated so a client can only hand back cursors we issued, for the same
 * tenant, collection and query: an edited, truncated or transplanted cursor is refused with
 * TRESOR_ERR_INVALID_CURSOR (400), never interpreted.
 *
 *   base64url( 0x01 ‖ seq: u64 big-endian ‖ tag: 16 bytes )
 *   tag = HMAC-SHA-256(cursor key, "tresor-cursor-v1" ‖ encodeAad('cursor-query', {field: mac}) ‖ 0x01 ‖ seq)[0..16]
 *
 * The cursor key is derived (HKDF, one purpose per key) from the collection's pinned blind-index key
 * with the scope field "$cursor", a name no field can have, so stateless API nodes share it without
 * new key material. The query enters as the blind-index MACs of its terms, never as values.
 * A 128-bit tag is far beyond what online guessing can reach (NIST SP 800-107r1 §5.3.4 allows
 * truncated HMAC tags).
 */
import { createHmac } from 'node:crypto';
import { constantTimeEqual, deriveBlindIndexKey, encodeAad } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';

const FORMAT = 0x01;
const TAG_BYTES = 16;
const CURSOR_BYTES = 1 + 8 + TAG_BYTES;
const DOMAIN = Buffer.from('tresor-cursor-v1', 'utf8');
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** The scope name of the cursor key: '$' cannot start a field name (src/vault/schema.ts). */
export const CURSOR_SCOPE_FIELD = '$cursor';

export function deriveCursorKey(blindIndexKey: Uint8Array, tenant: string, collection: string): Buffer {
  return deriveBlindIndexKey(blindIndexKey, { tenant, collection, field: CURSOR_SCOPE_FIELD });
}

/** The query a cursor belongs to: searched field names and their blind-index MACs. */
export type CursorQuery = ReadonlyArray<{ field: string; mac: Uint8Array }>;

function tag(key: Uint8Array, query: CursorQuery, body: Buffer): Buffer {
  const terms = Object.fromEntries(query.map((t) => [t.field, Buffer.from(t.mac).toString('base64')]));
  return createHmac('sha256', key)
    .update(DOMAIN)
    .update(encodeAad('cursor-query', terms))
    .update(body)
    .digest()
    .subarray(0, TAG_BYTES);
}

export function encodeCursor(key: Uint8Array, query: CursorQuery, seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError('cursor position must be a safe integer');
  const body = Buffer.alloc(9);
  body[0] = FORMAT;
  body.writeBigUInt64BE(BigInt(seq), 1);
  return Buffer.concat([body, tag(key, query, body)]).toString('base64url');
}

/** The position a cursor names; anything we did not issue for this query is refused. */
export function decodeCursor(key: Uint8Array, query: CursorQuery, cursor: unknown): number {
  const invalid = () =>
    new TresorError('TRESOR_ERR_INVALID_CURSOR', 'the cursor is malformed or was altered');
  if (typeof cursor !== 'string' || cursor.length > 64 || !BASE64URL.test(cursor)) throw invalid();
  const bytes = Buffer.from(cursor, 'base64url');
  // Refuse non-canonical encodings too, so one cursor has exactly one spelling.
  if (bytes.length !== CURSOR_BYTES || bytes.toString('base64url') !== cursor) throw invalid();
  const body = bytes.subarray(0, 9);
  if (!constantTimeEqual(tag(key, query, body), bytes.subarray(9))) throw invalid();
  if (body[0] !== FORMAT) throw invalid();
  const seq = body.readBigUInt64BE(1);
  if (seq > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid();
  return Number(seq);
}
