/**
 * Tenant ids as the store layer accepts them: the only gate between input and a file path (SQLite)
 * or a schema name (PostgreSQL), so no id can name a file outside the tenants folder or another
 * schema than its own.
 */
import { TresorError } from '../errors.ts';

export const TENANT_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Throws unless `tenant` is a valid tenant id. */
export function assertTenantId(tenant: unknown): asserts tenant is string {
  if (typeof tenant !== 'string' || !TENANT_ID_PATTERN.test(tenant)) {
    throw new TresorError('TRESOR_ERR_BAD_REQUEST', 'invalid tenant id', {
      pattern: TENANT_ID_PATTERN.source,
    });
  }
}
