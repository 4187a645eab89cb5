/**
 * Layer 7: audit — no data is served or changed unless its audit entry is durably recorded
 * (Invariant 4). Responsibility is split so that every outcome is covered exactly once:
 *
 * - success: the handler records it, in the same store transaction as the change (or, for a read,
 *   committed before the data is returned), using `ctx.auditEvent(...)` so who/when/where are the
 *   pipeline's — or, for a domain that builds its own event (the vault), handing it
 *   `auditOriginOf(ctx)` (who, why, which request); it then sets `ctx.audit.recorded` (or calls
 *   `ctx.audit.record()`, which does both).
 *   A handler that returns without that is a bug, and the pipeline answers 500 instead of serving;
 * - failure or denial after authentication: the pipeline records it itself (recordFailure, called
 *   by the error handler) — outcome `denied` for the second-factor and authorization layers and
 *   for FORBIDDEN, `failure` for everything else — naming the route and the problem code;
 * - failed authentication (no principal yet) is not written to the audit log: that would let
 *   anyone without a key make the server do durable writes; it is logged and rate-limited instead.
 *
 * If the audit log cannot be written the request fails closed: 503, and nothing of the handler's
 * result is sent.
 */
import type { FastifyRequest } from 'fastify';
import type { AuditEvent } from '../../audit/event.ts';
import { isAudited } from '../../audit/refusal.ts';
import { TresorError } from '../../errors.ts';
import { actorOf, tenantOfPrincipal } from '../../identity/principal.ts';
import type { AuditOrigin } from '../../vault/vault-audit.ts';
import type { AuditRecorder } from '../deps.ts';
import type { RequestState } from '../request-state.ts';
import type { AuditContext, AuditEventInput, HttpPrincipal, RouteDefinition } from '../route.ts';

const MAX_USER_AGENT = 256;

/** The audit log could not take an event: the request must fail closed (503). */
export class AuditUnavailableError extends TresorError {
  constructor() {
    super('TRESOR_ERR_UNAVAILABLE', 'the audit log cannot be written; nothing is served without it');
  }
}

function actorFor(principal: HttpPrincipal | null): AuditEvent['actor'] {
  if (!principal) return { kind: 'anonymous', id: 'anonymous' };
  return actorOf(principal);
}

export function userAgentOf(request: FastifyRequest): string | undefined {
  const ua = request.headers['user-agent'];
  return typeof ua === 'string' ? ua.slice(0, MAX_USER_AGENT) : undefined;
}

/** An AuditEvent for this request: the pipeline's who/when/where, the caller's what. */
export function auditEventFor(
  request: FastifyRequest,
  route: RouteDefinition,
  now: Date,
  input: AuditEventInput = {},
): AuditEvent {
  const principal = request.tresor.principal;
  const action = input.action ?? (route.audit === 'none-public' ? undefined : route.audit.action);
  if (!action) throw new TresorError('TRESOR_ERR_INTERNAL', 'an audit event needs an action');
  const event: AuditEvent = {
    at: now.toISOString(),
    actor: actorFor(principal),
    tenant: input.tenant !== undefined ? input.tenant : principal ? tenantOfPrincipal(principal) : null,
    action,
    outcome: input.outcome ?? 'success',
    requestId: request.id,
    sourceAddress: request.ip,
  };
  if (input.target !== undefined) event.target = input.target;
  const grant = principal ? grantOf(principal) : undefined;
  if (grant !== undefined) event.grant = grant;
  const userAgent = userAgentOf(request);
  if (userAgent !== undefined) event.userAgent = userAgent;
  return event;
}

/** For staff acting through an access grant: the grant, its reason and ticket. */
function grantOf(principal: HttpPrincipal): AuditEvent['grant'] {
  if (principal.kind !== 'staff-grant') return undefined;
  // The customer sees on their stream why staff touched their data, and under which ticket.
  return {
    id: principal.grantId,
    reason: principal.reason,
    ticket: principal.ticket,
    ...(principal.breakGlass ? { breakGlass: true } : {}),
  };
}

