/**
 * The record of the backups taken (backup-store-schema.ts): each run's progress, each copy's state
 * at its destination and each verification, written as they happen, so the server, after a
 * restart too, can say what it has. Every change that is an event (a backup finished, verified,
 * deleted) is written with its audit entry in the same transaction.
 */
import { type Kysely, sql, type Transaction } from 'kysely';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from '../audit/event.ts';
import type { Store } from '../store/types.ts';
import type {
  BackupCopiesTable,
  BackupDB,
  BackupRunsTable,
  CopyState,
  RunOutcome,
  VerificationResult,
} from './backup-store-schema.ts';

export type BackupRecordsDB = BackupDB & WithAuditEvents;
export type BackupRecordsStore = Store<BackupRecordsDB>;

/** A backup as operators see it (`tresor backup list`, GET /v1/backups). */
export interface BackupView {
  id: string;
  trigger: string;
  startedAt: string;
  endedAt: string | null;
  outcome: RunOutcome;
  plaintextBytes: number | null;
  storedBytes: number | null;
  files: number | null;
  errorCode: string | null;
  verification: { result: VerificationResult; at: string } | null;
  destinations: CopyView[];
}

export interface CopyView {
  name: string;
  state: CopyState;
  attempts: number;
  error: { code: string; message: string } | null;
  verification: { result: VerificationResult; at: string; code: string | null } | null;
}

export interface CopyUpdate {
  state: CopyState;
  attempts: number;
  error?: { code: string; message: string } | null;
}

