/**
 * Running backups in the server: one at a time, recorded, retried, verified, audited.
 *
 *   start()  refuses (TRESOR_ERR_BACKUP_RUNNING) while a backup runs, else records the run and
 *            answers its id at once; the backup goes on in the background:
 *     1. createBackup to every destination (a destination that fails is dropped from it);
 *     2. each failed destination retried with backoff (retryBaseMs, doubling, retryAttempts times)
 *        by copying the finished backup from one that holds it (copy-backup.ts);
 *     3. the run ends `done` only when every destination holds it and read it back, `partial`
 *        when some do, `failed` when none does; audited as `backup.create` (system actor `backup`);
 *     4. the trial restore (deps.trial, when given: restore into a scratch folder, the audit log
 *        checked against the manifest's checkpoint, every store opened, sample records decrypted
 *        through keyd) at the first destination that holds it, and verifyBackupInBackground
 *        (signature, digests, decryption through keyd; its pass in a low-priority worker) at the
 *        others; the result is recorded and audited
 *        (`backup.verify`).
 *   requestVerify() checks a backup again in the background (TRESOR_ERR_BACKUP_VERIFYING while a
 *   verification runs: one at a time, the one after each backup included); reverify() is the
 *   scheduled re-verification, the least recently verified backups first; recoverInterrupted() marks
 *   the runs a killed server left running and removes their partial objects.
 *   close() (the server stops) ends the running backup at its next object: its objects are removed
 *   and it is recorded `interrupted`; retries and verifications stop at their next step, a running
 *   trial restore at once (its worker is stopped; the verification is not recorded).
 *
 * Error codes and Tresor's own messages are recorded; they name destinations and objects, never a
 * key or a byte of the data.
 */
import { mkdir } from 'node:fs/promises';
import type { AuditEvent } from '../audit/event.ts';
import { systemEvent } from '../audit/system-event.ts';
import type { KeyService } from '../keyd/operations.ts';
import { newBackupId } from '../objects/backup-id.ts';
import type { ConfiguredDestination } from '../objects/configured-destinations.ts';
import { type Destination, deleteBackup, MANIFEST_OBJECT } from '../objects/destination.ts';
import { verifyBackupInBackground } from './background-verify.ts';
import type { BackupRecords, BackupView } from './backup-records.ts';
import { copyBackup } from './copy-backup.ts';
import { type BackupSource, createBackup } from './create-backup.ts';
import { BackupError } from './errors.ts';
import type { ManifestKey } from './manifest.ts';
import { createLocalRunLock, type RunLock } from './run-lock.ts';
import type { StoreSnapshotter } from './snapshot.ts';

export interface BackupRunDeps {
  records: BackupRecords;
  keys: KeyService;
  snapshotter: StoreSnapshotter;
  source: BackupSource;
  destinations: readonly ConfiguredDestination[];
  /** A private folder for snapshots (created 0700). */
  scratchDir: string;
  manifestKey(): Promise<ManifestKey>;
  retry: { attempts: number; baseMs: number };
  /**
   * The trial restore of one backup at one destination (src/server/backup-trial.ts, which opens
   * stores and the audit log and so lives above this floor); a failure is reported by `code`.
   */
  trial?: (
    destination: Destination,
    backupId: string,
    /** Aborted when the server stops: the trial ends early and throws TRESOR_ERR_BACKUP_INTERRUPTED. */
    signal: AbortSignal,
  ) => Promise<{ ok: boolean; code: string | null }>;
  clock: () => Date;
  chunkSize?: number;
  /**
   * Held by the node making a run for the run's whole life; recovery marks a run interrupted only
   * when its maker is gone (run-lock.ts). Default: this process's runs (SQLite: one node per folder).
   */
  runLock?: RunLock;
}

export interface StartedBackup {
  id: string;
  /** Settles when the run (and its verification) is over, with its outcome. */
  done: Promise<BackupView | undefined>;
}

const ACTOR = 'backup';

