/**
 * Cancelling a close during its grace (operator admins only, audited): keyd restores the tenant
 * key, and the tenant is 'active' again with a new first API key; the old keys stay revoked.
 * Possible only while keyd holds the key pending destruction: once it is destroyed, nothing can
 * bring the tenant's data back.
 */
import type { AuditContext } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import type { TenantContext } from './tenant-context.ts';
import { type TenantInfo, toInfo, wrongState } from './tenant-rows.ts';

/** A cancelled close: the tenant is active again, with a new first API key shown here once. */
export interface ReopenedTenant {
  tenant: TenantInfo;
  apiKey: string;
  apiKeyId: string;
}

export function createTenantCloseCancel(ctx: TenantContext): {
  cancelClose(id: string, context: AuditContext): Promise<ReopenedTenant>;
} {
  const { control, apiKeys, keys, clock, locks, audit, row, transition } = ctx;

  async function cancelClose(id: string, context: AuditContext): Promise<ReopenedTenant> {
    return locks.run(id, async () => {
      const current = await row(id);
      if (current.state !== 'closing') throw wrongState(current.state);
      if (current.keys_destroyed_at !== null) {
        throw new TresorError(
          'TRESOR_ERR_GONE',
          'the tenant key is destroyed: the close cannot be cancelled',
        );
      }
      const status = await keys.call('tenantKeyStatus', { tenant: id });
      if (status.state !== 'pending-destroy') {
        throw new TresorError(
          'TRESOR_ERR_TENANT_STATE',
          `the close can be cancelled only while the tenant key is pending destruction; it is ${status.state}`,
          { state: current.state },
        );
      }
      // keyd first: were the tenant active while its key is still pending, every request would fail.
      await keys.call('cancelTenantKeyDestroy', { tenant: id });
      const now = clock();
      const at = now.toISOString();
      const key = await control.write(async (trx) => {
        await transition(trx, id, 'closing', {
          state: 'active',
          close_reason: null,
          close_export_pending: 0,
          updated_at: at,
        });
        const issued = await apiKeys.issueFirstIn(trx, id, now);
        await audit(trx, context, id, 'tenant.close.cancel', at, {
          keyDestroyAfter: status.destroyAfter,
          apiKeyId: issued.id,
        });
        return issued;
      });
      return { tenant: toInfo(await row(id)), apiKey: key.token, apiKeyId: key.id };
    });
  }

  return { cancelClose };
}
