/** The errors of record lookups and optimistic concurrency, one definition each. */
import { TresorError } from '../errors.ts';

export function notFound(): TresorError {
  // One error whatever the reason (no collection, no record, wrong collection): nothing to probe.
  return new TresorError('TRESOR_ERR_NOT_FOUND', 'no such record or collection');
}

export function checkIfMatch(ifMatch: number | undefined): void {
  if (ifMatch !== undefined && (!Number.isSafeInteger(ifMatch) || ifMatch < 1)) {
    throw new TresorError('TRESOR_ERR_BAD_REQUEST', 'If-Match must be a record version (a positive integer)');
  }
}

export function preconditionFailed(current: number): TresorError {
  return new TresorError('TRESOR_ERR_PRECONDITION_FAILED', 'the record has another version', { current });
}
