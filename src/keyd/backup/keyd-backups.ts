/**
 * keyd's own backups inside the keyd process (docs/backup.md, "keyd's own backups"): taken on
 * keyd's schedule and on demand (`tresor keyd backup now`), one at a time, to keyd's own
 * destinations with keyd's own (shorter) retention, applied after each backup, every deletion an
 * entry of keyd's ops log. It also answers the horizon: the date by which a key destroyed at a
 * given moment has left every keyd backup (the deletion certificate's `keydBackupsAgedOutBy`).
 *
 * The schedule goes on from the newest complete backup at the first destination that answers, so a
 * keyd restarted more often than the interval still takes its backups. A sealed keyd takes none.
 */

import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { newBackupId } from '../../objects/backup-id.ts';
import type { ConfiguredDestination } from '../../objects/configured-destinations.ts';
import { deleteBackup, listBackups } from '../../objects/destination.ts';
import { agedOutAt, planRetention } from '../../objects/retention.ts';
import { isKeydErrorCode, KeydError } from '../errors.ts';
import type { OpHandlers, OpRecorder } from '../op-record.ts';
import type { KeydBackupListing, KeydBackupResult } from '../operations.ts';
import { type CreateKeydBackupDeps, createKeydBackup } from './create-keyd-backup.ts';

export interface KeydBackupsDeps extends CreateKeydBackupDeps {
  destinations: readonly ConfiguredDestination[];
  recorder: OpRecorder;
  clock: () => Date;
  /** Minutes between scheduled backups (fractions allowed); 0: only on demand. */
  intervalMinutes: number;
  /** Whether the root keyring is unsealed now. */
  unsealed: () => boolean;
  /** Told about every scheduled run's result or error code, e.g. to log it. */
  onScheduled?: ((result: KeydBackupResult | { error: string }) => void) | undefined;
}

const MINUTE_MS = 60_000;
/** The store copy a backup makes in keyd's folder (create-keyd-backup.ts), removed at its end. */
const SNAPSHOT_LEFTOVER = /^\.keyd-backup-[A-Za-z0-9-]+\.sqlite(-wal|-shm|-journal)?$/;

function asKeydError(err: unknown): KeydError {
  if (err instanceof KeydError) return err;
  const code = (err as { code?: unknown }).code;
  const message = (err as { message?: unknown }).message;
  if (typeof code === 'string' && code.startsWith('TRESOR_ERR_BACKUP') && isKeydErrorCode(code)) {
    return new KeydError(code, typeof message === 'string' ? message : undefined);
  }
  if (typeof code === 'string' && code.startsWith('TRESOR_ERR_BACKUP')) {
    return new KeydError('TRESOR_ERR_BACKUP_FAILED', typeof message === 'string' ? message : undefined);
  }
  return err as KeydError; // the recorder maps anything else to TRESOR_ERR_INTERNAL
}

