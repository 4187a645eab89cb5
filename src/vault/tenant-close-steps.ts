/**
 * The steps of a close once the tenant is 'closing' (the sequence is in tenants.ts): the final
 * export, keyd's scheduled destruction of the tenant key after the grace, the destruction itself,
 * the store wiped, and the signed deletion certificate stored with 'closed'. Each step is durable
 * before the next starts and counts as done when found done, so finishClose() can run again after
 * any failure: from closeTenant, the grace job or resume().
 */
import type { AuditContext } from '../audit/event.ts';
import {
  backupsAgedOutBy,
  type SignedDeletionCertificate,
  signDeletionCertificate,
} from './deletion-certificate.ts';
import type { TenantContext } from './tenant-context.ts';
import type { ExportTarget } from './tenant-options.ts';
import { errorCode, gone, wrongState } from './tenant-rows.ts';

/** A close that finished: the key is destroyed and the certificate issued. */
export interface ClosedTenant extends SignedDeletionCertificate {
  state: 'closed';
  export?: Uint8Array;
}

/** A close in its grace period: the key survives in keyd until `keyDestroyAfter`, the tenant serves nothing. */
export interface ClosingTenant {
  state: 'closing';
  tenant: string;
  /** When keyd destroys the tenant key (ISO 8601); until then an operator admin may cancel. */
  keyDestroyAfter: string;
  export?: Uint8Array;
}

export type CloseOutcome = ClosedTenant | ClosingTenant;

export interface TenantCloseSteps {
  /**
   * Rolls a 'closing' tenant forward as far as it may go now: to 'closed' with its certificate, or
   * to its key's grace ('closing' until keyDestroyAfter). Makes the final export first if asked.
   */
  finishClose(
    id: string,
    context: AuditContext,
    exportTarget: ExportTarget | undefined,
  ): Promise<CloseOutcome>;
}

