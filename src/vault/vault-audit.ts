/**
 * The vault's audit events (invariant 4). A change and its audit event are one store.write(); a
 * read returns data only after its event's write() resolved. Events name fields, never values.
 */
import { type AuditEvent, appendAuditEvent } from '../audit/event.ts';
import { CryptoError } from '../crypto/index.ts';
import type { Store } from '../store/types.ts';
import type { TenantDB } from './tenant-store-schema.ts';

/** The caller's part of an audit event: who, when, from where. The vault adds what and on which target. */
export type AuditBase = Pick<AuditEvent, 'at' | 'actor'> &
  Partial<Pick<AuditEvent, 'grant' | 'requestId' | 'sourceAddress' | 'userAgent'>>;

export function auditEvent(
  base: AuditBase,
  tenant: string,
  action: string,
  target: NonNullable<AuditEvent['target']>,
  outcome: AuditEvent['outcome'] = 'success',
): AuditEvent {
  // Copy the caller's fields one by one: nothing else the caller's object carries reaches the log.
  const event: AuditEvent = { at: base.at, actor: { ...base.actor }, tenant, action, target, outcome };
  if (base.grant !== undefined) event.grant = { ...base.grant };
  if (base.requestId !== undefined) event.requestId = base.requestId;
  if (base.sourceAddress !== undefined) event.sourceAddress = base.sourceAddress;
  if (base.userAgent !== undefined) event.userAgent = base.userAgent;
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
