/**
 * Stored alerts: raised (or bumped) by the detectors, read by the security role, acknowledged and
 * resolved by a person. Each acknowledgement and resolution commits with its audit event, so the log
 * says who handled which alert and when (the note stays in the alert row: it is free text, and the
 * log holds no free text).
 *
 * Deduplication: while an alert of a kind and subject is not resolved, new evidence bumps it — its
 * count, last-seen time, evidence and (if higher) severity — instead of opening another; once resolved,
 * the next evidence opens a new alert.
 */
import type { Transaction } from 'kysely';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import { newId } from '../identity/tokens.ts';
import type { Store } from '../store/types.ts';
import type { AlertsDB, AlertsTable, DeliveryChannel, DeliveryState } from './alert-store-schema.ts';
import {
  ALERT_SEVERITIES,
  type AlertKind,
  type AlertSeverity,
  type AlertSignal,
  type AlertState,
  type AlertSubject,
  EVIDENCE_HEAD,
  MAX_EVIDENCE,
} from './alert-vocabulary.ts';

type DB = AlertsDB & WithAuditEvents;

/** A person's step on an alert. */
export interface AlertStep {
  by: string;
  at: string;
  note: string;
}

export interface AlertDeliveryView {
  channel: DeliveryChannel;
  state: DeliveryState;
  attempts: number;
  lastError: string | null;
  updatedAt: string;
}

export interface AlertView {
  id: string;
  kind: AlertKind;
  severity: AlertSeverity;
  subject: AlertSubject;
  firstSeen: string;
  lastSeen: string;
  count: number;
  /** Audit log indices (GET /v1/audit/entries?from=<index>&limit=1 shows each). */
  evidence: number[];
  state: AlertState;
  acknowledged: AlertStep | null;
  resolved: AlertStep | null;
  deliveries: AlertDeliveryView[];
}

export interface RaisedAlert {
  id: string;
  /** True when this signal opened the alert (deliveries go out for new alerts only). */
  opened: boolean;
}

export interface AlertService {
  /** Opens or bumps the alert of the signal, inside the caller's transaction. */
  raiseIn(trx: Transaction<AlertsDB>, signal: AlertSignal): Promise<RaisedAlert>;
  list(options: { state?: AlertState; limit: number }): Promise<AlertView[]>;
  get(id: string): Promise<AlertView | undefined>;
  /** open → acknowledged; commits `event` with it. TRESOR_ERR_ALERT_STATE from another state. */
  acknowledge(id: string, step: { by: string; note: string }, event: AuditEvent): Promise<AlertView>;
  /** open or acknowledged → resolved; commits `event` with it. */
  resolve(id: string, step: { by: string; note: string }, event: AuditEvent): Promise<AlertView>;
}

