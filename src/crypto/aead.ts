/**
 * AES-256-GCM from node:crypto, with 96-bit random nonces and 128-bit tags.
 *
 * NIST SP 800-38D §8.2.2: random 96-bit IVs are allowed as long as a key performs at most 2^32
 * encryptions (§8.3); the callers count uses per key (see src/vault/data-keys.ts and the keyd store).
 * The nonce is always drawn here: no caller can choose one, so none can repeat one (known-answer
 * tests check the cipher against the published vectors through node:crypto itself).
 *
 * aeadOpen's result is often a key (tenant, data, backup and root keys are all unwrapped by it), so
 * it is a Buffer with its own memory, never a slice of Node's shared pool, and no other copy of the
 * plaintext is left behind: the caller can wipe it and know that no copy survives (src/crypto/index.ts).
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { ownCopy, wipe } from './compare.ts';
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

/** Encrypts under a fresh random nonce, which it returns with the ciphertext and tag. */
export function aeadSeal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Sealed {
  checkKey(key);
  const nonce = pooledRandomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce, ciphertext, tag: cipher.getAuthTag() };
}

/**
 * Decrypts and authenticates; any change to key, nonce, ciphertext, tag or AAD fails. The result is
 * the caller's to wipe; on failure the unauthenticated plaintext is wiped here.
 */
export function aeadOpen(key: Uint8Array, sealed: Sealed, aad: Uint8Array): Buffer {
  checkKey(key);
  if (sealed.nonce.length !== NONCE_BYTES || sealed.tag.length !== TAG_BYTES) {
    throw new CryptoError('TRESOR_ERR_CIPHERTEXT_MALFORMED', 'nonce or tag has the wrong length');
  }
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.tag);
  // GCM is a stream mode: update() returns every plaintext byte and final() only checks the tag
  // (it returns nothing), so the plaintext is update()'s output alone — never concatenated.
  const plaintext = ownCopy(decipher.update(sealed.ciphertext));
  let tail: Buffer;
  try {
    tail = decipher.final();
  } catch {
    wipe(plaintext);
    throw new CryptoError(
      'TRESOR_ERR_DECRYPT_FAILED',
      'ciphertext does not authenticate: wrong key, wrong context, or tampered',
    );
  }
  if (tail.length !== 0) {
    wipe(plaintext, tail);
    throw new CryptoError('TRESOR_ERR_DECRYPT_FAILED', 'AES-GCM returned bytes after the tag check');
  }
  return plaintext;
}
