/**
 * Where an audit event the request pipeline records is written: the control store's outbox, for
 * every actor and tenant. These events (a collection list, a replayed create, a refusal or failure of
 * a request) accompany no change of a tenant's store, so, as audited reads' events, they take the
 * control store's group commit rather than an fsync of a tenant's file (src/audit/read-outbox.ts).
 * The event keeps its tenant, which the log's tenant column carries.
 */
import type { Store } from '../store/types.ts';
import type { AuditEvent, WithAuditEvents } from './event.ts';
import { createReadOutbox } from './read-outbox.ts';

export interface AuditRecorderDeps {
  control: Store<WithAuditEvents>;
}

export interface AuditRecorder {
  /** Writes the event to the control store's outbox; resolves once it is durable. */
  record(event: AuditEvent, tenant: string | null): Promise<void>;
}

export function createAuditRecorder(deps: AuditRecorderDeps): AuditRecorder {
  const outbox = createReadOutbox(deps.control);
  return {
    record: (event) => outbox.record(event),
  };
}
