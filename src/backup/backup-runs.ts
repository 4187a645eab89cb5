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
 *        through keyd) at the first destination that holds it, and verifyBackup (signature,
 *        digests, decryption through keyd) at the others; the result is recorded and audited
 *        (`backup.verify`).
 *   verify() checks a backup again now; recoverInterrupted() marks the runs a stopped server left
 *   running and removes their partial objects.
 *
 * Error codes and Tresor's own messages are recorded; they name destinations and objects, never a
 * key or a byte of the data.
 */
import { mkdir } from 'node:fs/promises';
import type { AuditEvent } from '../audit/event.ts';
import { systemEvent } from '../audit/system-event.ts';
import type { KeyService } from '../keyd/operations.ts';
import { newBackupId } from './backup-id.ts';
import type { BackupRecords, BackupView } from './backup-records.ts';
import type { ConfiguredDestination } from './configured-destinations.ts';
import { copyBackup } from './copy-backup.ts';
import { type BackupSource, createBackup } from './create-backup.ts';
import { type Destination, deleteBackup, MANIFEST_OBJECT } from './destination.ts';
import { BackupError } from './errors.ts';
import type { ManifestKey } from './manifest.ts';
import { verifyBackup } from './read-backup.ts';
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
  trial?: (destination: Destination, backupId: string) => Promise<{ ok: boolean; code: string | null }>;
  clock: () => Date;
  chunkSize?: number;
}

export interface StartedBackup {
  id: string;
  /** Settles when the run (and its verification) is over, with its outcome. */
  done: Promise<BackupView | undefined>;
}

const ACTOR = 'backup';

export function createBackupRuns(deps: BackupRunDeps) {
  const { records, clock } = deps;
  let current: Promise<unknown> | undefined;
  let closing = false;
  const wakers = new Set<() => void>();

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
        ...(deps.chunkSize === undefined ? {} : { chunkSize: deps.chunkSize }),
      });
      for (const o of result.destinations) {
        outcomes.set(o.destination, { ok: o.ok, attempts: 1, error: o.error ?? unknownError });
      }
    } catch (err) {
      failure = reportable(err);
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
    const outcome = held === 0 ? 'failed' : held === outcomes.size ? 'done' : 'partial';
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
    if (held > 0) await verify(id, undefined).catch(() => undefined);
    return records.get(id);
  }

  /** Verifies the backup at every destination that holds it; records and audits the results. */
  async function verify(id: string, event: AuditEvent | undefined): Promise<BackupView> {
    const view = await records.get(id);
    if (!view) throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `no backup ${id}`);
    const manifestKey = await deps.manifestKey();
    const results: { destination: string; result: 'passed' | 'failed'; code: string | null }[] = [];
    for (const copy of view.destinations) {
      const d = deps.destinations.find((x) => x.name === copy.name);
      if (!d || copy.state !== 'checked') continue;
      try {
        if (deps.trial && results.length === 0) {
          const trial = await deps.trial(d.destination, id);
          results.push({ destination: d.name, result: trial.ok ? 'passed' : 'failed', code: trial.code });
          continue;
        }
        await verifyBackup({ destination: d.destination, backupId: id, keys: deps.keys, manifestKey });
        results.push({ destination: d.name, result: 'passed', code: null });
      } catch (err) {
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
      const begun = records.begin(
        {
          id,
          trigger,
          startedAt: startedAt.toISOString(),
          destinations: deps.destinations.map((d) => d.name),
        },
        event ? { ...event, target: { backupId: id } } : undefined,
      );
      const done = begun.then(() => run(id, startedAt));
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

    verify,

    /**
     * Runs a stopped server left `running`: marked interrupted, audited, their partial objects
     * removed. A copy that is complete (its manifest, written last, is there) is kept: a data folder
     * restored from a backup records that very backup as running (the control store was copied
     * while it ran), and removing it would destroy, at every destination, the backup just restored.
     */
    async recoverInterrupted(): Promise<string[]> {
      const ids = await records.interrupt(clock().toISOString(), (id) =>
        systemEvent(
          {
            id: ACTOR,
            action: 'backup.create',
            outcome: 'failure',
            target: { backupId: id, outcome: 'interrupted' },
          },
          clock(),
        ),
      );
      for (const id of ids) {
        for (const d of deps.destinations) {
          await removeUnlessComplete(d.destination, id).catch(() => undefined);
        }
      }
      return ids;
    },

    /** Cuts retry waits short and waits for the backup that runs, if any. */
    async close(): Promise<void> {
      closing = true;
      for (const wake of [...wakers]) wake();
      await current;
    },
  };
}

export type BackupRuns = ReturnType<typeof createBackupRuns>;

/** Removes a backup's objects from a destination unless its manifest is there (a complete backup). */
async function removeUnlessComplete(destination: Destination, backupId: string): Promise<void> {
  const keys = await destination.list(`${backupId}/`);
  if (keys.includes(`${backupId}/${MANIFEST_OBJECT}`)) return;
  await deleteBackup(destination, backupId);
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
