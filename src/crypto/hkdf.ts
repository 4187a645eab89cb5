/** HKDF-SHA-256 (RFC 5869) from node:crypto; `info` names the purpose so derived keys never collide. */
import { hkdfSync } from 'node:crypto';
import { CryptoError } from './errors.ts';

export function hkdf(ikm: Uint8Array, info: string, salt: Uint8Array = Buffer.alloc(0), length = 32): Buffer {
  if (ikm.length < 16) throw new CryptoError('TRESOR_ERR_KEY_INVALID', 'HKDF input key material is too short');
  return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info, 'utf8'), length));
}