export class KeydBackups {
  readonly #deps: KeydBackupsDeps;
  #running: Promise<KeydBackupResult> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(deps: KeydBackupsDeps) {
    this.#deps = deps;
  }

  /** Removes copies a crashed backup left in keyd's folder, and starts the schedule (none at interval 0). */
  start(): void {
    if (this.#deps.dir !== '') {
      for (const name of readdirSync(this.#deps.dir)) {
        if (SNAPSHOT_LEFTOVER.test(name)) rmSync(join(this.#deps.dir, name), { force: true });
      }
    }
    if (this.#deps.intervalMinutes <= 0) return;
    void this.#nextDue().then((due) => this.#arm(due));
  }

  /** Stops the schedule and waits for a backup under way. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running?.catch(() => undefined);
  }

  operations(): Pick<OpHandlers, 'backupKeyd' | 'listKeydBackups' | 'keydBackupHorizon'> {
    return {
      backupKeyd: async (_args, rec) => {
        if (this.#deps.destinations.length === 0) {
          throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'keyd has no backup destinations');
        }
        if (this.#running) throw new KeydError('TRESOR_ERR_BACKUP_RUNNING');
        try {
          const result = await this.#take();
          rec.detail = describe(result);
          return result;
        } catch (err) {
          throw asKeydError(err);
        }
      },
      listKeydBackups: async () => ({ destinations: await this.list() }),
      keydBackupHorizon: async ({ at }) => {
        const when = at === undefined ? this.#deps.clock() : new Date(at);
        const horizon = this.horizon(when);
        return { agedOutBy: horizon ? horizon.toISOString() : null };
      },
    };
  }

  /**
   * When a key destroyed at `at` has left every keyd backup: the last backup that can hold it was
   * taken at or before `at`, kept by no destination after agedOutAt(at, every policy), and deleted by
   * the first retention run after that — retention runs after each backup, so one interval later.
   * Null when backups are not scheduled: retention then runs only on demand.
   */
  horizon(at: Date): Date | null {
    const { intervalMinutes, destinations } = this.#deps;
    if (intervalMinutes <= 0) return null;
    const out = agedOutAt(
      at,
      destinations.map((d) => d.retention),
    );
    return new Date(out.getTime() + Math.ceil(intervalMinutes * MINUTE_MS));
  }

  async list(): Promise<KeydBackupListing[]> {
    const listings: KeydBackupListing[] = [];
    for (const d of this.#deps.destinations) {
      try {
        const backups = await listBackups(d.destination);
        listings.push({
          destination: d.name,
          backups: backups.map((b) => ({ id: b.id, takenAt: b.takenAt.toISOString(), complete: b.complete })),
        });
      } catch (err) {
        listings.push({
          destination: d.name,
          backups: [],
          error: String((err as { code?: string }).code ?? 'error'),
        });
      }
    }
    return listings;
  }

  /** One backup, then retention at every destination; joins none: callers check #running first. */
  #take(): Promise<KeydBackupResult> {
    const now = this.#deps.clock();
    this.#running = (async () => {
      const result = await createKeydBackup(this.#deps, newBackupId(now), now);
      await this.#applyRetention();
      return result;
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Each destination's plan over its complete backups; every deletion logged as keyd's own operation. */
  async #applyRetention(): Promise<void> {
    const { recorder, clock } = this.#deps;
    for (const d of this.#deps.destinations) {
      let complete: { id: string; takenAt: Date }[];
      try {
        complete = (await listBackups(d.destination)).filter((b) => b.complete);
      } catch {
        continue; // an unreachable destination keeps what it has until the next run
      }
      const plan = planRetention(complete, d.retention, clock());
      for (const id of plan.delete) {
        const rec = recorder.system('deleteKeydBackup', null);
        rec.detail =
          `backup ${id} at ${d.name}: aged out ` +
          `(keep all ${d.retention.keepAllDays} d, daily ${d.retention.dailyDays} d)`;
        await recorder
          .execute(rec, async () => {
            try {
              await deleteBackup(d.destination, id);
            } catch (err) {
              throw asKeydError(err);
            }
          })
          .catch(() => undefined); // logged as an error entry; the next run tries again
      }
    }
  }

  async #nextDue(): Promise<number> {
    const interval = this.#deps.intervalMinutes * MINUTE_MS;
    const now = this.#deps.clock().getTime();
    for (const d of this.#deps.destinations) {
      try {
        const newest = (await listBackups(d.destination)).filter((b) => b.complete).at(-1);
        return newest ? Math.max(now, newest.takenAt.getTime() + interval) : now + interval;
      } catch {
        // try the next destination
      }
    }
    return now + interval;
  }

  #arm(due: number): void {
    if (this.#stopped) return;
    const delay = Math.max(0, Math.min(due - this.#deps.clock().getTime(), 2 ** 31 - 1));
    this.#timer = setTimeout(() => void this.#scheduled(), delay);
    this.#timer.unref();
  }

  async #scheduled(): Promise<void> {
    const { recorder, onScheduled, intervalMinutes, clock } = this.#deps;
    const next = clock().getTime() + intervalMinutes * MINUTE_MS;
    if (!this.#stopped && !this.#running && this.#deps.unsealed()) {
      const rec = recorder.system('backupKeyd', null);
      try {
        const result = await recorder.execute(rec, async () => {
          try {
            const r = await this.#take();
            rec.detail = `scheduled: ${describe(r)}`;
            return r;
          } catch (err) {
            throw asKeydError(err);
          }
        });
        onScheduled?.(result);
      } catch (err) {
        onScheduled?.({ error: String((err as { code?: string }).code ?? 'error') });
      }
    }
    this.#arm(next);
  }
}

function describe(result: KeydBackupResult): string {
  const held = result.destinations.filter((d) => d.ok).map((d) => d.destination);
  const failed = result.destinations.filter((d) => !d.ok).map((d) => `${d.destination} (${d.error})`);
  return `backup ${result.backupId} held by ${held.join(', ')}${failed.length ? `; failed: ${failed.join(', ')}` : ''}`;
}
