/**
 * Blind indexes: equality search without decrypting. A searchable field's value is stored beside
 * its ciphertext as HMAC-SHA-256 under a key derived for that tenant, collection and field, so the
 * same value in two fields (or two tenants) gives unrelated indexes, and the index key is never
 * the data key (one purpose per key).
 */
import { createHmac } from 'node:crypto';
import { encodeAad } from './aad.ts';
import { hkdf } from './hkdf.ts';

export interface BlindIndexScope {
  tenant: string;
  collection: string;
  field: string;
}

/** Per-field key: HKDF(tenant blind-index key, info = scope). Cache it; it is as secret as the root. */
export function deriveBlindIndexKey(indexKey: Uint8Array, scope: BlindIndexScope): Buffer {
  return hkdf(indexKey, encodeAad('blind-index-key', { ...scope }).toString('base64'));
}

/** NFC-normalises so that visually equal strings match; the caller decides on case folding. */
export function blindIndex(fieldKey: Uint8Array, value: string): Buffer {
  return createHmac('sha256', fieldKey).update(value.normalize('NFC'), 'utf8').digest();
}
