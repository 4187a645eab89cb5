/**
 * Tenant restores as runs the server holds (tenant-restore.ts does the work): start() plans the
 * restore — its refusals (unknown or closed tenant, no such backup, a manifest that does not check
 * out) come back at once — then answers the run's id while the long part (reading and checking the
 * whole backup, the checks of the restored store, the swap) goes on; get() tells how it went.
 *
 * One restore at a time (TRESOR_ERR_RESTORE_RUNNING otherwise): a restore reads a whole backup, and
 * two swaps of one tenant must never interleave. Runs are kept in memory (the newest MAX_KEPT):
 * the audit log holds every restore's result for good (`tenant.restore`, success or failure), and a
 * server stopping ends a running restore before its swap (close()); one killed during a restore has
 * changed nothing (the swap is one rename) and removes the scratch file at its next start
 * (TenantStores.removeScratch).
 */
import { randomBytes } from 'node:crypto';
import type { AuditEvent } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import { BackupError } from './errors.ts';
import {
  planTenantRestore,
  runTenantRestore,
  type TenantRestoreDeps,
  type TenantRestoreRequest,
  type TenantRestoreResult,
} from './tenant-restore.ts';

export interface TenantRestoreView {
  id: string;
  tenant: string;
  backupId: string;
  destination: string;
  state: 'running' | 'done' | 'failed';
  startedAt: string;
  endedAt: string | null;
  result: TenantRestoreResult | null;
  /** The refusal or failure: its catalogue code and Tresor's message (never a value or a key). */
  error: { code: string; message: string } | null;
}

export interface TenantRestoreRuns {
  /**
   * Plans the restore and, once `announce` (the request's own audit entry) is durable, starts it;
   * answers the run as it starts and a promise of its end.
   */
  start(
    request: TenantRestoreRequest,
    actor: AuditEvent,
    announce?: (view: TenantRestoreView) => Promise<void>,
  ): Promise<{ view: TenantRestoreView; done: Promise<void> }>;
  get(id: string): TenantRestoreView | undefined;
  running(): boolean;
  /** Stops a running restore before its swap (a swap under way is finished) and waits for it to end. */
  close(): Promise<void>;
}

const MAX_KEPT = 100;

export function createTenantRestoreRuns(deps: TenantRestoreDeps): TenantRestoreRuns {
  const runs = new Map<string, TenantRestoreView>();
  let current: Promise<void> | undefined;
  let planning = false;
  const stopping = new AbortController();

  const keep = (view: TenantRestoreView) => {
    runs.set(view.id, view);
    for (const id of runs.keys()) {
      if (runs.size <= MAX_KEPT) break;
      if (runs.get(id)?.state !== 'running') runs.delete(id);
    }
  };

  return {
    async start(request, actor, announce) {
      if (stopping.signal.aborted)
        throw new BackupError('TRESOR_ERR_UNAVAILABLE', 'the server is stopping; no restore starts now');
      if (current !== undefined || planning)
        throw new BackupError('TRESOR_ERR_RESTORE_RUNNING', 'a tenant restore is running; one at a time');
      planning = true;
      let plan: Awaited<ReturnType<typeof planTenantRestore>>;
      let view: TenantRestoreView;
      try {
        plan = await planTenantRestore(deps, request);
        view = {
          id: `rst_${randomBytes(8).toString('hex')}`,
          tenant: plan.tenant,
          backupId: plan.backupId,
          destination: plan.destination.name,
          state: 'running',
          startedAt: deps.clock().toISOString(),
          endedAt: null,
          result: null,
          error: null,
        };
        await announce?.({ ...view });
      } finally {
        planning = false;
      }
      keep(view);
      const end = () => {
        view.endedAt = deps.clock().toISOString();
        current = undefined;
      };
      const settled = runTenantRestore(deps, plan, actor, stopping.signal).then(
        (result) => {
          view.state = 'done';
          view.result = result;
          end();
        },
        (err: unknown) => {
          view.state = 'failed';
          view.error =
            err instanceof TresorError
              ? { code: err.code, message: err.message }
              : { code: 'TRESOR_ERR_INTERNAL', message: 'the restore failed' };
          end();
        },
      );
      current = settled;
      return { view: { ...view }, done: settled };
    },
    get(id) {
      const view = runs.get(id);
      return view === undefined ? undefined : { ...view };
    },
    running: () => current !== undefined,
    async close() {
      stopping.abort();
      await current;
    },
  };
}
