/**
 * The trial restore's checks as the result lists them (backup-trial.ts): each run in turn, timed,
 * a thrown error failing it with its code and message, and every check after a failed one
 * `skipped`. Shared by the event loop's part of the trial and its worker's
 * (backup-trial-scratch.ts), so both report alike.
 */

import type { Destination } from '../backup/index.ts';
import type { KeyService } from '../keyd/operations.ts';
import type { TrialTenantSample } from './backup-trial-samples.ts';

export interface BackupTrialResult {
  backupId: string;
  destination: string;
  ok: boolean;
  startedAt: string;
  durationMs: number;
  checks: TrialCheck[];
  samples: TrialTenantSample[];
}

export interface BackupTrialOptions {
  destination: Destination;
  backupId: string;
  keys: KeyService;
  /** A private folder; the trial makes a fresh subfolder there and removes it. */
  scratchDir: string;
  /** Records decrypted per tenant (default 3). */
  samplesPerTenant?: number;
  now?: () => Date;
  /**
   * The server stopping: the worker is stopped at once, the scratch folder removed, and the trial
   * throws TRESOR_ERR_BACKUP_INTERRUPTED instead of a result (it says nothing about the backup).
   */
  signal?: AbortSignal;
  /**
   * The live PostgreSQL database, when the deployment's data is there: the trial restores into a
   * scratch database made beside it (backup-trial-pg.ts) instead of SQLite files.
   */
  database?: { url: string };
}

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
