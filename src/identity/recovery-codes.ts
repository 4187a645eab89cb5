/**
 * One-time recovery codes: the way back in when the second factor is lost.
 *
 * A set is 10 codes, each 120 random bits from node:crypto written as 24 base32 characters in
 * six groups of four (`ABCD-EFGH-IJKL-MNOP-QRST-UVWX`). 120 bits, not the 80 of a shorter code,
 * because SP 800-63B (look-up secret verifiers) allows storing look-up secrets of ≥ 112 bits
 * under a plain approved hash, and asks a slow, salted KDF for shorter ones. They are shown
 * once; the store keeps only
 *   `rc1$<salt>$<SHA-256("tresor-recovery-code/v1" ‖ 0 ‖ salt ‖ code)>` (base64url parts),
 * with one random 128-bit salt per set, i.e. per user.
 *
 * Why SHA-256 and not argon2id: a slow hash exists to make guessing low-entropy secrets costly.
 * Nobody enumerates 2^120 codes from a leaked hash at any speed, so slowness buys nothing here,
 * while verifying one attempt against every stored code in constant time would cost ten argon2id
 * runs (~0.5 s of CPU) per attempt — a denial-of-service lever. The salt keeps equal codes of two
 * users from having equal hashes and rules out precomputation across users.
 *
 * consumeRecoveryCode compares the attempt with every stored hash, without stopping at a match
 * and with timingSafeEqual, so neither the result nor the time tells which slot matched or how
 * many codes are left. The caller marks the returned slot used (null) in the same transaction.
 * Input is forgiving: case, dashes and spaces are ignored.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Secret } from 'otpauth';

export const RECOVERY_CODE_COUNT = 10;
/** 120 bits: 24 base32 characters, no padding. */
const CODE_BYTES = 15;
const CODE_PATTERN = /^[A-Z2-7]{24}$/;
const SALT_BYTES = 16;
const HASH_DOMAIN = 'tresor-recovery-code/v1';
const HASH_PREFIX = 'rc1';
const STORED_PATTERN = /^rc1\$([A-Za-z0-9_-]{22})\$([A-Za-z0-9_-]{43})$/;

export interface RecoveryCodeSet {
  /** Shown to the user once, never stored. */
  codes: string[];
  /** What the store keeps, slot for slot. */
  hashes: string[];
}

export function newRecoveryCodes(n: number = RECOVERY_CODE_COUNT): RecoveryCodeSet {
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new RangeError('recovery codes: 1 to 100 per set');
  const salt = randomBytes(SALT_BYTES);
  const codes: string[] = [];
  const hashes: string[] = [];
  for (let i = 0; i < n; i++) {
    // Copied into a fresh ArrayBuffer: randomBytes may hand out a slice of a shared pool.
    const plain = new Secret({ buffer: new Uint8Array(randomBytes(CODE_BYTES)).buffer }).base32;
    codes.push(plain.match(/.{4}/g)?.join('-') ?? plain);
    hashes.push(`${HASH_PREFIX}$${salt.toString('base64url')}$${digest(salt, plain).toString('base64url')}`);
  }
  return { codes, hashes };
}

/**
 * The slot whose code this is, or undefined. Used slots are null (or undefined) in `storedHashes`
 * and never match; the work done is the same for every slot, used, malformed or not.
 */
export function consumeRecoveryCode(
  code: string,
  storedHashes: ReadonlyArray<string | null | undefined>,
): number | undefined {
  const normalised = normaliseRecoveryCode(code);
  if (normalised === undefined) return undefined;
  const dummySalt = Buffer.alloc(SALT_BYTES);
  const dummyExpected = Buffer.alloc(32, 0xff);
  let found: number | undefined;
  storedHashes.forEach((stored, index) => {
    const parsed = typeof stored === 'string' ? STORED_PATTERN.exec(stored) : null;
    const salt = parsed?.[1] !== undefined ? Buffer.from(parsed[1], 'base64url') : dummySalt;
    const expected = parsed?.[2] !== undefined ? Buffer.from(parsed[2], 'base64url') : dummyExpected;
    const equal = timingSafeEqual(digest(salt, normalised), expected);
    if (equal && parsed !== null && found === undefined) found = index;
  });
  return found;
}

/** Upper-case, without dashes or spaces; undefined unless 24 base32 characters remain. */
export function normaliseRecoveryCode(code: string): string | undefined {
  if (typeof code !== 'string' || code.length > 64) return undefined;
  const normalised = code.toUpperCase().replace(/[\s-]+/g, '');
  return CODE_PATTERN.test(normalised) ? normalised : undefined;
}

function digest(salt: Buffer, code: string): Buffer {
  return createHash('sha256')
    .update(HASH_DOMAIN)
    .update(Buffer.from([0]))
    .update(salt)
    .update(code, 'ascii')
    .digest();
}
