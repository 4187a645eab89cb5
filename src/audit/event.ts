/**
 * Audit events as the request pipeline and the domains record them. Every store (control and each
 * tenant's) has an `audit_events` table; an event is inserted in the same transaction as the change
 * it describes (or, for a read, committed before the data is returned). The audit issue's sequencer
 * moves these events, in order, into the Merkle-tree log with signed checkpoints.
 *
 * An event names who, what, on which target — never a field value. A value that must be correlated
 * but not revealed appears only as an HMAC under a purpose-bound key.
 */
import { CompiledQuery, type Kysely, type Migration, sql, type Transaction } from 'kysely';

export type ActorKind = 'operator-admin' | 'customer' | 'staff' | 'system' | 'api-key' | 'anonymous';

export interface AuditEvent {
  at: string; // ISO 8601
  /**
   * Who acted. `grantId`: the access grant a staff member acted through; `tokenId`: the operator
   * token a machine used for its owner `id` (entries before operator tokens had owners lack it).
   */
  actor: { kind: ActorKind; id: string; grantId?: string; tokenId?: string };
  tenant: string | null;
  action: string; // e.g. record.read, record.create, tenant.create, collection.put
  target?: { collection?: string; recordIds?: string[]; fields?: string[]; [k: string]: unknown };
  outcome: 'success' | 'failure' | 'denied';
  /** For staff acting through an access grant: which, why and under which ticket (the customer sees it). */
  grant?: { id: string; reason: string; ticket: string; breakGlass?: boolean };
  requestId?: string;
  sourceAddress?: string;
  userAgent?: string;
}

/** What the request pipeline knows of the request; each domain step fills in what it did. */
export type AuditContext = Pick<AuditEvent, 'actor'> & Partial<Omit<AuditEvent, 'actor'>>;

/** The audit event of one step: the context's who/where, the step's what. */
export function auditEventFrom(
  context: AuditContext,
  step: Pick<AuditEvent, 'at' | 'tenant' | 'action' | 'outcome'> & Pick<Partial<AuditEvent>, 'target'>,
): AuditEvent {
  const event: AuditEvent = { ...context, ...step, actor: context.actor };
  if (step.target === undefined) delete event.target;
  return event;
}

export interface AuditEventsTable {
  seq: number | null; // INTEGER PRIMARY KEY, assigned by the store
  at: string;
  tenant: string | null;
  action: string;
  event: string; // the JSON of AuditEvent
}

export interface WithAuditEvents {
  audit_events: AuditEventsTable;
}

export const auditEventsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('audit_events')
      .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('tenant', 'text')
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('event', 'text', (c) => c.notNull())
      .execute();
    // Append-only: the log may only grow.
    await sql`CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`.execute(
      db,
    );
    await sql`CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`.execute(
      db,
    );
  },
};

const INSERT_EVENT = 'INSERT INTO audit_events (at, tenant, action, event) VALUES (?, ?, ?, ?)';

/**
 * Appends one event inside the caller's transaction. A precompiled statement rather than the query
 * builder: this runs on every request, and building the insert's syntax tree cost more than the insert.
 */
export async function appendAuditEvent<DB extends WithAuditEvents>(
  trx: Transaction<DB>,
  event: AuditEvent,
): Promise<void> {
  await trx.executeQuery(
    CompiledQuery.raw(INSERT_EVENT, [event.at, event.tenant, event.action, JSON.stringify(event)]),
  );
}