/**
 * Who acts, why and from which request, for a domain that builds its own audit event (the vault):
 * the pipeline's actor, grant, request id, source address and user agent, and nothing else.
 */
export function auditOriginOf(ctx: {
  principal: HttpPrincipal | null;
  requestId: string;
  sourceAddress: string;
  userAgent: string | undefined;
}): AuditOrigin {
  const origin: AuditOrigin = {
    actor: actorFor(ctx.principal),
    requestId: ctx.requestId,
    sourceAddress: ctx.sourceAddress,
  };
  const grant = ctx.principal ? grantOf(ctx.principal) : undefined;
  if (grant !== undefined) origin.grant = grant;
  if (ctx.userAgent !== undefined) origin.userAgent = ctx.userAgent;
  return origin;
}

/** Records through the recorder; any failure becomes AuditUnavailableError. */
export async function recordDurably(recorder: AuditRecorder, event: AuditEvent): Promise<void> {
  try {
    await recorder.record(event, event.tenant);
  } catch {
    throw new AuditUnavailableError();
  }
}

export function audit(deps: { audit: AuditRecorder; now: () => Date }) {
  return async function auditLayer(request: FastifyRequest): Promise<void> {
    const route = request.tresor.route;
    if (!route) return;
    if (route.audit !== 'none-public' && deps.audit.available && !deps.audit.available()) {
      // Not AuditUnavailableError: the outbox may still take the event of this refusal.
      throw new TresorError('TRESOR_ERR_UNAVAILABLE', 'the audit log cannot record now; nothing is served');
    }
    const context: AuditContext = {
      action: route.audit === 'none-public' ? null : route.audit.action,
      recorded: false,
      async record(input?: AuditEventInput) {
        await recordDurably(deps.audit, auditEventFor(request, route, deps.now(), input));
        context.recorded = true;
      },
    };
    request.tresor.audit = context;
  };
}

const DENIED_LAYERS = new Set(['second-factor', 'authorization']);
const DENIED_CODES = new Set([
  'TRESOR_ERR_FORBIDDEN',
  'TRESOR_ERR_SECOND_FACTOR_REQUIRED',
  'TRESOR_ERR_ORIGIN_REFUSED',
]);

/**
 * Whether a failed request is one the pipeline must audit: after authentication, on an audited
 * route — unless the domain that refused it already committed the refusal's event (audit/refusal.ts).
 */
export function mustAuditFailure(state: RequestState | undefined, err: unknown): boolean {
  if (!state?.route || state.route.audit === 'none-public' || state.principal === null) return false;
  return !(err instanceof AuditUnavailableError) && !isAudited(err);
}

/** Records the denial or failure of an authenticated request (called by the error handler). */
export async function recordFailure(
  request: FastifyRequest,
  code: string,
  deps: { audit: AuditRecorder; now: () => Date },
): Promise<void> {
  const state = request.tresor;
  const route = state.route as RouteDefinition;
  const denied = DENIED_LAYERS.has(state.layer ?? '') || DENIED_CODES.has(code);
  const target: NonNullable<AuditEvent['target']> = { route: `${route.method} ${route.url}`, problem: code };
  // Path parameters are ids and collection names, never field values, once validation accepted them.
  if (state.input) target.params = state.input.params;
  const refused = state.refusedGrant;
  if (refused) {
    // A staff attempt through a grant that is not live: recorded with the tenant it aimed at.
    target.grantId = refused.grant.id;
    target.refused = refused.why;
  }
  const event = auditEventFor(request, route, deps.now(), {
    outcome: denied ? 'denied' : 'failure',
    target,
    ...(refused ? { tenant: refused.tenant } : {}),
  });
  const { reason, ticket, breakGlass } = refused?.grant ?? {};
  if (refused && reason !== undefined && ticket !== undefined) {
    event.grant = { id: refused.grant.id, reason, ticket, ...(breakGlass ? { breakGlass } : {}) };
  }
  await recordDurably(deps.audit, event);
}
