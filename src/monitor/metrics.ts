/**
 * One server's metrics: its own prom-client registry (never the library's global one, so several
 * servers in one process — the tests — keep theirs apart), the Node.js process metrics, and the
 * metric families of each part (request-metrics.ts, keyd-metrics.ts, audit-metrics.ts,
 * backup-metrics.ts, state-metrics.ts). The server makes it first, hands each instrument to the
 * part it measures, and `watch`es the sources once they exist; `scrape()` renders the Prometheus
 * text format, reading the scrape-time gauges then.
 * Measured availability, from the server's own probes, is read at scrape time like the state
 * metrics (availability-metrics.ts).
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import { type AuditMetrics, auditMetrics } from './audit-metrics.ts';
import { type BackupMetrics, backupMetrics } from './backup-metrics.ts';
import { type KeydMetrics, keydMetrics } from './keyd-metrics.ts';
import { type RequestMetrics, requestMetrics } from './request-metrics.ts';
import { type StateMetrics, stateMetrics } from './state-metrics.ts';

const NON_COUNTERS_NAMED_TOTAL = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

export interface Scrape {
  contentType: string;
  body: string;
}

export interface TresorMetrics {
  readonly requests: RequestMetrics;
  readonly keyd: KeydMetrics;
  readonly audit: AuditMetrics;
  readonly backups: BackupMetrics;
  readonly state: StateMetrics;
  /** The whole registry in the Prometheus text exposition format (version 0.0.4). */
  scrape(): Promise<Scrape>;
}

export function createTresorMetrics(): TresorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client also names three gauges `…_total`, which Prometheus's naming rules (and
  // `promtool check metrics`) keep for counters; their unsuffixed twins by type stay.
  for (const name of NON_COUNTERS_NAMED_TOTAL) registry.removeSingleMetric(name);
  return {
    requests: requestMetrics(registry),
    keyd: keydMetrics(registry),
    audit: auditMetrics(registry),
    backups: backupMetrics(registry),
    state: stateMetrics(registry),
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
