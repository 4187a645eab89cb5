/**
 * Events Tresor records of itself (jobs, the disk watch, certificate reloads): the system actor
 * names the part of Tresor that acted, and the time comes from the caller's clock.
 */
import type { AuditEvent } from './event.ts';

export interface SystemEventInput {
  /** The part of Tresor that acted: the system actor's id (e.g. `tenant-close`, `disk-watch`). */
  id: string;
  action: string;
  /** Default `success`. */
  outcome?: AuditEvent['outcome'];
  target?: AuditEvent['target'];
}

export function systemEvent(input: SystemEventInput, now: Date): AuditEvent {
  return {
    at: now.toISOString(),
    actor: { kind: 'system', id: input.id },
    tenant: null,
    action: input.action,
    ...(input.target === undefined ? {} : { target: input.target }),
    outcome: input.outcome ?? 'success',
  };
}
