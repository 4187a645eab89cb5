/**
 * Waiting for keyd at start, for `tresor dev` (its own keyd child) and `tresor server` (a keyd run
 * by someone else). A busy machine can take many seconds to start keyd (it compiles TypeScript on
 * the fly), more than one call's retries cover: each round is one short call, and a stated
 * deadline, not a retry count, bounds the wait.
 */
import { createKeydClient, type KeydConnectTarget } from '../keyd/client.ts';
import type { HealthInfo } from '../keyd/operations.ts';

/** What a failed wait throws; main.ts prints it on one line and exits 3 (keyd unavailable). */
export class KeydWaitError extends Error {
  readonly code = 'TRESOR_ERR_KEYD_UNAVAILABLE';
}

export interface WaitForKeydOptions {
  connect: KeydConnectTarget | readonly KeydConnectTarget[];
  clientName: string;
  deadlineMs: number;
  /** 'ok': until keyd is unsealed (dev); 'answers': until it answers at all, sealed or not. */
  until: 'ok' | 'answers';
  /** Resolves when a keyd we started exited: no point waiting any longer. */
  exited?: Promise<void>;
  /** Called once, when the first call got no usable answer: say what we wait for. */
  onWaiting?: (lastProblem: string) => void;
}

const CALL_MS = 2_000;
const PAUSE_MS = 200;

/** Resolves with keyd's health once it is as `until` asks; rejects with KeydWaitError otherwise. */
export async function waitForKeyd(options: WaitForKeydOptions): Promise<HealthInfo> {
  const until = Date.now() + options.deadlineMs;
  let gone = false;
  void options.exited?.then(() => {
    gone = true;
  });
  let last = 'no answer yet';
  let told = false;
  for (;;) {
    // One client per round: a call that timed out must not leave a half-open connection behind.
    const client = createKeydClient({
      connect: options.connect,
      clientName: options.clientName,
      timeoutMs: Math.max(1, Math.min(CALL_MS, until - Date.now())),
      retries: 0,
    });
    try {
      const health = await client.call('health', {});
      if (health.status === 'ok' || options.until === 'answers') return health;
      last = `keyd is ${health.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    } finally {
      await client.close();
    }
    if (gone) throw new KeydWaitError('keyd exited during start');
    if (Date.now() >= until)
      throw new KeydWaitError(`keyd did not answer within ${options.deadlineMs} ms (${last})`);
    if (!told) {
      told = true;
      options.onWaiting?.(last);
    }
    await new Promise((res) => setTimeout(res, Math.min(PAUSE_MS, Math.max(0, until - Date.now()))));
  }
}

/** A positive whole number of milliseconds from `env[name]`, or `fallback` when unset. */
export function deadlineFromEnv(name: string, fallback: number, env = process.env): number {
  const raw = env[name];
  const ms = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new Error(`${name} must be a positive integer`);
  return ms;
}