export function createBackupRecords(control: BackupRecordsStore) {
  const write = <T>(work: (trx: Transaction<BackupRecordsDB>) => Promise<T>) => control.write(work);

  return {
    /** A new run, with one copy per destination in state `writing`, and its audit entry if any. */
    begin(
      run: { id: string; trigger: string; startedAt: string; destinations: readonly string[] },
      event?: AuditEvent,
    ): Promise<void> {
      return write(async (trx) => {
        await trx
          .insertInto('backup_runs')
          .values({
            id: run.id,
            trigger: run.trigger,
            started_at: run.startedAt,
            ended_at: null,
            outcome: 'running',
            plaintext_bytes: null,
            stored_bytes: null,
            files: null,
            error_code: null,
            verification: null,
            verified_at: null,
          })
          .execute();
        for (const destination of run.destinations) {
          await trx
            .insertInto('backup_copies')
            .values({
              backup: run.id,
              destination,
              state: 'writing',
              attempts: 0,
              error_code: null,
              error_message: null,
              updated_at: run.startedAt,
              verification: null,
              verification_code: null,
              verified_at: null,
            })
            .execute();
        }
        if (event) await appendAuditEvent(trx, event);
      });
    },

    updateCopy(backup: string, destination: string, update: CopyUpdate, at: string): Promise<void> {
      return write(async (trx) => {
        await trx
          .updateTable('backup_copies')
          .set({
            state: update.state,
            attempts: update.attempts,
            ...(update.error === undefined
              ? {}
              : { error_code: update.error?.code ?? null, error_message: update.error?.message ?? null }),
            updated_at: at,
          })
          .where('backup', '=', backup)
          .where('destination', '=', destination)
          .execute();
      });
    },

    /** The run's end (sizes, outcome), with its `backup.create` audit entry. */
    finish(
      id: string,
      end: Pick<BackupRunsTable, 'ended_at' | 'outcome' | 'error_code'> &
        Partial<Pick<BackupRunsTable, 'plaintext_bytes' | 'stored_bytes' | 'files'>>,
      event: AuditEvent,
    ): Promise<void> {
      return write(async (trx) => {
        await trx.updateTable('backup_runs').set(end).where('id', '=', id).execute();
        await appendAuditEvent(trx, event);
      });
    },

    /** A verification's results per destination and the run's overall result, with its audit entry. */
    verified(
      id: string,
      at: string,
      results: readonly { destination: string; result: VerificationResult; code: string | null }[],
      event: AuditEvent,
    ): Promise<void> {
      const overall: VerificationResult =
        results.length > 0 && results.every((r) => r.result === 'passed') ? 'passed' : 'failed';
      return write(async (trx) => {
        for (const r of results) {
          await trx
            .updateTable('backup_copies')
            .set({ verification: r.result, verification_code: r.code, verified_at: at })
            .where('backup', '=', id)
            .where('destination', '=', r.destination)
            .execute();
        }
        await trx
          .updateTable('backup_runs')
          .set({ verification: overall, verified_at: at })
          .where('id', '=', id)
          .execute();
        await appendAuditEvent(trx, event);
      });
    },

    /** A copy that retention deleted, with its `backup.delete` audit entry. */
    deleted(backup: string, destination: string, at: string, event: AuditEvent): Promise<void> {
      return write(async (trx) => {
        await trx
          .updateTable('backup_copies')
          .set({ state: 'deleted', updated_at: at })
          .where('backup', '=', backup)
          .where('destination', '=', destination)
          .execute();
        await appendAuditEvent(trx, event);
      });
    },

    /**
     * Runs left `running` by a server that stopped during them (`gone`: their maker is gone, see
     * run-lock.ts): their ids, now `interrupted`. A run another recovery marked meanwhile, or whose
     * maker finished it, is left as it is (one audit entry per interruption).
     */
    async interrupt(
      at: string,
      event: (id: string) => AuditEvent,
      gone: (id: string) => Promise<boolean>,
    ): Promise<string[]> {
      const running = await control.db
        .selectFrom('backup_runs')
        .select('id')
        .where('outcome', '=', 'running')
        .execute();
      const ids: string[] = [];
      for (const { id } of running) if (await gone(id)) ids.push(id);
      if (ids.length === 0) return [];
      return write(async (trx) => {
        const marked: string[] = [];
        for (const id of ids) {
          const updated = await trx
            .updateTable('backup_runs')
            .set({ outcome: 'interrupted', ended_at: at, error_code: 'TRESOR_ERR_BACKUP_FAILED' })
            .where('id', '=', id)
            .where('outcome', '=', 'running')
            .executeTakeFirst();
          if (Number(updated.numUpdatedRows) === 0) continue;
          await trx
            .updateTable('backup_copies')
            .set({
              state: 'failed',
              error_code: 'TRESOR_ERR_BACKUP_FAILED',
              error_message: 'the server stopped during the backup',
              updated_at: at,
            })
            .where('backup', '=', id)
            .where('state', '=', 'writing')
            .execute();
          await appendAuditEvent(trx, event(id));
          marked.push(id);
        }
        return marked;
      });
    },

    /** The newest backups first. */
    async list(limit: number): Promise<BackupView[]> {
      const runs = await control.db
        .selectFrom('backup_runs')
        .selectAll()
        .orderBy('started_at', 'desc')
        .orderBy('id', 'desc')
        .limit(limit)
        .execute();
      return views(control.db, runs);
    },

    /**
     * The ids of up to `limit` backups still held somewhere (a copy read back, not deleted), the
     * least recently verified first (never verified before any), for the scheduled re-verification.
     */
    async leastRecentlyVerified(limit: number, destinations: readonly string[]): Promise<string[]> {
      if (destinations.length === 0) return [];
      const rows = await control.db
        .selectFrom('backup_runs')
        .select('id')
        .where('outcome', 'in', ['done', 'partial'])
        .where((eb) =>
          eb.exists(
            eb
              .selectFrom('backup_copies')
              .select('backup_copies.backup')
              .whereRef('backup_copies.backup', '=', 'backup_runs.id')
              .where('backup_copies.state', '=', 'checked')
              .where('backup_copies.destination', 'in', [...destinations]),
          ),
        )
        .orderBy(sql`verified_at IS NOT NULL`)
        .orderBy('verified_at')
        .orderBy('started_at')
        .limit(limit)
        .execute();
      return rows.map((r) => r.id);
    },

    /** When the newest backup started, if any (the schedule goes on from it after a restart). */
    async lastStart(): Promise<string | undefined> {
      const row = await control.db
        .selectFrom('backup_runs')
        .select('started_at')
        .orderBy('started_at', 'desc')
        .limit(1)
        .executeTakeFirst();
      return row?.started_at;
    },

    async get(id: string): Promise<BackupView | undefined> {
      const run = await control.db
        .selectFrom('backup_runs')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      return run ? (await views(control.db, [run]))[0] : undefined;
    },
  };
}

export type BackupRecords = ReturnType<typeof createBackupRecords>;

async function views(db: Kysely<BackupRecordsDB>, runs: BackupRunsTable[]): Promise<BackupView[]> {
  if (runs.length === 0) return [];
  const copies = await db
    .selectFrom('backup_copies')
    .selectAll()
    .where(
      'backup',
      'in',
      runs.map((r) => r.id),
    )
    .orderBy('destination')
    .execute();
  const byRun = new Map<string, BackupCopiesTable[]>();
  for (const c of copies) byRun.set(c.backup, [...(byRun.get(c.backup) ?? []), c]);
  return runs.map((r) => ({
    id: r.id,
    trigger: r.trigger,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    outcome: r.outcome,
    plaintextBytes: r.plaintext_bytes,
    storedBytes: r.stored_bytes,
    files: r.files,
    errorCode: r.error_code,
    verification: r.verification && r.verified_at ? { result: r.verification, at: r.verified_at } : null,
    destinations: (byRun.get(r.id) ?? []).map((c) => ({
      name: c.destination,
      state: c.state,
      attempts: c.attempts,
      error: c.error_code ? { code: c.error_code, message: c.error_message ?? '' } : null,
      verification:
        c.verification && c.verified_at
          ? { result: c.verification, at: c.verified_at, code: c.verification_code }
          : null,
    })),
  }));
}
