/**
 * Key ids name a key and its version in every ciphertext, so a reader knows which key to fetch
 * and a rotated key's old versions keep decrypting. They are public: never derived from key bytes.
 */
import { randomBytes } from 'node:crypto';
import { CryptoError } from './errors.ts';

/** Each key serves exactly one purpose (NIST SP 800-57 Part 1 §5.2). */
export const KEY_PURPOSES = ['data', 'blind-index', 'audit-hmac', 'backup', 'signing'] as const;
export type KeyPurpose = (typeof KEY_PURPOSES)[number];

export const KEY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

export function isKeyPurpose(value: unknown): value is KeyPurpose {
  return typeof value === 'string' && (KEY_PURPOSES as readonly string[]).includes(value);
}

export function checkKeyId(keyId: string): string {
  if (!KEY_ID_PATTERN.test(keyId)) {
    throw new CryptoError('TRESOR_ERR_KEY_INVALID', 'key id must be 1-64 characters of [A-Za-z0-9._:-]');
  }
  return keyId;
}

/** A new random key id with a readable prefix, e.g. `dk_3f9a…` (96 random bits). */
export function newKeyId(prefix: string): string {
  return checkKeyId(`${prefix}_${randomBytes(12).toString('hex')}`);
}
