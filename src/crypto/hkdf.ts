/** HKDF-SHA-256 (RFC 5869) from node:crypto; `info` names the purpose so derived keys never collide. */
import { hkdfSync } from 'node:crypto';
import { CryptoError } from './errors.ts';

/**
 * `info` is a UTF-8 string (our purpose labels) or raw bytes: RFC 5869 defines it as an octet
 * string, and its Appendix A vectors use bytes (0xf0…, 0xb0…) that no UTF-8 string encodes to.
 */
export function hkdf(
  ikm: Uint8Array,
  info: string | Uint8Array,
  salt: Uint8Array = Buffer.alloc(0),
  length = 32,
): Buffer {
  if (ikm.length < 16) {
    throw new CryptoError('TRESOR_ERR_KEY_INVALID', 'HKDF input key material is too short');
  }
  const infoBytes = typeof info === 'string' ? Buffer.from(info, 'utf8') : info;
  return Buffer.from(hkdfSync('sha256', ikm, salt, infoBytes, length));
}
