/**
 * Where the audit events that describe no change of a tenant's store go: audited reads (record
 * read, list, search, collection list, export), their failures, and the refusals and failures the
 * request pipeline records. They go to the CONTROL store's outbox, one store for every tenant, so a
 * read over any tenant joins the control store's group commit — one durable commit per batch for all
 * reads — instead of an fsync of its own tenant's file (on SQLite each tenant is a file: from about
 * 32 tenants up every read paid one; docs/architecture.md, "Durable commits over many tenant files").
 *
 * Nothing of the invariants moves: the event is durable before the read's data is returned (a
 * failed commit fails the read), and it keeps its `tenant`, which the sequencer copies into the
 * log's tenant column, so a tenant's listing and access review find it as before. A change of a
 * tenant's data still commits with its event in the tenant's own store, in one transaction.
 *
 * What differs (docs/audit.md): a read needs no `audit_pending_sources` mark (the control outbox is
 * always read), and in the log a tenant's read may come before a write of the tenant that committed
 * just before it — each outbox keeps its own order, the log's order across outboxes is the
 * sequencer's move order.
 */
import type { Store } from '../store/types.ts';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from './event.ts';

export interface ReadOutbox {
  /** Appends the event to the control store's outbox; resolves once it is durable. */
  record(event: AuditEvent): Promise<void>;
}

/** `control`: the control store as the domains write it (notifying the sequencer). */
export function createReadOutbox(control: Store<WithAuditEvents>): ReadOutbox {
  return {
    record: (event) => control.write((trx) => appendAuditEvent(trx, event)),
  };
}
