/**
 * Rolling interrupted lifecycles forward: resume() at server start finishes every tenant left
 * 'provisioning' or 'closing'; the grace job (completeCloses) finishes the closes whose key grace
 * has ended and schedules the destruction for closes interrupted before it was scheduled.
 */
import type { AuditContext } from '../audit/event.ts';
import type { TenantCloseSteps } from './tenant-close-steps.ts';
import type { TenantContext } from './tenant-context.ts';
import type { TenantProvisioning } from './tenant-provision.ts';
import { errorCode } from './tenant-rows.ts';
import type { TenantState } from './vault-control-schema.ts';

export interface ResumeReport extends CloseReport {
  /** Provisioning tenants made active. */
  activated: string[];
}

/** What a pass over the closing tenants did. */
export interface CloseReport {
  /** Closing tenants made closed (their key's grace had ended). */
  closed: string[];
  /** Closing tenants whose key waits in keyd for its grace to end. */
  inGrace: string[];
  /** Closing tenants left for an operator: a requested final export was never handed over. */
  awaitingExport: string[];
  failed: { tenant: string; code: string }[];
}

export const RESUME_ACTOR = { kind: 'system', id: 'resume' } as const;
export const CLOSE_GRACE_ACTOR = { kind: 'system', id: 'close-grace' } as const;

export interface TenantResume {
  resume(): Promise<ResumeReport>;
  completeCloses(): Promise<CloseReport>;
}

export function createTenantResume(
  ctx: TenantContext,
  provisioning: Pick<TenantProvisioning, 'provision'>,
  steps: TenantCloseSteps,
): TenantResume {
  const { control, hooks, locks, logger, row } = ctx;
  const { provision } = provisioning;
  const { finishClose } = steps;

  /** Rolls every tenant in `states` forward as far as it may go now. */
  async function passOver(
    states: TenantState[],
    actor: AuditContext['actor'],
    report: CloseReport & { activated?: string[] },
  ): Promise<void> {
    const pending = await control.db
      .selectFrom('tenants')
      .select(['id', 'state'])
      .where('state', 'in', states)
      .orderBy('created_at')
      .execute();
    for (const { id } of pending) {
      try {
        await locks.run(id, async () => {
          const current = await row(id);
          if (current.state === 'provisioning') {
            await provision(id, { actor });
            report.activated?.push(id);
          } else if (current.state === 'closing') {
            hooks.forgetKeys?.(id);
            if (current.close_export_pending === 1 && current.keys_destroyed_at === null) {
              report.awaitingExport.push(id);
              return;
            }
            const outcome = await finishClose(id, { actor }, undefined);
            (outcome.state === 'closed' ? report.closed : report.inGrace).push(id);
          }
        });
      } catch (error) {
        report.failed.push({ tenant: id, code: errorCode(error) });
        logger.warn({ tenant: id, code: errorCode(error) }, 'could not resume tenant lifecycle');
      }
    }
  }

  return {
    async resume() {
      const report: ResumeReport = { activated: [], closed: [], inGrace: [], awaitingExport: [], failed: [] };
      await passOver(['provisioning', 'closing'], RESUME_ACTOR, report);
      return report;
    },

    async completeCloses() {
      const report: CloseReport = { closed: [], inGrace: [], awaitingExport: [], failed: [] };
      await passOver(['closing'], CLOSE_GRACE_ACTOR, report);
      return report;
    },
  };
}
