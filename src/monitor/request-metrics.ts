/**
 * Request rate, latency and errors of the HTTP API, by route template, method and status. The HTTP
 * layer reports each answered request (app.ts, onResponse); errors are the requests whose status is
 * 4xx or 5xx, so `rate(tresor_http_requests_total{status=~"5.."}[5m])` is the error rate. A request
 * no route matched is counted under `route="unmatched"`: the raw URL is never a label (it can hold
 * tenant and record ids, and a scanner would make one series per probe).
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { labelVocabulary, ROUTE_TEMPLATE } from './label-values.ts';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Seconds; from a cached read (~1 ms) to the request timeout's order. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** More routes than the API has (about 80), fewer than a scan could make. */
const MAX_ROUTES = 200;

export interface RequestMetrics {
  /** One answered request: its route template (undefined when no route matched). */
  observe(request: { method: string; route: string | undefined; status: number; seconds: number }): void;
}

export function requestMetrics(registry: Registry): RequestMetrics {
  const requests = new Counter({
    name: 'tresor_http_requests_total',
    help: 'HTTP requests answered, by method, route template and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tresor_http_request_duration_seconds',
    help: 'Time from the request arriving to its answer being sent, by method and route template.',
    labelNames: ['method', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const routes = labelVocabulary(ROUTE_TEMPLATE, MAX_ROUTES);
  return {
    observe({ method, route, status, seconds }) {
      const labels = {
        method: METHODS.has(method) ? method : 'other',
        route: route === undefined ? 'unmatched' : routes.of(route),
      };
      requests.inc({ ...labels, status: Number.isInteger(status) ? String(status) : 'other' });
      duration.observe(labels, Math.max(0, seconds));
    },
  };
}
