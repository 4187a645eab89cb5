/**
 * Where an audit event the request pipeline records is written. Events of a tenant's API keys go
 * to that tenant's store, so a tenant's own activity stays in its outbox (and leaves with its
 * export); operator, staff, customer-console, anonymous and system events go to the control store.
 */
import type { Store } from '../store/types.ts';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from './event.ts';

export interface AuditRecorderDeps {
  control: Store<WithAuditEvents>;
  openTenant(tenant: string): Promise<Store<WithAuditEvents>>;
}

export interface AuditRecorder {
  /** Writes the event to the store it belongs to; resolves once it is durable. */
  record(event: AuditEvent, tenant: string | null): Promise<void>;
}

export function createAuditRecorder(deps: AuditRecorderDeps): AuditRecorder {
  return {
    async record(event, tenant) {
      const store =
        tenant !== null && event.actor.kind === 'api-key' ? await deps.openTenant(tenant) : deps.control;
      await store.write((trx) => appendAuditEvent(trx, event));
    },
  };
}
