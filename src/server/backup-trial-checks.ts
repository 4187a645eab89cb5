/**
 * The trial restore's checks as the result lists them (backup-trial.ts): each run in turn, timed,
 * a thrown error failing it with its code and message, and every check after a failed one
 * `skipped`. Shared by the event loop's part of the trial and its worker's
 * (backup-trial-scratch.ts), so both report alike.
 */

export type TrialCheckName = 'restore' | 'audit' | 'stores' | 'decrypt';

export interface TrialCheck {
  name: TrialCheckName;
  /** passed, failed, or skipped because an earlier check failed. */
  status: 'passed' | 'failed' | 'skipped';
  durationMs: number;
  /** What the check saw, or why it failed: counts, codes, names; never a value or a key. */
  detail: string;
}

export class TrialChecks {
  readonly list: TrialCheck[] = [];
  #failed = false;

  get failed(): boolean {
    return this.#failed;
  }

  /** Runs one check unless an earlier one failed; `fn` answers the detail of a check that held. */
  async run(name: TrialCheckName, fn: () => Promise<string>): Promise<TrialCheck> {
    if (this.#failed) return this.#push({ name, status: 'skipped', durationMs: 0, detail: SKIPPED });
    const t0 = performance.now();
    try {
      const detail = await fn();
      return this.#push({ name, status: 'passed', durationMs: elapsed(t0), detail });
    } catch (err) {
      return this.fail(name, err, elapsed(t0));
    }
  }

  /** Records a check that failed with `err` (one run elsewhere, or cut short). */
  fail(name: TrialCheckName, err: unknown, durationMs: number): TrialCheck {
    this.#failed = true;
    return this.#push({ name, status: 'failed', durationMs, detail: describe(err) });
  }

  /** Records a check as another thread reported it. */
  add(check: TrialCheck): void {
    if (check.status === 'failed') this.#failed = true;
    this.#push(check);
  }

  #push(check: TrialCheck): TrialCheck {
    this.list.push(check);
    return check;
  }
}

const SKIPPED = 'not run: an earlier check failed';

export function elapsed(t0: number): number {
  return Math.round((performance.now() - t0) * 10) / 10;
}

/** `CODE: message` of an error, as a check's detail (the code is what the server reports). */
function describe(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? `${e.code}: ` : '';
  return `${code}${typeof e.message === 'string' ? e.message : String(err)}`;
}
