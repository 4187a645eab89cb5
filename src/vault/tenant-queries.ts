/**
 * Reading tenants: one, a list, the check that a tenant is active, and a closed tenant's stored
 * deletion certificate.
 */
import { TresorError } from '../errors.ts';
import { parseDeletionCertificate, type SignedDeletionCertificate } from './deletion-certificate.ts';
import type { TenantContext } from './tenant-context.ts';
import { type TenantInfo, toInfo, wrongState } from './tenant-rows.ts';
import type { TenantState } from './vault-control-schema.ts';

export interface StoredDeletionCertificate extends SignedDeletionCertificate {
  createdAt: string;
}

export interface TenantQueries {
  getTenant(id: string): Promise<TenantInfo>;
  listTenants(filter?: { state?: TenantState }): Promise<TenantInfo[]>;
  /** The tenant if it is active; else TRESOR_ERR_TENANT_STATE (409) or TRESOR_ERR_NOT_FOUND. */
  requireActive(id: string): Promise<TenantInfo>;
  getDeletionCertificate(id: string): Promise<StoredDeletionCertificate>;
}

export function createTenantQueries(ctx: TenantContext): TenantQueries {
  const { control, row } = ctx;

  return {
    async getTenant(id) {
      return toInfo(await row(id));
    },

    async listTenants(filter = {}) {
      let query = control.db.selectFrom('tenants').selectAll().orderBy('created_at').orderBy('id');
      if (filter.state !== undefined) query = query.where('state', '=', filter.state);
      return (await query.execute()).map(toInfo);
    },

    async requireActive(id) {
      const current = await row(id);
      if (current.state !== 'active') throw wrongState(current.state);
      return toInfo(current);
    },

    async getDeletionCertificate(id) {
      const stored =
        typeof id === 'string'
          ? await control.db
              .selectFrom('deletion_certificates')
              .selectAll()
              .where('tenant', '=', id)
              .executeTakeFirst()
          : undefined;
      const certificate = stored ? parseDeletionCertificate(stored.body) : undefined;
      if (!stored || !certificate)
        throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no deletion certificate for this tenant');
      return {
        certificate,
        body: stored.body,
        signature: stored.signature,
        keyName: stored.key_name,
        createdAt: stored.created_at,
      };
    },
  };
}
