import { timingSafeEqual } from 'node:crypto';

/** Constant-time equality for secrets and MACs; different lengths compare unequal without a timing leak of content. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** Overwrites key material in place once it is no longer needed. */
export function wipe(...buffers: (Uint8Array | undefined)[]): void {
  for (const b of buffers) b?.fill(0);
}

/**
 * True when `buf` is the whole of its own memory: not a slice of Node's shared 8 KiB pool (which
 * Buffer.from(string), Buffer.concat and allocUnsafe use for small sizes), and not a view of a larger
 * buffer. Only such a Buffer can be wiped knowing no other copy of its bytes shares the memory.
 */
export function ownsItsMemory(buf: Uint8Array): boolean {
  return buf.byteOffset === 0 && buf.buffer.byteLength === buf.length;
}

/**
 * `buf` itself when it already owns its memory; otherwise a copy into memory of its own
 * (Buffer.alloc never uses the pool), with `buf` wiped. For secrets only: `buf` is consumed.
 */
export function ownCopy(buf: Buffer): Buffer {
  if (ownsItsMemory(buf)) return buf;
  const copy = Buffer.alloc(buf.length);
  buf.copy(copy);
  wipe(buf);
  return copy;
}

/** A copy of a secret in memory of its own; `buf` is left as it was (its owner still wipes it). */
export function secretCopy(buf: Uint8Array): Buffer {
  const copy = Buffer.alloc(buf.length);
  copy.set(buf);
  return copy;
}

/** A secret's bytes decoded from text into memory of its own (Buffer.from(text) would use the pool). */
export function secretFromText(text: string, encoding: 'base64' | 'base64url' | 'hex' | 'utf8'): Buffer {
  const out = Buffer.alloc(Buffer.byteLength(text, encoding));
  const written = out.write(text, encoding);
  if (written === out.length) return out;
  // byteLength over-estimates for non-canonical input: keep only what was written, in memory of its own.
  const exact = Buffer.alloc(written);
  out.copy(exact, 0, 0, written);
  wipe(out);
  return exact;
}
