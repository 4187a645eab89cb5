/**
 * Contract ends: an active tenant whose contract ended more than closeGraceDays ago is closed
 * automatically (autoClose, run by the server's contract-end job), with the reason 'contract-end'.
 */
import type { CloseTenant } from './tenant-close.ts';
import type { TenantContext } from './tenant-context.ts';
import { errorCode } from './tenant-rows.ts';

export interface AutoCloseReport {
  closed: string[];
  failed: { tenant: string; code: string }[];
}

const DAY_MS = 86_400_000;
export const CONTRACT_END_ACTOR = { kind: 'system', id: 'contract-end' } as const;

/** When a contract's automatic close is due: the end of its last day (UTC) plus the grace days. */
export function autoCloseDueAt(contractEnd: string, closeGraceDays: number): Date {
  return new Date(Date.parse(`${contractEnd}T00:00:00Z`) + (1 + closeGraceDays) * DAY_MS);
}

export function createTenantContractEnd(
  ctx: TenantContext,
  closeTenant: CloseTenant,
): { autoClose(now?: Date): Promise<AutoCloseReport> } {
  const { control, clock, config, logger } = ctx;

  return {
    async autoClose(now = clock()) {
      const report: AutoCloseReport = { closed: [], failed: [] };
      const candidates = await control.db
        .selectFrom('tenants')
        .select(['id', 'contract_end'])
        .where('state', '=', 'active')
        .where('contract_end', 'is not', null)
        .orderBy('contract_end')
        .execute();
      for (const { id, contract_end } of candidates) {
        if (contract_end === null || autoCloseDueAt(contract_end, config.closeGraceDays) > now) continue;
        try {
          await closeTenant(id, { reason: 'contract-end' }, { actor: CONTRACT_END_ACTOR });
          report.closed.push(id);
        } catch (error) {
          report.failed.push({ tenant: id, code: errorCode(error) });
          logger.warn({ tenant: id, code: errorCode(error) }, 'could not close tenant at contract end');
        }
      }
      return report;
    },
  };
}
