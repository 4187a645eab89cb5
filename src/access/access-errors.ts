/** The access domain's refusals, worded once for grants, policies and reviews. */
import { TresorError } from '../errors.ts';
import type { GrantState } from './access-store-schema.ts';

export function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'not allowed for this account');
}

export function notFound(what: string): TresorError {
  return new TresorError('TRESOR_ERR_NOT_FOUND', `no such ${what}`);
}

export function wrongState(state: GrantState, message = `the grant is ${state}`): TresorError {
  return new TresorError('TRESOR_ERR_GRANT_STATE', message, { state });
}

export function tenantNotActive(state: string | undefined, message: string): TresorError {
  return new TresorError('TRESOR_ERR_TENANT_STATE', message, { state });
}

export function invalid(field: string, message: string, details: Record<string, unknown> = {}): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field, ...details });
}

export function secondFactorRequired(): TresorError {
  return new TresorError(
    'TRESOR_ERR_SECOND_FACTOR_REQUIRED',
    'pass a second factor again (re-authenticate) before opening this grant',
  );
}
