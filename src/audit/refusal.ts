/**
 * Refusals already in the audit log. A domain that commits the audit event of its own refusal
 * (with what only it knows: the grant's tenant, why it refused) marks the error it then throws, so
 * that the request pipeline, which audits failed requests itself, does not record it a second time.
 * Each refusal is audited exactly once, by whoever knows the most about it.
 */

const audited = new WeakSet<object>();

/** Marks `error` as one whose refusal event is committed; returns it, to be thrown. */
export function markAudited<E extends object>(error: E): E {
  audited.add(error);
  return error;
}

/** Whether `error`'s refusal is already in the audit log. */
export function isAudited(error: unknown): boolean {
  return typeof error === 'object' && error !== null && audited.has(error);
}

/** Refusals that deny the caller (rather than fail their request): no permission, no fresh second factor. */
const DENIED_CODES: ReadonlySet<string> = new Set([
  'TRESOR_ERR_FORBIDDEN',
  'TRESOR_ERR_SECOND_FACTOR_REQUIRED',
]);

/** The outcome an audit event gives a refusal with this error code. */
export function refusalOutcome(code: string): 'denied' | 'failure' {
  return DENIED_CODES.has(code) ? 'denied' : 'failure';
}