export function createTenantCloseSteps(ctx: TenantContext): TenantCloseSteps {
  const {
    control,
    apiKeys,
    tenantStores,
    keys,
    exporter,
    clock,
    config,
    graceSeconds,
    hooks,
    audit,
    row,
    transition,
  } = ctx;

  async function destroyTenantKey(id: string): Promise<{ keyIdsDestroyed: string[]; destroyedAt: string }> {
    try {
      const result = await keys.call('destroyTenantKey', { tenant: id, mode: 'now' });
      return {
        keyIdsDestroyed: result.keyIdsDestroyed,
        destroyedAt: result.destroyedAt ?? clock().toISOString(),
      };
    } catch (error) {
      // Destroyed by an earlier attempt whose answer was lost: keyd still knows which ids and when.
      if (errorCode(error) !== 'TRESOR_ERR_TENANT_KEY_DESTROYED') throw error;
      const status = await keys.call('tenantKeyStatus', { tenant: id });
      if (status.state !== 'destroyed' || status.destroyedAt === null) throw error;
      return { keyIdsDestroyed: status.versions.map((v) => v.keyId), destroyedAt: status.destroyedAt };
    }
  }

  /**
   * Asks keyd to destroy the tenant key after the grace (once: a key already scheduled or destroyed
   * counts as done) and answers keyd's schedule.
   */
  async function scheduleKeyDestruction(
    id: string,
  ): Promise<{ state: 'pending-destroy' | 'destroyed'; destroyAfter: string | null; scheduledNow: boolean }> {
    try {
      const r = await keys.call('destroyTenantKey', { tenant: id, mode: 'schedule', graceSeconds });
      return { state: r.state, destroyAfter: r.destroyAfter, scheduledNow: true };
    } catch (error) {
      const code = errorCode(error);
      if (code !== 'TRESOR_ERR_TENANT_KEY_PENDING_DESTROY' && code !== 'TRESOR_ERR_TENANT_KEY_DESTROYED')
        throw error;
      const status = await keys.call('tenantKeyStatus', { tenant: id });
      if (status.state === 'active') throw error;
      return { state: status.state, destroyAfter: status.destroyAfter, scheduledNow: false };
    }
  }

  async function finishClose(
    id: string,
    context: AuditContext,
    exportTarget: ExportTarget | undefined,
  ): Promise<CloseOutcome> {
    let current = await row(id);
    if (current.state !== 'closing') throw wrongState(current.state);

    let exported: Uint8Array | undefined;
    if (exportTarget !== undefined && exporter !== undefined) {
      // Once keyd holds the key for destruction it unwraps nothing: the export had its chance.
      if ((await keys.call('tenantKeyStatus', { tenant: id })).state !== 'active') throw gone();
      exported = await exporter(id, exportTarget);
      const at = clock().toISOString();
      await control.write((trx) =>
        audit(trx, context, id, 'tenant.export', at, {
          final: true,
          encryptedTo: 'recipient' in exportTarget ? 'recipient' : 'passphrase',
          bytes: exported?.length ?? 0,
        }),
      );
    }

    if (current.keys_destroyed_at === null) {
      const scheduled = await scheduleKeyDestruction(id);
      if (scheduled.scheduledNow || current.close_export_pending === 1) {
        const at = clock().toISOString();
        await control.write(async (trx) => {
          // The export is handed over or was given up: nothing awaits it once the key is scheduled.
          await trx
            .updateTable('tenants')
            .set({ close_export_pending: 0, updated_at: at })
            .where('id', '=', id)
            .execute();
          if (scheduled.scheduledNow) {
            await audit(trx, context, id, 'tenant.key.destroy-scheduled', at, {
              destroyAfter: scheduled.destroyAfter,
              graceSeconds,
            });
          }
        });
      }
      const due =
        scheduled.state === 'destroyed' ||
        scheduled.destroyAfter === null ||
        Date.parse(scheduled.destroyAfter) <= clock().getTime();
      if (!due) {
        return {
          state: 'closing',
          tenant: id,
          keyDestroyAfter: scheduled.destroyAfter as string,
          ...(exported === undefined ? {} : { export: exported }),
        };
      }
      const destroyed = await destroyTenantKey(id);
      const at = clock().toISOString();
      const set = {
        keys_destroyed_at: destroyed.destroyedAt,
        key_ids_destroyed: JSON.stringify(destroyed.keyIdsDestroyed),
        updated_at: at,
      };
      await control.write(async (trx) => {
        await trx.updateTable('tenants').set(set).where('id', '=', id).execute();
        await audit(trx, context, id, 'tenant.key.destroy', at, {
          keyIdsDestroyed: destroyed.keyIdsDestroyed,
        });
      });
      current = { ...current, ...set };
    }

    if (current.store_destroyed_at === null) {
      if (await tenantStores.exists(id)) await tenantStores.destroy(id);
      const at = clock().toISOString();
      await control.write(async (trx) => {
        await trx
          .updateTable('tenants')
          .set({ store_destroyed_at: at, updated_at: at })
          .where('id', '=', id)
          .execute();
        await audit(trx, context, id, 'tenant.store.destroy', at);
      });
      current = { ...current, store_destroyed_at: at };
    }

    const closedAt = clock().toISOString();
    // keyd adds the key versions it destroyed, when, and its own backup horizon, from its records.
    const signed = await signDeletionCertificate(keys, {
      tenant: id,
      tenantName: current.name,
      closedAt,
      backupsAgedOutBy:
        config.backupsAgedOutBy?.(closedAt) ?? backupsAgedOutBy(closedAt, config.backupRetentionDays),
      reason: current.close_reason ?? 'unspecified',
    });
    const { certificate } = signed;
    await control.write(async (trx) => {
      await transition(trx, id, 'closing', {
        state: 'closed',
        closed_at: closedAt,
        updated_at: closedAt,
        close_export_pending: 0,
      });
      await apiKeys.revokeAllIn(trx, id, closedAt);
      await trx
        .insertInto('deletion_certificates')
        .values({
          tenant: id,
          body: signed.body,
          signature: signed.signature,
          key_name: signed.keyName,
          created_at: closedAt,
        })
        .execute();
      await audit(trx, context, id, 'tenant.closed', closedAt, {
        keyIdsDestroyed: certificate.keyIdsDestroyed,
        backupsAgedOutBy: certificate.backupsAgedOutBy,
        ...(certificate.keydBackupsAgedOutBy === undefined
          ? {}
          : { keydBackupsAgedOutBy: certificate.keydBackupsAgedOutBy }),
      });
    });
    hooks.onApiKeysRevoked?.(id);
    const closed: ClosedTenant = { state: 'closed', ...signed };
    return exported === undefined ? closed : { ...closed, export: exported };
  }

  return { finishClose };
}