export function createAlertService(deps: { control: Store<DB>; now: () => Date }): AlertService {
  const { control } = deps;

  async function view(id: string): Promise<AlertView | undefined> {
    const row = await control.db.selectFrom('alerts').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    const deliveries = await control.db
      .selectFrom('alert_deliveries')
      .selectAll()
      .where('alert', '=', id)
      .orderBy('channel')
      .execute();
    return toView(row, deliveries);
  }

  async function step(
    id: string,
    from: readonly AlertState[],
    apply: (at: string) => Partial<AlertsTable>,
    event: AuditEvent,
  ): Promise<AlertView> {
    await control.write(async (trx) => {
      const row = await trx.selectFrom('alerts').select('state').where('id', '=', id).executeTakeFirst();
      if (!row) throw new TresorError('TRESOR_ERR_ALERT_NOT_FOUND', 'no such alert');
      if (!from.includes(row.state))
        throw new TresorError('TRESOR_ERR_ALERT_STATE', `the alert is ${row.state}`, { state: row.state });
      await trx.updateTable('alerts').set(apply(deps.now().toISOString())).where('id', '=', id).execute();
      await appendAuditEvent(trx, event);
    });
    return (await view(id)) as AlertView;
  }

  return {
    async raiseIn(trx, signal) {
      const open = await trx
        .selectFrom('alerts')
        .select(['id', 'severity', 'last_seen', 'evidence'])
        .where('kind', '=', signal.kind)
        .where('subject_kind', '=', signal.subject.kind)
        .where('subject', '=', signal.subject.id)
        .where('state', '<>', 'resolved')
        .executeTakeFirst();
      if (open) {
        await trx
          .updateTable('alerts')
          .set((eb) => ({
            count: eb('count', '+', signal.count),
            last_seen: [signal.at, open.last_seen].sort()[1] as string, // ISO times sort as text
            evidence: JSON.stringify(mergeEvidence(JSON.parse(open.evidence) as number[], signal.evidence)),
            severity: higher(open.severity, signal.severity),
          }))
          .where('id', '=', open.id)
          .execute();
        return { id: open.id, opened: false };
      }
      const id = newId('alr');
      await trx
        .insertInto('alerts')
        .values({
          id,
          kind: signal.kind,
          severity: signal.severity,
          subject_kind: signal.subject.kind,
          subject: signal.subject.id,
          first_seen: signal.at,
          last_seen: signal.at,
          count: signal.count,
          evidence: JSON.stringify(mergeEvidence([], signal.evidence)),
          state: 'open',
          acknowledged_by: null,
          acknowledged_at: null,
          acknowledge_note: null,
          resolved_by: null,
          resolved_at: null,
          resolve_note: null,
        })
        .execute();
      return { id, opened: true };
    },

    async list(options) {
      let query = control.db.selectFrom('alerts').selectAll();
      if (options.state) query = query.where('state', '=', options.state);
      const rows = await query.orderBy('last_seen', 'desc').orderBy('id').limit(options.limit).execute();
      if (rows.length === 0) return [];
      const deliveries = await control.db
        .selectFrom('alert_deliveries')
        .selectAll()
        .where(
          'alert',
          'in',
          rows.map((r) => r.id),
        )
        .orderBy('channel')
        .execute();
      return rows.map((row) =>
        toView(
          row,
          deliveries.filter((d) => d.alert === row.id),
        ),
      );
    },

    get: view,

    acknowledge(id, person, event) {
      return step(
        id,
        ['open'],
        (at) => ({
          state: 'acknowledged',
          acknowledged_by: person.by,
          acknowledged_at: at,
          acknowledge_note: person.note,
        }),
        event,
      );
    },

    resolve(id, person, event) {
      return step(
        id,
        ['open', 'acknowledged'],
        (at) => ({ state: 'resolved', resolved_by: person.by, resolved_at: at, resolve_note: person.note }),
        event,
      );
    },
  };
}

/** The stored evidence after adding `more`: the first EVIDENCE_HEAD indices, then the newest. */
export function mergeEvidence(stored: readonly number[], more: readonly number[]): number[] {
  const all = [...stored, ...more];
  if (all.length <= MAX_EVIDENCE) return all;
  return [...all.slice(0, EVIDENCE_HEAD), ...all.slice(all.length - (MAX_EVIDENCE - EVIDENCE_HEAD))];
}

function higher(a: AlertSeverity, b: AlertSeverity): AlertSeverity {
  return ALERT_SEVERITIES.indexOf(a) >= ALERT_SEVERITIES.indexOf(b) ? a : b;
}

function toView(
  row: AlertsTable,
  deliveries: readonly {
    channel: DeliveryChannel;
    state: DeliveryState;
    attempts: number;
    last_error: string | null;
    updated_at: string;
  }[],
): AlertView {
  return {
    id: row.id,
    kind: row.kind,
    severity: row.severity,
    subject: { kind: row.subject_kind, id: row.subject },
    firstSeen: row.first_seen,
    lastSeen: row.last_seen,
    count: row.count,
    evidence: JSON.parse(row.evidence) as number[],
    state: row.state,
    acknowledged:
      row.acknowledged_by && row.acknowledged_at
        ? { by: row.acknowledged_by, at: row.acknowledged_at, note: row.acknowledge_note ?? '' }
        : null,
    resolved:
      row.resolved_by && row.resolved_at
        ? { by: row.resolved_by, at: row.resolved_at, note: row.resolve_note ?? '' }
        : null,
    deliveries: deliveries.map((d) => ({
      channel: d.channel,
      state: d.state,
      attempts: d.attempts,
      lastError: d.last_error,
      updatedAt: d.updated_at,
    })),
  };
}
