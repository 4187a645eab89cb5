/**
 * The backup tables of the control store: what the server knows of the backups it took, so a
 * restarted server (and `tresor backup list`, and monitoring) still knows what it has.
 *
 *   backup_runs    one row per backup: its id (backup-id.ts), when it started and ended, its size,
 *                  the outcome (running → done when every destination holds it and read it back,
 *                  partial when some do, failed when none does, interrupted when the server stopped
 *                  during it), the error code of a failed run, and the verification's result and time
 *   backup_copies  one row per backup and destination: its state (writing, checked = written and
 *                  read back, failed, deleted by retention), the attempts, the last error's code and
 *                  message (Tresor's own messages: they name no secret and no value), and the result
 *                  and time of the last verification at that destination
 *
 * Times are ISO 8601 UTC text, as in the rest of the control store.
 */
import { type Kysely, type Migration, sql } from 'kysely';

export const RUN_OUTCOMES = ['running', 'done', 'partial', 'failed', 'interrupted'] as const;
export type RunOutcome = (typeof RUN_OUTCOMES)[number];

export const COPY_STATES = ['writing', 'checked', 'failed', 'deleted'] as const;
export type CopyState = (typeof COPY_STATES)[number];

export const VERIFICATION_RESULTS = ['passed', 'failed'] as const;
export type VerificationResult = (typeof VERIFICATION_RESULTS)[number];

export interface BackupRunsTable {
  id: string;
  /** What started it: `schedule` or `request` (POST /v1/backups). */
  trigger: string;
  started_at: string;
  ended_at: string | null;
  outcome: RunOutcome;
  /** Plaintext bytes of the snapshot, and the bytes stored at each destination. */
  plaintext_bytes: number | null;
  stored_bytes: number | null;
  files: number | null;
  error_code: string | null;
  verification: VerificationResult | null;
  verified_at: string | null;
}

export interface BackupCopiesTable {
  backup: string;
  destination: string;
  state: CopyState;
  attempts: number;
  error_code: string | null;
  error_message: string | null;
  updated_at: string;
  verification: VerificationResult | null;
  verification_code: string | null;
  verified_at: string | null;
}

export interface BackupDB {
  backup_runs: BackupRunsTable;
  backup_copies: BackupCopiesTable;
}

const inList = (values: readonly string[]) => sql.join(values.map((v) => sql.lit(v)));

export const backupRunsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('backup_runs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('trigger', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('ended_at', 'text')
      .addColumn('outcome', 'text', (c) => c.notNull())
      .addColumn('plaintext_bytes', 'integer')
      .addColumn('stored_bytes', 'integer')
      .addColumn('files', 'integer')
      .addColumn('error_code', 'text')
      .addColumn('verification', 'text')
      .addColumn('verified_at', 'text')
      .addCheckConstraint('backup_runs_outcome', sql`outcome IN (${inList(RUN_OUTCOMES)})`)
      .addCheckConstraint(
        'backup_runs_verification',
        sql`verification IS NULL OR verification IN (${inList(VERIFICATION_RESULTS)})`,
      )
      .execute();
    await db.schema.createIndex('backup_runs_started').on('backup_runs').column('started_at').execute();
    await db.schema
      .createTable('backup_copies')
      .addColumn('backup', 'text', (c) => c.notNull().references('backup_runs.id'))
      .addColumn('destination', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('error_code', 'text')
      .addColumn('error_message', 'text')
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('verification', 'text')
      .addColumn('verification_code', 'text')
      .addColumn('verified_at', 'text')
      .addPrimaryKeyConstraint('backup_copies_pk', ['backup', 'destination'])
      .addCheckConstraint('backup_copies_state', sql`state IN (${inList(COPY_STATES)})`)
      .addCheckConstraint(
        'backup_copies_verification',
        sql`verification IS NULL OR verification IN (${inList(VERIFICATION_RESULTS)})`,
      )
      .execute();
  },
};

/** PostgreSQL's backup tables: the same columns; byte and file counts are bigint. */
export const backupRunsPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      CREATE TABLE backup_runs (
        id text PRIMARY KEY,
        trigger text NOT NULL,
        started_at text NOT NULL,
        ended_at text,
        outcome text NOT NULL,
        plaintext_bytes bigint,
        stored_bytes bigint,
        files bigint,
        error_code text,
        verification text,
        verified_at text,
        CONSTRAINT backup_runs_outcome CHECK (outcome IN (${inList(RUN_OUTCOMES)})),
        CONSTRAINT backup_runs_verification CHECK (verification IS NULL OR verification IN (${inList(VERIFICATION_RESULTS)}))
      );
      CREATE INDEX backup_runs_started ON backup_runs (started_at);
      CREATE TABLE backup_copies (
        backup text NOT NULL REFERENCES backup_runs (id),
        destination text NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL,
        error_code text,
        error_message text,
        updated_at text NOT NULL,
        verification text,
        verification_code text,
        verified_at text,
        CONSTRAINT backup_copies_pk PRIMARY KEY (backup, destination),
        CONSTRAINT backup_copies_state CHECK (state IN (${inList(COPY_STATES)})),
        CONSTRAINT backup_copies_verification CHECK (verification IS NULL OR verification IN (${inList(VERIFICATION_RESULTS)}))
      );`.execute(db);
  },
};
