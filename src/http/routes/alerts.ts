/**
 * Alerts over HTTP (docs/alerts.md): list and read them, acknowledge and resolve them with a note.
 *
 * Who: the security role. A security officer's console session reads, acknowledges and resolves;
 * an operator token of scope `alerts:read` only reads (a SIEM or pager polling them: alerts carry
 * ids, never customer values). Acknowledging and resolving are a person's decisions, so no token
 * reaches them. Every call is audited: `alert.list`, `alert.read`, and `alert.acknowledge` /
 * `alert.resolve`, which commit with the change (the note stays in the alert, not in the log).
 */
import Type from 'typebox';
import { DELIVERY_CHANNELS, DELIVERY_STATES } from '../../alerts/alert-store-schema.ts';
import {
  ALERT_KINDS,
  ALERT_SEVERITIES,
  ALERT_STATES,
  type AlertState,
  SUBJECT_KINDS,
} from '../../alerts/alert-vocabulary.ts';
import type { AlertView } from '../../alerts/alerts.ts';
import type { AuditEvent } from '../../audit/event.ts';
import { TresorError } from '../../errors.ts';
import { canReadAllAudit } from '../../identity/roles.ts';
import { defineRoute, type HttpPrincipal, type RouteModule, type SessionPrincipal } from '../route.ts';

export interface AlertRouteDeps {
  list(options: { state?: AlertState; limit: number }): Promise<AlertView[]>;
  get(id: string): Promise<AlertView | undefined>;
  acknowledge(id: string, step: { by: string; note: string }, event: AuditEvent): Promise<AlertView>;
  resolve(id: string, step: { by: string; note: string }, event: AuditEvent): Promise<AlertView>;
}

const AlertId = Type.String({ pattern: '^alr_[0-9a-f]{24}$', maxLength: 28, description: 'An alert id' });
const literals = <const T extends readonly string[]>(values: T) => Type.Enum([...values] as [...T]);
const Step = Type.Union([
  Type.Object({
    by: Type.String({ description: 'The person’s id' }),
    at: Type.String(),
    note: Type.String(),
  }),
  Type.Null(),
]);
const Alert = Type.Object({
  id: Type.String(),
  kind: literals(ALERT_KINDS),
  severity: literals(ALERT_SEVERITIES),
  subject: Type.Object({
    kind: literals(SUBJECT_KINDS),
    id: Type.String({
      description: 'An id (account, staff member, tenant, address…), never a customer value',
    }),
  }),
  firstSeen: Type.String(),
  lastSeen: Type.String(),
  count: Type.Integer({ minimum: 1, description: 'Occurrences since the alert opened' }),
  evidence: Type.Array(Type.Integer({ minimum: 0 }), {
    description: 'Audit log indices of the evidence: the first 10, then the newest (50 at most)',
  }),
  state: literals(ALERT_STATES),
  acknowledged: Step,
  resolved: Step,
  deliveries: Type.Array(
    Type.Object({
      channel: literals(DELIVERY_CHANNELS),
      state: literals(DELIVERY_STATES),
      attempts: Type.Integer({ minimum: 0 }),
      lastError: Type.Union([Type.String(), Type.Null()]),
      updatedAt: Type.String(),
    }),
  ),
});
const NO_CONTROL_EXCEPT_NEWLINE = '^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f]+$';
const NoteBody = Type.Object({
  note: Type.String({
    minLength: 1,
    maxLength: 2000,
    pattern: NO_CONTROL_EXCEPT_NEWLINE,
    description: 'Why (what was found, what was done); kept with the alert, not in the audit log',
  }),
});

/** The security role's sessions, and operator tokens of the route's scope (reads only). */
function alertReader(principal: HttpPrincipal): void {
  if (principal.kind === 'operator-token') return;
  if (principal.kind === 'session' && canReadAllAudit(principal.role)) return;
  throw new TresorError('TRESOR_ERR_FORBIDDEN', 'alerts are for the security role');
}

function alertHandler(principal: SessionPrincipal): void {
  if (canReadAllAudit(principal.role)) return;
  throw new TresorError('TRESOR_ERR_FORBIDDEN', 'alerts are handled by the security role');
}

export function alertRoutes(deps: AlertRouteDeps): RouteModule {
  return {
    name: 'alerts',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/v1/alerts',
        summary: 'The alerts, most recently seen first (security role)',
        tags: ['alerts'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'alerts:read',
        authorize: alertReader,
        audit: { action: 'alert.list' },
        schema: {
          querystring: Type.Object({
            state: Type.Optional(literals(ALERT_STATES)),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
          }),
          response: { 200: Type.Object({ alerts: Type.Array(Alert) }) },
        },
      }).handle(async (ctx) => {
        const alerts = await deps.list({
          ...(ctx.query.state ? { state: ctx.query.state as AlertState } : {}),
          limit: ctx.query.limit ?? 100,
        });
        await ctx.audit.record({ tenant: null });
        return { status: 200, body: { alerts } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/alerts/:id',
        summary: 'One alert, with its evidence (audit log indices) and deliveries',
        tags: ['alerts'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'alerts:read',
        authorize: alertReader,
        audit: { action: 'alert.read' },
        schema: { params: Type.Object({ id: AlertId }), response: { 200: Alert } },
      }).handle(async (ctx) => {
        const alert = await deps.get(ctx.params.id);
        if (!alert) throw new TresorError('TRESOR_ERR_ALERT_NOT_FOUND', 'no such alert');
        await ctx.audit.record({ tenant: null, target: { alertId: alert.id } });
        return { status: 200, body: alert };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/alerts/:id/acknowledge',
        summary: 'Acknowledge an open alert (someone is on it), with a note',
        tags: ['alerts'],
        auth: 'session',
        secondFactor: false,
        authorize: alertHandler,
        audit: { action: 'alert.acknowledge' },
        schema: { params: Type.Object({ id: AlertId }), body: NoteBody, response: { 200: Alert } },
      }).handle(async (ctx) => {
        const event = ctx.auditEvent({ tenant: null, target: { alertId: ctx.params.id } });
        const alert = await deps.acknowledge(
          ctx.params.id,
          { by: ctx.principal.personId, note: ctx.body.note },
          event,
        );
        ctx.audit.recorded = true;
        return { status: 200, body: alert };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/alerts/:id/resolve',
        summary: 'Resolve an open or acknowledged alert, with a note (new evidence then opens a new alert)',
        tags: ['alerts'],
        auth: 'session',
        secondFactor: false,
        authorize: alertHandler,
        audit: { action: 'alert.resolve' },
        schema: { params: Type.Object({ id: AlertId }), body: NoteBody, response: { 200: Alert } },
      }).handle(async (ctx) => {
        const event = ctx.auditEvent({ tenant: null, target: { alertId: ctx.params.id } });
        const alert = await deps.resolve(
          ctx.params.id,
          { by: ctx.principal.personId, note: ctx.body.note },
          event,
        );
        ctx.audit.recorded = true;
        return { status: 200, body: alert };
      }),
    ],
  };
}
