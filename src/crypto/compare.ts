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
