/**
 * TOTP secrets at rest: sealed with AES-256-GCM under the factor key (factor-key.ts), the associated
 * data binding each ciphertext to its person and factor, so a sealed secret moved to another row
 * does not open. Stored as `v1.<nonce>.<ciphertext>.<tag>` (base64url parts).
 */
import { aeadOpen, aeadSeal, encodeAad, secretFromText, wipe } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';

const TOTP_AAD_PURPOSE = 'identity/totp-secret';
const SEALED_PATTERN = /^v1\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})$/;

export function sealTotpSecret(key: Buffer, person: string, factor: string, base32: string): string {
  const plaintext = secretFromText(base32, 'utf8');
  let sealed: ReturnType<typeof aeadSeal>;
  try {
    sealed = aeadSeal(key, plaintext, encodeAad(TOTP_AAD_PURPOSE, { person, factor }));
  } finally {
    wipe(plaintext);
  }
  return ['v1', sealed.nonce, sealed.ciphertext, sealed.tag]
    .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
    .join('.');
}

export function openTotpSecret(key: Buffer, person: string, factor: string, stored: string): string {
  const m = SEALED_PATTERN.exec(stored);
  if (!m?.[1] || !m[2] || !m[3])
    throw new TresorError('TRESOR_ERR_INTERNAL', 'identity: malformed sealed secret');
  const sealed = {
    nonce: Buffer.from(m[1], 'base64url'),
    ciphertext: Buffer.from(m[2], 'base64url'),
    tag: Buffer.from(m[3], 'base64url'),
  };
  // The secret must become a string for the TOTP library; the decrypted bytes at least are wiped.
  const plaintext = aeadOpen(key, sealed, encodeAad(TOTP_AAD_PURPOSE, { person, factor }));
  try {
    return plaintext.toString('ascii');
  } finally {
    wipe(plaintext);
  }
}
