/**
 * Starting a close (closeTenant): the tenant becomes 'closing' with every API key revoked and this
 * process's cached keys forgotten, in one audited commit; then the close steps
 * (tenant-close-steps.ts) run as far as the grace lets them. A retry of a close that stopped
 * half-way says again whether a final export is wanted.
 */
import type { AuditContext } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import type { CloseOutcome, TenantCloseSteps } from './tenant-close-steps.ts';
import type { TenantContext } from './tenant-context.ts';
import type { ExportTarget } from './tenant-options.ts';
import { checkExportTarget, checkText, gone, wrongState } from './tenant-rows.ts';

export interface CloseTenantInput {
  reason: string;
  export?: ExportTarget;
}

const MAX_REASON_CHARS = 500;

/** Starts the close; it finishes at once only when the grace period is zero. */
export type CloseTenant = (
  id: string,
  input: CloseTenantInput,
  context: AuditContext,
) => Promise<CloseOutcome>;

export function createTenantClose(ctx: TenantContext, steps: TenantCloseSteps): { closeTenant: CloseTenant } {
  const { control, apiKeys, keys, exporter, clock, hooks, locks, audit, row, transition } = ctx;
  const { finishClose } = steps;

  /**
   * Forgets the tenant's keys once it is closing or closed, whether or not a later step failed:
   * also after a final export, which unwrapped its data keys once more.
   */
  async function forgetKeysIfClosing(id: string): Promise<void> {
    if (hooks.forgetKeys === undefined) return;
    const state = (await row(id).catch(() => undefined))?.state;
    if (state === 'closing' || state === 'closed') hooks.forgetKeys(id);
  }

  async function closeTenant(
    id: string,
    input: CloseTenantInput,
    context: AuditContext,
  ): Promise<CloseOutcome> {
    try {
      return await closeTenantNow(id, input, context);
    } finally {
      await forgetKeysIfClosing(id);
    }
  }

  async function closeTenantNow(
    id: string,
    input: CloseTenantInput,
    context: AuditContext,
  ): Promise<CloseOutcome> {
    const reason = checkText('reason', input?.reason, MAX_REASON_CHARS);
    const exportTarget = checkExportTarget(input?.export);
    if (exportTarget !== undefined && exporter === undefined) {
      throw new TresorError('TRESOR_ERR_BAD_REQUEST', 'this server cannot make a final export');
    }
    return locks.run(id, async () => {
      const current = await row(id);
      const at = clock().toISOString();
      const exportKind =
        exportTarget === undefined ? 'none' : 'recipient' in exportTarget ? 'recipient' : 'passphrase';
      if (current.state === 'active') {
        await control.write(async (trx) => {
          await transition(trx, id, 'active', {
            state: 'closing',
            close_reason: reason,
            close_export_pending: exportTarget === undefined ? 0 : 1,
            updated_at: at,
          });
          const revoked = await apiKeys.revokeAllIn(trx, id, at);
          await audit(trx, context, id, 'tenant.close', at, {
            reason,
            finalExport: exportKind,
            apiKeysRevoked: revoked,
          });
        });
        hooks.onApiKeysRevoked?.(id);
        hooks.forgetKeys?.(id);
      } else if (current.state === 'closing') {
        // A retry: the operator says again whether a final export is wanted (the first reason stands).
        // Refused before anything is written: a refused retry must not leave an export awaited.
        if (exportTarget !== undefined && current.keys_destroyed_at !== null) throw gone();
        if (
          exportTarget !== undefined &&
          (await keys.call('tenantKeyStatus', { tenant: id })).state !== 'active'
        ) {
          throw gone();
        }
        await control.write(async (trx) => {
          await trx
            .updateTable('tenants')
            .set({ close_export_pending: exportTarget === undefined ? 0 : 1, updated_at: at })
            .where('id', '=', id)
            .where('state', '=', 'closing')
            .execute();
          await audit(trx, context, id, 'tenant.close', at, { retry: true, finalExport: exportKind });
        });
      } else {
        throw wrongState(current.state);
      }
      return finishClose(id, context, exportTarget);
    });
  }

  return { closeTenant };
}
