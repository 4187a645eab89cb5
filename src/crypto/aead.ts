/**
 * AES-256-GCM from node:crypto, with 96-bit random nonces and 128-bit tags.
 *
 * NIST SP 800-38D §8.2.2: random 96-bit IVs are allowed as long as a key performs at most 2^32
 * encryptions (§8.3); the callers count uses per key (see src/vault/data-keys.ts and the keyd store).
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { CryptoError } from './errors.ts';
import { pooledRandomBytes } from './random-pool.ts';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

export interface Sealed {
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

function checkKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) {
    throw new CryptoError('TRESOR_ERR_KEY_INVALID', `AES-256-GCM needs a ${KEY_BYTES}-byte key`);
  }
}

/** Encrypts with a fresh random nonce. `nonce` is only for known-answer tests. */
export function aeadSeal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, nonce?: Buffer): Sealed {
  checkKey(key);
  const iv = nonce ?? pooledRandomBytes(NONCE_BYTES);
  if (iv.length !== NONCE_BYTES) throw new CryptoError('TRESOR_ERR_KEY_INVALID', 'nonce must be 12 bytes');
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce: iv, ciphertext, tag: cipher.getAuthTag() };
}

/** Decrypts and authenticates; any change to key, nonce, ciphertext, tag or AAD fails. */
export function aeadOpen(key: Uint8Array, sealed: Sealed, aad: Uint8Array): Buffer {
  checkKey(key);
  if (sealed.nonce.length !== NONCE_BYTES || sealed.tag.length !== TAG_BYTES) {
    throw new CryptoError('TRESOR_ERR_CIPHERTEXT_MALFORMED', 'nonce or tag has the wrong length');
  }
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.tag);
  try {
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
  } catch {
    throw new CryptoError(
      'TRESOR_ERR_DECRYPT_FAILED',
      'ciphertext does not authenticate: wrong key, wrong context, or tampered',
    );
  }
}
