/**
 * Backups over HTTP (docs/backup.md): start one now, list them with each destination's read-back
 * state and the verification's result, read one, verify one again. Operators only — sessions of
 * operator admins, and operator tokens of scope `backups:run` (POST) or `backups:read` (GET) —
 * and audited: starting is `backup.start` (the run itself is `backup.create` by the system),
 * verifying is `backup.verify`, written with its result when the verification (which runs in the
 * background: 202 at once) has ended. Nothing here carries a key or data.
 */
import Type from 'typebox';
import type { AuditEvent } from '../../audit/event.ts';
import type { BackupView } from '../../backup/backup-records.ts';
import { TresorError } from '../../errors.ts';
import { defineRoute, type RouteModule } from '../route.ts';

export interface BackupRouteDeps {
  /** Starts a backup now and answers its id; TRESOR_ERR_BACKUP_RUNNING while one runs. */
  start(event: AuditEvent): Promise<{ id: string }>;
  list(limit: number): Promise<BackupView[]>;
  get(id: string): Promise<BackupView | undefined>;
  /** The id of the backup being verified now, if any. */
  verifying(): string | undefined;
  /**
   * Starts verifying the backup at every destination that holds it and answers at once; the result
   * is recorded with `event` (its audit entry). TRESOR_ERR_BACKUP_VERIFYING while one runs.
   */
  verify(id: string, event: AuditEvent): Promise<{ id: string; requestedAt: string }>;
}

const BackupId = Type.String({
  pattern: '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$',
  maxLength: 25,
  description: 'A backup id: its UTC start time and 8 random hex digits',
});
const Result = Type.Union([Type.Literal('passed'), Type.Literal('failed')]);
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const Copy = Type.Object({
  name: Type.String({ description: 'The destination’s name in the config' }),
  state: Type.Union(
    [Type.Literal('writing'), Type.Literal('checked'), Type.Literal('failed'), Type.Literal('deleted')],
    { description: 'checked: written and read back with every digest matching; deleted: by retention' },
  ),
  attempts: Type.Integer({ minimum: 0 }),
  error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
  verification: Nullable(Type.Object({ result: Result, at: Type.String(), code: Nullable(Type.String()) })),
});

const Backup = Type.Object({
  id: Type.String(),
  trigger: Type.String({ description: 'schedule or request' }),
  startedAt: Type.String(),
  endedAt: Nullable(Type.String()),
  outcome: Type.Union(
    [
      Type.Literal('running'),
      Type.Literal('done'),
      Type.Literal('partial'),
      Type.Literal('failed'),
      Type.Literal('interrupted'),
    ],
    { description: 'done: every destination holds it and read it back; partial: some do' },
  ),
  plaintextBytes: Nullable(Type.Integer()),
  storedBytes: Nullable(Type.Integer({ description: 'Bytes stored at each destination' })),
  files: Nullable(Type.Integer()),
  errorCode: Nullable(Type.String()),
  verification: Nullable(Type.Object({ result: Result, at: Type.String() })),
  verifying: Type.Boolean({ description: 'A verification of this backup is running now' }),
  destinations: Type.Array(Copy),
});

const operatorOnly = (): void => {};

export function backupRoutes(deps: BackupRouteDeps): RouteModule {
  return {
    name: 'backups',
    routes: [
      defineRoute({
        method: 'POST',
        url: '/v1/backups',
        summary: 'Take a backup now (202 with its id; 409 while one runs)',
        tags: ['backups'],
        auth: 'operator',
        secondFactor: false,
        scope: 'backups:run',
        authorize: operatorOnly,
        audit: { action: 'backup.start' },
        schema: { response: { 202: Type.Object({ id: Type.String() }) } },
      }).handle(async (ctx) => {
        const { id } = await deps.start(ctx.auditEvent({ tenant: null }));
        ctx.audit.recorded = true;
        return { status: 202, body: { id }, headers: { location: `/v1/backups/${id}` } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/backups',
        summary: 'The backups, newest first: size, destinations with their read-back state, verification',
        tags: ['backups'],
        auth: 'operator',
        secondFactor: false,
        scope: 'backups:read',
        authorize: operatorOnly,
        audit: { action: 'backup.list' },
        schema: {
          querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
          response: { 200: Type.Object({ backups: Type.Array(Backup) }) },
        },
      }).handle(async (ctx) => {
        const verifying = deps.verifying();
        const backups = (await deps.list(ctx.query.limit ?? 100)).map((b) => ({
          ...b,
          verifying: b.id === verifying,
        }));
        await ctx.audit.record({ tenant: null });
        return { status: 200, body: { backups } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/backups/:id',
        summary: 'One backup',
        tags: ['backups'],
        auth: 'operator',
        secondFactor: false,
        scope: 'backups:read',
        authorize: operatorOnly,
        audit: { action: 'backup.read' },
        schema: { params: Type.Object({ id: BackupId }), response: { 200: Backup } },
      }).handle(async (ctx) => {
        const backup = await deps.get(ctx.params.id);
        if (!backup) throw new TresorError('TRESOR_ERR_BACKUP_NOT_FOUND', 'no such backup');
        await ctx.audit.record({ tenant: null, target: { backupId: backup.id } });
        return { status: 200, body: { ...backup, verifying: backup.id === deps.verifying() } };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/backups/:id/verify',
        summary:
          'Verify a backup again at every destination holding it (trial restore at one, signature, digests and decryption through keyd at the others): 202 at once, the result on GET /v1/backups/{id}; 409 while a verification runs',
        tags: ['backups'],
        auth: 'operator',
        secondFactor: false,
        scope: 'backups:run',
        authorize: operatorOnly,
        audit: { action: 'backup.verify' },
        schema: {
          params: Type.Object({ id: BackupId }),
          response: {
            202: Type.Object({
              id: Type.String(),
              requestedAt: Type.String({
                description: 'When it was asked for: the result is the verification at or after it',
              }),
            }),
          },
        },
      }).handle(async (ctx) => {
        // The operator's event is written with the result, in the transaction that records it.
        const started = await deps.verify(ctx.params.id, ctx.auditEvent({ tenant: null }));
        ctx.audit.recorded = true;
        return {
          status: 202,
          body: started,
          headers: { location: `/v1/backups/${started.id}` },
        };
      }),
    ],
  };
}
