/**
 * TOTP second factor (RFC 6238), computed by otpauth — Tresor writes no HOTP of its own.
 *
 * Parameters fixed for authenticator-app compatibility: HMAC-SHA-1, 6 digits, 30-second steps
 * counted from the Unix epoch (RFC 6238 §4.1, T0 = 0, X = 30). Secrets are 160 bits from the
 * CSPRNG (RFC 4226 §4 R6 asks for at least 128, recommends 160), stored and shown as base32.
 *
 * Verification:
 * - time comes only from the server: `now` is injected by the caller, never sent by the client;
 * - at most one step of clock drift either way (RFC 6238 §5.2 recommends "at most one time step");
 * - a code whose step is ≤ `lastAcceptedStep` is refused as replayed (RFC 6238 §5.2: the verifier
 *   "MUST NOT accept the second attempt of the same OTP"); the caller stores the returned step
 *   atomically with the login, so a code is good once even within its own 30 s window;
 * - the code must be exactly six ASCII digits before anything is computed.
 *
 * Constant time. otpauth 9.5.2 (`HOTP.validate`) compares the presented code with each candidate
 * through node:crypto `timingSafeEqual` on the two strings' bytes. It stops at the first matching
 * step (order: current, −1, +1), which reveals only which step a *correct* code belongs to — known
 * to whoever holds it. Its `timingSafeEqual` throws on inputs of different byte length (a
 * non-ASCII code of six UTF-16 units); the /^\d{6}$/ check here runs first, so it never does.
 */
import { randomBytes } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import { TresorError } from '../errors.ts';

/** RFC 6238 §4.1: X, the time step in seconds. */
export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
export const TOTP_ALGORITHM = 'SHA1';
/** RFC 4226 §4 R6: a 160-bit shared secret is recommended. */
export const TOTP_SECRET_BYTES = 20;
/** RFC 6238 §5.2: at most one step of drift in either direction. */
const TOTP_WINDOW = 1;
const BASE32_PATTERN = /^[A-Z2-7]+=*$/;
const LABEL_MAX_CHARS = 128;

export type TotpVerification = { ok: true; step: number } | { ok: false; reason: 'invalid' | 'replayed' };

export interface VerifyTotpInput {
  /** The account's base32 secret. */
  secret: string;
  /** What the user typed. */
  code: string;
  /** Server time. */
  now: Date;
  /** The step of the last code this account had accepted, or null if none yet. */
  lastAcceptedStep: number | null;
}

/** A new shared secret: 160 bits from node:crypto, base32 without padding (32 characters). */
export function newTotpSecret(): string {
  // Copied into a fresh ArrayBuffer: randomBytes may hand out a slice of a shared pool.
  const bytes = new Uint8Array(randomBytes(TOTP_SECRET_BYTES));
  return new Secret({ buffer: bytes.buffer }).base32;
}

/** The otpauth:// key URI an authenticator app scans (Google Authenticator Key Uri Format). */
export function totpUri(input: { issuer: string; account: string; secret: string }): string {
  const issuer = checkLabelPart('issuer', input.issuer);
  const account = checkLabelPart('account', input.account);
  return new TOTP({
    issuer,
    label: account,
    secret: parseSecret(input.secret),
    algorithm: TOTP_ALGORITHM,
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
  }).toString();
}

/** The RFC 6238 time step ("T") that contains `now`. */
export function totpStepAt(now: Date): number {
  return TOTP.counter({ period: TOTP_PERIOD_SECONDS, timestamp: now.getTime() });
}

export function verifyTotp(input: VerifyTotpInput): TotpVerification {
  return verifyTotpOfLength(input, TOTP_DIGITS);
}

/**
 * verifyTotp with another code length. Internal: exported only so the tests can run RFC 6238
 * Appendix B, whose vectors have 8 digits. Production code calls verifyTotp.
 */
export function verifyTotpOfLength(input: VerifyTotpInput, digits: number): TotpVerification {
  const secret = parseSecret(input.secret);
  const time = input.now.getTime();
  if (!Number.isFinite(time)) throw new TresorError('TRESOR_ERR_INTERNAL', 'totp: invalid server time');
  const code = input.code;
  if (typeof code !== 'string' || code.length !== digits || !/^[0-9]+$/.test(code)) {
    return { ok: false, reason: 'invalid' };
  }
  // validate() returns the matching step's offset from the current one (0 is a match), or null.
  const delta = TOTP.validate({
    token: code,
    secret,
    algorithm: TOTP_ALGORITHM,
    digits,
    period: TOTP_PERIOD_SECONDS,
    timestamp: time,
    window: TOTP_WINDOW,
  });
  if (delta === null) return { ok: false, reason: 'invalid' };
  const step = totpStepAt(input.now) + delta;
  if (input.lastAcceptedStep !== null && step <= input.lastAcceptedStep) {
    return { ok: false, reason: 'replayed' };
  }
  return { ok: true, step };
}

function parseSecret(secret: string): Secret {
  if (typeof secret !== 'string' || !BASE32_PATTERN.test(secret)) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'totp secret: not base32', { field: 'secret' });
  }
  const parsed = Secret.fromBase32(secret);
  if (parsed.bytes.length < TOTP_SECRET_BYTES) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'totp secret: shorter than 160 bits', {
      field: 'secret',
      minBytes: TOTP_SECRET_BYTES,
    });
  }
  return parsed;
}

/** Key Uri Format: the label is `issuer:account`, so neither part may hold a colon. */
function checkLabelPart(field: string, value: string): string {
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > LABEL_MAX_CHARS ||
    value.includes(':')
  ) {
    throw new TresorError('TRESOR_ERR_VALIDATION', `${field}: 1 to ${LABEL_MAX_CHARS} characters, no colon`, {
      field,
    });
  }
  return value;
}
