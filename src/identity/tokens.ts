/**
 * Identity's random ids and secrets, and the one way their secrets are stored: SHA-256, base64url
 * (a lookup by hash; no secret is ever compared byte by byte).
 */
import { createHash, randomBytes } from 'node:crypto';

/** 256 bits from the CSPRNG: session cookies, CSRF and enrolment tokens. */
export const TOKEN_BYTES = 32;

export function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64url');
}

/** A fresh random 256-bit token, base64url. */
export function newToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}
