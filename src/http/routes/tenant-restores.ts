/**
 * Restoring one tenant from a backup into the running system, over HTTP (docs/backup.md "Restoring
 * one tenant"). An operator admin with a fresh second factor asks (POST, 202 with the run's id);
 * refusals known at once (unknown, closing or closed tenant, no such backup or destination, a
 * manifest that does not check out, a restore already running) answer 4xx then; the rest of the
 * work (the whole backup read and checked, the restored store checked, the swap) runs in the
 * background and GET tells how it went. Audited: the request as `tenant.restore.start`, the run's
 * result as `tenant.restore` (who, tenant, backup id, outcome), both under the tenant, so the tenant
 * sees them in its audit view.
 */
import Type from 'typebox';
import type { AuditEvent } from '../../audit/event.ts';
import type { TenantRestoreView } from '../../backup/tenant-restore-runs.ts';
import { TresorError } from '../../errors.ts';
import { defineRoute, type RouteModule } from '../route.ts';

export interface TenantRestoreRouteDeps {
  /** Plans the restore, calls `announce` (which records the request), then runs it in the background. */
  start(
    request: { tenant: string; backupId?: string; destination?: string },
    actor: AuditEvent,
    announce: (view: TenantRestoreView) => Promise<void>,
  ): Promise<TenantRestoreView>;
  get(id: string): TenantRestoreView | undefined;
}

const TenantId = Type.String({ pattern: '^ten_[A-Za-z0-9_-]{1,60}$', maxLength: 64 });
const BackupId = Type.String({
  pattern: '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$',
  maxLength: 25,
  description: 'A backup id: its UTC start time and 8 random hex digits',
});
const RestoreId = Type.String({ pattern: '^rst_[0-9a-f]{16}$', maxLength: 20 });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const Restore = Type.Object({
  id: Type.String(),
  tenant: Type.String(),
  backupId: Type.String(),
  destination: Type.String({ description: 'The destination the backup is read from' }),
  state: Type.Union([Type.Literal('running'), Type.Literal('done'), Type.Literal('failed')]),
  startedAt: Type.String(),
  endedAt: Nullable(Type.String()),
  result: Nullable(
    Type.Object({
      tenant: Type.String(),
      backupId: Type.String(),
      backupCreatedAt: Type.String(),
      destination: Type.String(),
      records: Type.Integer({ description: 'Records in the restored store' }),
      collections: Type.Integer(),
      checkpointSize: Type.Integer({
        description: 'Size of the backup’s audit checkpoint, a prefix of the live log',
      }),
    }),
  ),
  error: Nullable(
    Type.Object({
      code: Type.String({ description: 'e.g. TRESOR_ERR_RESTORE_REFUSED, TRESOR_ERR_TENANT_SHREDDED' }),
      message: Type.String(),
    }),
  ),
});

const operatorOnly = (): void => {};

export function tenantRestoreRoutes(deps: TenantRestoreRouteDeps): RouteModule {
  return {
    name: 'tenant-restores',
    routes: [
      defineRoute({
        method: 'POST',
        url: '/v1/tenants/:id/restore',
        summary:
          'Restore one tenant from a backup into the running system (202; poll the restore). Records written since the backup are gone afterwards; the audit log keeps everything',
        description:
          'Refused: a tenant not active (closing: cancel the close first; closed: its key is shredded, 410), a backup or destination that does not exist (404), a backup whose signature, digests, audit checkpoint (a prefix of the live log) or restored store do not check out (422, also in the restore’s error), a restore already running (409).',
        tags: ['tenants', 'backups'],
        auth: 'operator',
        secondFactor: true,
        authorize: operatorOnly,
        audit: { action: 'tenant.restore.start' },
        schema: {
          params: Type.Object({ id: TenantId }),
          body: Type.Object({
            backupId: Type.Optional(BackupId),
            destination: Type.Optional(
              Type.String({
                pattern: '^[a-z0-9][a-z0-9-]{0,31}$',
                maxLength: 32,
                description: 'A configured destination’s name (default: the first holding the backup)',
              }),
            ),
          }),
          response: { 202: Restore },
        },
      }).handle(async (ctx) => {
        const tenant = ctx.params.id;
        const view = await deps.start(
          {
            tenant,
            ...(ctx.body.backupId === undefined ? {} : { backupId: ctx.body.backupId }),
            ...(ctx.body.destination === undefined ? {} : { destination: ctx.body.destination }),
          },
          ctx.auditEvent({ tenant }),
          (planned) =>
            ctx.audit.record({
              tenant,
              target: { backupId: planned.backupId, destination: planned.destination, restoreId: planned.id },
            }),
        );
        return {
          status: 202,
          body: view,
          headers: { location: `/v1/tenants/${tenant}/restores/${view.id}` },
        };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/tenants/:id/restores/:restoreId',
        summary: 'A tenant restore: running, done (with what was restored) or failed (with the refusal)',
        tags: ['tenants', 'backups'],
        auth: 'operator',
        secondFactor: false,
        scope: 'backups:read',
        authorize: operatorOnly,
        audit: { action: 'tenant.restore.read' },
        schema: {
          params: Type.Object({ id: TenantId, restoreId: RestoreId }),
          response: { 200: Restore },
        },
      }).handle(async (ctx) => {
        const view = deps.get(ctx.params.restoreId);
        if (view === undefined || view.tenant !== ctx.params.id)
          throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such restore of this tenant');
        await ctx.audit.record({ tenant: null, target: { restoreId: view.id, tenant: view.tenant } });
        return { status: 200, body: view };
      }),
    ],
  };
}
