/**
 * TEST-ONLY. Waits that end: every wait here has a deadline and, when it passes, fails naming
 * what it waited for (a hang would otherwise only show as the test's own time limit).
 */
import { type EventEmitter, once } from 'node:events';

const DEFAULT_TIMEOUT_MS = 15_000;

/** Settles like `promise`, or rejects naming `what` once `timeoutMs` passed; `onTimeout` runs first. */
export async function withDeadline<T>(
  what: string,
  promise: Promise<T>,
  timeoutMs = DEFAULT_TIMEOUT_MS,
  onTimeout?: () => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Awaits `event` on `emitter` until `done()` holds, or fails naming `what` after `timeoutMs`. */
export async function untilEvent(
  what: string,
  emitter: EventEmitter,
  event: string,
  done: () => boolean,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  while (!done()) {
    try {
      await once(emitter, event, { signal });
    } catch (err) {
      if (signal.aborted) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      throw err;
    }
  }
}

/** Polls `probe` until it returns something other than undefined, or fails naming `what`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  options: { timeoutMs?: number; intervalMs?: number; diagnostics?: () => string } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // A probe that hangs must not outlive the deadline either.
    const left = Math.max(1, deadline - Date.now());
    let expired = false;
    const got = await withDeadline(what, probe(), left, () => {
      expired = true;
    }).catch((err: Error) => {
      throw expired ? new Error(`${err.message}${options.diagnostics?.() ?? ''}`) : err;
    });
    if (got !== undefined) return got;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${options.diagnostics?.() ?? ''}`);
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}
