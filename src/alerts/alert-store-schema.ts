/**
 * The alert tables of the control store.
 *
 *   alerts            one row per alert: kind, severity, subject (ids only), first and last seen, how
 *                     many occurrences, the evidence (a JSON array of audit log indices, bounded), its
 *                     state, and who acknowledged and resolved it, when, and their note
 *   alert_deliveries  one row per alert and channel (webhook, mail): pending → delivered or failed,
 *                     the attempts, when the next is due, and the last error (Tresor's own words: the
 *                     channel and a status or error code, never the endpoint's URL or answer body)
 *   alert_watch       one row: the next audit log index the detectors read, so a restarted server
 *                     goes on where it stopped and an entry is never judged twice
 *
 * Kinds and subject kinds are checked by the code (alert-vocabulary.ts), not by the table, so a new
 * detector needs no migration. At most one alert per kind and subject is not resolved (a partial unique index): more evidence
 * bumps that alert's count instead of opening another. Times are ISO 8601 UTC text.
 */
import { type Kysely, type Migration, sql } from 'kysely';
import {
  ALERT_SEVERITIES,
  ALERT_STATES,
  type AlertKind,
  type AlertSeverity,
  type AlertState,
  type SubjectKind,
} from './alert-vocabulary.ts';

export const DELIVERY_CHANNELS = ['webhook', 'mail'] as const;
export type DeliveryChannel = (typeof DELIVERY_CHANNELS)[number];
export const DELIVERY_STATES = ['pending', 'delivered', 'failed'] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

export interface AlertsTable {
  id: string;
  kind: AlertKind;
  severity: AlertSeverity;
  subject_kind: SubjectKind;
  subject: string;
  first_seen: string;
  last_seen: string;
  count: number;
  /** JSON array of audit log indices. */
  evidence: string;
  state: AlertState;
  acknowledged_by: string | null;
  acknowledged_at: string | null;
  acknowledge_note: string | null;
  resolved_by: string | null;
  resolved_at: string | null;
  resolve_note: string | null;
}

export interface AlertDeliveriesTable {
  alert: string;
  channel: DeliveryChannel;
  state: DeliveryState;
  attempts: number;
  last_error: string | null;
  updated_at: string;
  /** When a pending delivery is tried next. */
  next_attempt_at: string;
}

export interface AlertWatchTable {
  id: number;
  next_index: number;
}

export interface AlertsDB {
  alerts: AlertsTable;
  alert_deliveries: AlertDeliveriesTable;
  alert_watch: AlertWatchTable;
}

const inList = (values: readonly string[]) => sql.join(values.map((v) => sql.lit(v)));

export const alertsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('alerts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('severity', 'text', (c) => c.notNull())
      .addColumn('subject_kind', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('first_seen', 'text', (c) => c.notNull())
      .addColumn('last_seen', 'text', (c) => c.notNull())
      .addColumn('count', 'integer', (c) => c.notNull())
      .addColumn('evidence', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('acknowledged_by', 'text')
      .addColumn('acknowledged_at', 'text')
      .addColumn('acknowledge_note', 'text')
      .addColumn('resolved_by', 'text')
      .addColumn('resolved_at', 'text')
      .addColumn('resolve_note', 'text')
      .addCheckConstraint('alerts_severity', sql`severity IN (${inList(ALERT_SEVERITIES)})`)
      .addCheckConstraint('alerts_state', sql`state IN (${inList(ALERT_STATES)})`)
      .execute();
    // The dedup rule: one unresolved alert per kind and subject.
    await sql`CREATE UNIQUE INDEX alerts_unresolved ON alerts (kind, subject_kind, subject) WHERE state <> 'resolved'`.execute(
      db,
    );
    await db.schema.createIndex('alerts_last_seen').on('alerts').column('last_seen').execute();
    await db.schema
      .createTable('alert_deliveries')
      .addColumn('alert', 'text', (c) => c.notNull().references('alerts.id'))
      .addColumn('channel', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('next_attempt_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('alert_deliveries_pk', ['alert', 'channel'])
      .addCheckConstraint('alert_deliveries_channel', sql`channel IN (${inList(DELIVERY_CHANNELS)})`)
      .addCheckConstraint('alert_deliveries_state', sql`state IN (${inList(DELIVERY_STATES)})`)
      .execute();
    await db.schema
      .createTable('alert_watch')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('next_index', 'integer', (c) => c.notNull())
      .addCheckConstraint('alert_watch_one_row', sql`id = 1`)
      .execute();
  },
};

/** PostgreSQL's alert tables: the same columns and the same partial unique index; counts are bigint. */
export const alertsPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      CREATE TABLE alerts (
        id text PRIMARY KEY,
        kind text NOT NULL,
        severity text NOT NULL,
        subject_kind text NOT NULL,
        subject text NOT NULL,
        first_seen text NOT NULL,
        last_seen text NOT NULL,
        count bigint NOT NULL,
        evidence text NOT NULL,
        state text NOT NULL,
        acknowledged_by text,
        acknowledged_at text,
        acknowledge_note text,
        resolved_by text,
        resolved_at text,
        resolve_note text,
        CONSTRAINT alerts_severity CHECK (severity IN (${inList(ALERT_SEVERITIES)})),
        CONSTRAINT alerts_state CHECK (state IN (${inList(ALERT_STATES)}))
      );
      CREATE UNIQUE INDEX alerts_unresolved ON alerts (kind, subject_kind, subject) WHERE state <> 'resolved';
      CREATE INDEX alerts_last_seen ON alerts (last_seen);
      CREATE TABLE alert_deliveries (
        alert text NOT NULL REFERENCES alerts (id),
        channel text NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL,
        last_error text,
        updated_at text NOT NULL,
        next_attempt_at text NOT NULL,
        CONSTRAINT alert_deliveries_pk PRIMARY KEY (alert, channel),
        CONSTRAINT alert_deliveries_channel CHECK (channel IN (${inList(DELIVERY_CHANNELS)})),
        CONSTRAINT alert_deliveries_state CHECK (state IN (${inList(DELIVERY_STATES)}))
      );
      CREATE TABLE alert_watch (
        id integer PRIMARY KEY,
        next_index bigint NOT NULL,
        CONSTRAINT alert_watch_one_row CHECK (id = 1)
      );`.execute(db);
  },
};