export function createBackupRuns(deps: BackupRunDeps) {
  const { records, clock } = deps;
  const runLock = deps.runLock ?? createLocalRunLock();
  let current: Promise<unknown> | undefined;
  let closing = false;
  const wakers = new Set<() => void>();
  const stopping = new AbortController();
  /** The verification running now (one at a time), and which backup it checks. */
  let verifying: { id: string; done: Promise<unknown> } | undefined;

  /** A wait that close() cuts short. */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      wakers.add(done);
    });

  async function run(id: string, startedAt: Date): Promise<BackupView | undefined> {
    const at = () => clock().toISOString();
    const outcomes = new Map(
      deps.destinations.map((d) => [d.name, { ok: false, attempts: 1, error: unknownError }]),
    );
    let result: Awaited<ReturnType<typeof createBackup>> | undefined;
    let failure: { code: string; message: string } | undefined;
    try {
      await mkdir(deps.scratchDir, { recursive: true, mode: 0o700 });
      result = await createBackup({
        keys: deps.keys,
        snapshotter: deps.snapshotter,
        source: deps.source,
        destinations: deps.destinations.map((d) => d.destination),
        scratchDir: deps.scratchDir,
        backupId: id,
        now: () => startedAt,
        signal: stopping.signal,
        ...(deps.chunkSize === undefined ? {} : { chunkSize: deps.chunkSize }),
      });
      for (const o of result.destinations) {
        outcomes.set(o.destination, { ok: o.ok, attempts: 1, error: o.error ?? unknownError });
      }
    } catch (err) {
      failure =
        (err as { code?: unknown }).code === 'TRESOR_ERR_BACKUP_INTERRUPTED'
          ? { code: 'TRESOR_ERR_BACKUP_INTERRUPTED', message: 'the server stopped during the backup' }
          : reportable(err);
      for (const o of outcomes.values()) o.error = failure;
    }
    for (const [name, o] of outcomes) {
      await records.updateCopy(
        id,
        name,
        o.ok
          ? { state: 'checked', attempts: 1, error: null }
          : { state: 'writing', attempts: 1, error: o.error },
        at(),
      );
    }

    // Retries: copy the finished backup from a destination that holds it.
    const holder = deps.destinations.find((d) => outcomes.get(d.name)?.ok);
    for (const d of deps.destinations) {
      const o = outcomes.get(d.name);
      if (!o || o.ok) continue;
      for (let attempt = 1; holder && attempt <= deps.retry.attempts && !closing; attempt++) {
        await pause(deps.retry.baseMs * 2 ** (attempt - 1));
        if (closing) break;
        o.attempts += 1;
        try {
          await copyBackup(holder.destination, d.destination, id);
          o.ok = true;
        } catch (err) {
          o.error = reportable(err);
        }
        await records.updateCopy(
          id,
          d.name,
          o.ok
            ? { state: 'checked', attempts: o.attempts, error: null }
            : { state: 'writing', attempts: o.attempts, error: o.error },
          at(),
        );
        if (o.ok) break;
      }
      if (!o.ok)
        await records.updateCopy(id, d.name, { state: 'failed', attempts: o.attempts, error: o.error }, at());
    }

    const held = [...outcomes.values()].filter((o) => o.ok).length;
    const outcome =
      failure?.code === 'TRESOR_ERR_BACKUP_INTERRUPTED'
        ? 'interrupted'
        : held === 0
          ? 'failed'
          : held === outcomes.size
            ? 'done'
            : 'partial';
    const errorCode =
      outcome === 'done'
        ? null
        : ((failure ?? [...outcomes.values()].find((o) => !o.ok)?.error)?.code ?? null);
    await records.finish(
      id,
      {
        ended_at: at(),
        outcome,
        error_code: errorCode,
        ...(result
          ? { plaintext_bytes: result.plaintextBytes, stored_bytes: result.storedBytes, files: result.files }
          : {}),
      },
      systemEvent(
        {
          id: ACTOR,
          action: 'backup.create',
          outcome: outcome === 'done' ? 'success' : 'failure',
          target: {
            backupId: id,
            outcome,
            destinations: [...outcomes].map(([name, o]) => ({
              name,
              held: o.ok,
              attempts: o.attempts,
              ...(o.ok ? {} : { error: o.error.code }),
            })),
          },
        },
        clock(),
      ),
    );
    if (held > 0 && !closing) {
      // After the backup's own verification: one at a time, so it waits for a requested one.
      while (verifying) await verifying.done;
      await exclusive(id, undefined).catch(() => undefined);
    }
    return records.get(id);
  }

  /** The destinations that hold a read-back copy of the backup, in the config's order. */
  const holders = (view: BackupView) =>
    deps.destinations.filter((d) =>
      view.destinations.some((c) => c.name === d.name && c.state === 'checked'),
    );

  /** Runs verify() as the one verification of the moment (the caller checked none runs). */
  function exclusive(id: string, event: AuditEvent | undefined): Promise<BackupView> {
    const done = verify(id, event);
    const entry = { id, done: done.catch(() => undefined) };
    verifying = entry;
    void entry.done.finally(() => {
      if (verifying === entry) verifying = undefined;
    });
    return done;
  }

  /** Verifies the backup at every destination that holds it; records and audits the results. */
  async function verify(id: string, event: AuditEvent | undefined): Promise<BackupView> {
    const view = await records.get(id);
    if (!view) throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `no backup ${id}`);
    let manifestKey: ManifestKey | { failed: { code: string } };
    try {
      manifestKey = await deps.manifestKey();
    } catch (err) {
      // keyd unreachable or sealed: every copy fails verification with its code, on the record.
      manifestKey = { failed: reportable(err) };
    }
    const results: { destination: string; result: 'passed' | 'failed'; code: string | null }[] = [];
    // The trial restore's scratch folder, which a server that has taken no backup yet (a restored
    // one, verifying the backup it came from) has not made.
    if (deps.trial) await mkdir(deps.scratchDir, { recursive: true, mode: 0o700 });
    for (const d of holders(view)) {
      if (closing) {
        throw new BackupError(
          'TRESOR_ERR_BACKUP_INTERRUPTED',
          `verification of ${id}: the server is stopping`,
        );
      }
      if ('failed' in manifestKey) {
        results.push({ destination: d.name, result: 'failed', code: manifestKey.failed.code });
        continue;
      }
      try {
        if (deps.trial && results.length === 0) {
          const trial = await deps.trial(d.destination, id, stopping.signal);
          results.push({ destination: d.name, result: trial.ok ? 'passed' : 'failed', code: trial.code });
          continue;
        }
        await verifyBackupInBackground({
          destination: d.destination,
          backupId: id,
          keys: deps.keys,
          manifestKey,
          signal: stopping.signal,
        });
        results.push({ destination: d.name, result: 'passed', code: null });
      } catch (err) {
        // Cut short by the server stopping: not a result about the backup, so none is recorded.
        if (closing) {
          throw new BackupError(
            'TRESOR_ERR_BACKUP_INTERRUPTED',
            `verification of ${id}: the server is stopping`,
          );
        }
        results.push({ destination: d.name, result: 'failed', code: reportable(err).code });
      }
    }
    if (results.length === 0)
      throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `no destination holds backup ${id}`);
    const passed = results.every((r) => r.result === 'passed');
    const target = { backupId: id, result: passed ? 'passed' : 'failed', destinations: results };
    const audit: AuditEvent = event
      ? { ...event, target, outcome: passed ? 'success' : 'failure' }
      : systemEvent(
          { id: ACTOR, action: 'backup.verify', outcome: passed ? 'success' : 'failure', target },
          clock(),
        );
    await records.verified(id, clock().toISOString(), results, audit);
    return (await records.get(id)) as BackupView;
  }

  /**
   * The complete copies of runs a stopped server left running (recoverInterrupted): each read back
   * whole is `checked`; a run with one or more becomes `done` or `partial`, audited as a
   * `backup.create` that was recovered, and is verified as after any backup.
   */
  async function settle(complete: Map<string, ConfiguredDestination[]>): Promise<void> {
    let manifestKey: ManifestKey;
    try {
      manifestKey = await deps.manifestKey();
    } catch {
      return; // keyd not reachable: the runs stay interrupted; their copies stay, as they were
    }
    for (const [id, holders] of complete) {
      const checked: string[] = [];
      let read: Awaited<ReturnType<typeof verifyBackupInBackground>> | undefined;
      for (const d of holders) {
        if (closing) return;
        try {
          read = await verifyBackupInBackground({
            destination: d.destination,
            backupId: id,
            keys: deps.keys,
            manifestKey,
            signal: stopping.signal,
          });
          await records.updateCopy(
            id,
            d.name,
            { state: 'checked', attempts: 1, error: null },
            clock().toISOString(),
          );
          checked.push(d.name);
        } catch {
          // Does not read back whole: this copy stays failed, as recorded.
        }
      }
      const view = await records.get(id);
      if (read === undefined || view === undefined || closing) continue;
      const outcome = checked.length === deps.destinations.length ? 'done' : 'partial';
      await records.finish(
        id,
        {
          ended_at: view.endedAt ?? clock().toISOString(),
          outcome,
          error_code: null,
          plaintext_bytes: read.plaintextBytes,
          files: read.files,
        },
        systemEvent(
          {
            id: ACTOR,
            action: 'backup.create',
            outcome: 'success',
            target: { backupId: id, outcome, recovered: true, destinations: checked },
          },
          clock(),
        ),
      );
      if (!closing && !verifying) await exclusive(id, undefined).catch(() => undefined);
    }
  }

  return {
    /** Starts a backup now; TRESOR_ERR_BACKUP_RUNNING while one runs. */
    async start(trigger: 'schedule' | 'request', event?: AuditEvent): Promise<StartedBackup> {
      if (current || closing)
        throw new BackupError(
          'TRESOR_ERR_BACKUP_RUNNING',
          'a backup is running; try again when it has finished',
        );
      const startedAt = clock();
      const id = newBackupId(startedAt);
      // The run's lock is taken before the run is recorded `running`: no recovery ever sees the
      // run without its maker's lock.
      const begun = runLock.hold(id).then(async (release) => {
        try {
          await records.begin(
            {
              id,
              trigger,
              startedAt: startedAt.toISOString(),
              destinations: deps.destinations.map((d) => d.name),
            },
            event ? { ...event, target: { backupId: id } } : undefined,
          );
        } catch (error) {
          await release();
          throw error;
        }
        return release;
      });
      const done = begun.then((release) => run(id, startedAt).finally(release));
      current = done
        .catch(() => undefined)
        .finally(() => {
          current = undefined;
        });
      await begun;
      return { id, done };
    },

    /** Whether a backup is being taken now. */
    running: () => current !== undefined,

    /** The id of the backup being verified now, if any. */
    verifying: (): string | undefined => verifying?.id,

    /**
     * Starts verifying a backup again and answers at once; the result is recorded (with `event`,
     * the operator's request, as its audit entry) and read with records.get(). Refused with
     * TRESOR_ERR_BACKUP_VERIFYING while a verification runs, TRESOR_ERR_BACKUP_NOT_FOUND when no
     * configured destination holds the backup.
     */
    async requestVerify(id: string, event: AuditEvent): Promise<{ id: string; requestedAt: string }> {
      if (verifying || closing)
        throw new BackupError(
          'TRESOR_ERR_BACKUP_VERIFYING',
          'a verification is running; try again when it has finished',
        );
      const view = await records.get(id);
      if (!view) throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `no backup ${id}`);
      if (holders(view).length === 0)
        throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `no destination holds backup ${id}`);
      if (verifying)
        throw new BackupError(
          'TRESOR_ERR_BACKUP_VERIFYING',
          'a verification is running; try again when it has finished',
        );
      const requestedAt = clock().toISOString();
      void exclusive(id, event).catch(() => undefined);
      return { id, requestedAt };
    },

    /** Verifies a backup now and waits for the result (tests, tools). */
    verify: async (id: string, event?: AuditEvent): Promise<BackupView> => {
      while (verifying) await verifying.done;
      return exclusive(id, event);
    },

    /**
     * The scheduled re-verification: up to `limit` backups, the least recently verified first, each
     * as after a backup (trial restore at one destination, verifyBackup at the others), recorded and
     * audited (`backup.verify` by the system actor `backup`). Skipped while a backup or a
     * verification runs (the next run comes); stops at the next backup when the server stops.
     */
    async reverify(limit: number): Promise<{ verified: string[]; failed: { id: string; code: string }[] }> {
      const report = { verified: [] as string[], failed: [] as { id: string; code: string }[] };
      if (current || verifying || closing) return report;
      const ids = await records.leastRecentlyVerified(
        limit,
        deps.destinations.map((d) => d.name),
      );
      for (const id of ids) {
        if (closing || current || verifying) break;
        const view = await exclusive(id, undefined);
        report.verified.push(id);
        if (view.verification?.result !== 'passed') {
          const code =
            view.destinations.find((c) => c.verification?.result === 'failed')?.verification?.code ??
            'TRESOR_ERR_BACKUP_INVALID';
          report.failed.push({ id, code });
        }
      }
      return report;
    },

    /**
     * Runs a stopped server left `running`: marked interrupted, audited, their partial objects
     * removed. A copy that is complete (its manifest, written last, is there) is kept, and then
     * checked in the background (settle): a data folder restored from a backup records that very
     * backup as running (the control store was copied while it ran), and a server killed after its
     * last manifest but before recording the end leaves a whole backup too. Each complete copy that
     * reads back whole (signature, every chunk's digest and decryption through keyd, every file's
     * digest) is `checked`, and the run becomes `done` (every destination) or `partial` — what a
     * run that had ended normally would have recorded; its verification follows as after any
     * backup. A copy that does not read back leaves the run `interrupted`. While this runs, a new
     * backup is refused (TRESOR_ERR_BACKUP_RUNNING), as during any other.
     */
    async recoverInterrupted(): Promise<string[]> {
      const ids = await records.interrupt(
        clock().toISOString(),
        (id) =>
          systemEvent(
            {
              id: ACTOR,
              action: 'backup.create',
              outcome: 'failure',
              target: { backupId: id, outcome: 'interrupted' },
            },
            clock(),
          ),
        (id) => runLock.makerGone(id),
      );
      const complete = new Map<string, ConfiguredDestination[]>();
      for (const id of ids) {
        for (const d of deps.destinations) {
          const whole = await removeUnlessComplete(d.destination, id).catch(() => false);
          if (whole) complete.set(id, [...(complete.get(id) ?? []), d]);
        }
      }
      if (complete.size > 0 && !current && !closing) {
        current = settle(complete)
          .catch(() => undefined)
          .finally(() => {
            current = undefined;
          });
      }
      return ids;
    },

    /** Resolves once the background work of recoverInterrupted (settling complete copies) is over. */
    settled: async (): Promise<void> => {
      await current;
    },

    /**
     * The server stops: the running backup ends at its next object (removed, recorded
     * `interrupted`), retry waits are cut short, a running trial restore is stopped and a
     * verification stops before its next destination (neither recorded); resolves once they have.
     */
    async close(): Promise<void> {
      closing = true;
      stopping.abort();
      for (const wake of [...wakers]) wake();
      await current;
      await verifying?.done;
      await runLock.close();
    },
  };
}

export type BackupRuns = ReturnType<typeof createBackupRuns>;

/**
 * Removes a backup's objects from a destination unless its manifest is there (a complete backup);
 * whether it was complete.
 */
async function removeUnlessComplete(destination: Destination, backupId: string): Promise<boolean> {
  const keys = await destination.list(`${backupId}/`);
  if (keys.includes(`${backupId}/${MANIFEST_OBJECT}`)) return true;
  await deleteBackup(destination, backupId);
  return false;
}

const unknownError = { code: 'TRESOR_ERR_BACKUP_FAILED', message: 'not written' };

/** What of an error is recorded: a Tresor code with its message, else only the class name. */
function reportable(err: unknown): { code: string; message: string } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    code?: unknown;
    message?: unknown;
    name?: unknown;
  };
  if (typeof e.code === 'string' && /^TRESOR_ERR_[A-Z0-9_]+$/.test(e.code)) {
    return { code: e.code, message: typeof e.message === 'string' ? e.message : '' };
  }
  return { code: 'TRESOR_ERR_BACKUP_FAILED', message: typeof e.name === 'string' ? e.name : 'Error' };
}
