/**
 * GET /metrics: the server's Prometheus metrics (docs/monitoring.md), for operator admins' sessions
 * and operator tokens of scope `metrics:read` — what a Prometheus server uses, as a bearer token
 * over HTTPS. Nothing in a scrape is customer data: labels are Tresor's own vocabulary
 * (monitor/label-values.ts).
 *
 * Audit: Prometheus scrapes every 15 to 60 seconds, and an audit entry per scrape would bury the
 * log's meaningful reads under thousands of identical ones a day. So a caller's scrape is recorded
 * (`system.metrics-read`, durable before the answer, like every audited read) when it is the first
 * from that token or session within METRICS_AUDIT_WINDOW_MS; the scrapes that follow inside that
 * window are covered by that entry, which says so in its target. A new token, or a token that
 * stopped scraping and came back, is recorded at once. Like every audited route, this one answers
 * 503 while the audit log cannot record; the loopback metrics listener (monitor/metrics-listener.ts)
 * keeps serving then.
 */
import Type from 'typebox';
import type { OperatorPrincipal } from '../route.ts';
import { defineRoute, type RouteModule } from '../route.ts';

/** One audit entry covers a caller's scrapes for this long. */
export const METRICS_AUDIT_WINDOW_MS = 3_600_000;
/** Callers remembered at most (each is an operator token or session; the oldest go first). */
const MAX_REMEMBERED_CALLERS = 1_000;

export interface MetricsRouteDeps {
  /** The metrics in the Prometheus text format, and its content type. */
  scrape(): Promise<{ contentType: string; body: string }>;
  /** The clock of the audit window (tests pin it). */
  now?: () => Date;
}

export function metricsRoutes(deps: MetricsRouteDeps): RouteModule {
  const now = deps.now ?? (() => new Date());
  /** When each caller's scrape was last recorded (ms). */
  const recordedAt = new Map<string, number>();
  const callerOf = (p: OperatorPrincipal) =>
    p.kind === 'operator-token' ? `t:${p.tokenId}` : `s:${p.sessionId}`;

  return {
    name: 'metrics',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/metrics',
        summary: 'Prometheus metrics (text exposition format 0.0.4)',
        description:
          'Request, audit, keyd, key-cache, store, backup, certificate, grant, login and job metrics; ' +
          'docs/monitoring.md lists them. One audit entry per caller per hour covers its scrapes.',
        tags: ['system'],
        auth: 'operator',
        secondFactor: false,
        scope: 'metrics:read',
        authorize: () => {},
        audit: { action: 'system.metrics-read' },
        schema: { response: { 200: Type.String({ description: 'text/plain; version=0.0.4' }) } },
      }).handle(async (ctx) => {
        const caller = callerOf(ctx.principal);
        const t = now().getTime();
        const last = recordedAt.get(caller);
        if (last === undefined || t - last >= METRICS_AUDIT_WINDOW_MS || t < last) {
          await ctx.audit.record({
            tenant: null,
            target: { coversScrapesForSeconds: METRICS_AUDIT_WINDOW_MS / 1000 },
          });
          recordedAt.delete(caller);
          recordedAt.set(caller, t);
          if (recordedAt.size > MAX_REMEMBERED_CALLERS)
            recordedAt.delete(recordedAt.keys().next().value as string);
        } else {
          // Covered by the entry recorded at `last` (see the header): deliberately not a new one.
          ctx.audit.recorded = true;
        }
        const { contentType, body } = await deps.scrape();
        return { status: 200, headers: { 'content-type': contentType, 'cache-control': 'no-store' }, body };
      }),
    ],
  };
}
