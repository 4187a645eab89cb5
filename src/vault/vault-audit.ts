/**
 * The vault's audit events (invariant 4). A change and its audit event are one store.write() of the
 * tenant's store; a read returns data only after its event is durable in the control store's outbox
 * (ctx.readOutbox, src/audit/read-outbox.ts), as is any event that accompanies no change (a failed
 * decryption, an export). Events name fields, never values.
 *
 * The vault builds each of its events once: the caller (an HTTP route, the closing process) says who
 * acts, why and from which request (AuditOrigin); the vault stamps when it began the operation and
 * names what it did, on which target, with which outcome.
 */
import type { AuditEvent } from '../audit/event.ts';
import type { ReadOutbox } from '../audit/read-outbox.ts';
import { CryptoError } from '../crypto/index.ts';

/** The actions of the vault's audit events; routes declare theirs from the same list. */
export const VaultAction = {
  collectionPut: 'collection.put',
  collectionList: 'collection.list',
  recordCreate: 'record.create',
  /** A create retried with its Idempotency-Key: the first answer again, nothing created. */
  recordCreateReplay: 'record.create-replay',
  recordRead: 'record.read',
  recordUpdate: 'record.update',
  recordDelete: 'record.delete',
  recordList: 'record.list',
  recordSearch: 'record.search',
  tenantExport: 'tenant.export',
} as const;
export type VaultAction = (typeof VaultAction)[keyof typeof VaultAction];

/** Who acts, why (an access grant) and from which request: the caller's part of an audit event. */
export type AuditOrigin = Pick<AuditEvent, 'actor'> &
  Partial<Pick<AuditEvent, 'grant' | 'requestId' | 'sourceAddress' | 'userAgent'>>;

export function auditEvent(
  origin: AuditOrigin,
  at: string,
  tenant: string,
  action: VaultAction,
  target: NonNullable<AuditEvent['target']>,
  outcome: AuditEvent['outcome'] = 'success',
): AuditEvent {
  // Copy the caller's fields one by one: nothing else the caller's object carries reaches the log.
  const event: AuditEvent = { at, actor: { ...origin.actor }, tenant, action, target, outcome };
  if (origin.grant !== undefined) event.grant = { ...origin.grant };
  if (origin.requestId !== undefined) event.requestId = origin.requestId;
  if (origin.sourceAddress !== undefined) event.sourceAddress = origin.sourceAddress;
  if (origin.userAgent !== undefined) event.userAgent = origin.userAgent;
  return event;
}

/**
 * Audits a failed decryption (a tampered or moved ciphertext is a security event) and rethrows. The
 * event changes nothing of the tenant's store: it goes to the read outbox.
 */
export async function auditingDecryptFailure<T>(
  outbox: ReadOutbox,
  event: () => AuditEvent,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof CryptoError) await outbox.record(event());
    throw err;
  }
}
