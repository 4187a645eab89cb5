/**
 * Monitoring: the server's Prometheus metrics (metrics.ts and the families it assembles) and the
 * optional loopback listener that serves them without a token (metrics-listener.ts). The alerting
 * rules built on these metrics are in deploy/prometheus/; docs/monitoring.md lists every series.
 */
export type { AuditMetricsSource } from './audit-metrics.ts';
export type { BackupMetricsSource, BackupRunFacts } from './backup-metrics.ts';
export { createTresorMetrics, type Scrape, type TresorMetrics } from './metrics.ts';
export { type MetricsListener, startMetricsListener } from './metrics-listener.ts';
export type { StateMetricsSources } from './state-metrics.ts';
