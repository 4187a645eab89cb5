/**
 * CSPRNG bytes drawn 16 KiB at a time. Each randomBytes() call has a fixed cost well above what 12
 * or 16 bytes are worth, and a record write asked for eight of them (a nonce per field, the record
 * id, the request id): 5 % of a write's CPU. Here one randomBytes call serves ~1,000 draws. Every
 * byte of the pool is handed out once and never again, and each draw is returned as its own copy,
 * so nothing a caller keeps changes when the pool is refilled.
 */
import { randomBytes } from 'node:crypto';

const POOL_BYTES = 16 * 1024;
/** Larger requests go straight to randomBytes. */
const MAX_DRAW = 64;
let pool = Buffer.alloc(0);
let offset = 0;

/** `n` fresh random bytes (a new Buffer the caller owns). */
export function pooledRandomBytes(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError('byte count must be a non-negative integer');
  if (n > MAX_DRAW) return randomBytes(n);
  if (offset + n > pool.length) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const start = offset;
  offset += n;
  return Buffer.from(pool.subarray(start, offset));
}
