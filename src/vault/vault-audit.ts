/**
 * The vault's audit events (invariant 4). A change and its audit event are one store.write(); a
 * read returns data only after its event's write() resolved. Events name fields, never values.
 *
 * The vault builds each of its events once: the caller (an HTTP route, the closing process) says who
 * acts, why and from which request (AuditOrigin); the vault stamps when it began the operation and
 * names what it did, on which target, with which outcome.
 */
import { type AuditEvent, appendAuditEvent } from '../audit/event.ts';
import { CryptoError } from '../crypto/index.ts';
import type { Store } from '../store/types.ts';
import type { TenantDB } from './tenant-store-schema.ts';

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

/** Audits a failed decryption (a tampered or moved ciphertext is a security event) and rethrows. */
export async function auditingDecryptFailure<T>(
  store: Store<TenantDB>,
  event: () => AuditEvent,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof CryptoError) await store.write((trx) => appendAuditEvent(trx, event()));
    throw err;
  }
}
