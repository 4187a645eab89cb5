/**
 * Measured availability (docs/availability.md), from the server's own probe job: the last probe's
 * result and time, availability over the last 30 days against the objective, and the error budget
 * left. Absent while the probe is off (no `probe.apiKeyFile`) or nothing was observed yet. One read
 * of the probe results serves every gauge of a scrape.
 */
import type { Registry } from 'prom-client';
import { scrapeTimeGauge } from './scrape-time.ts';

/** What the probe job reports (src/server/probe-job.ts AvailabilityView, narrowed). */
export interface AvailabilityFacts {
  probing: boolean;
  last?: { at: string; ok: boolean };
  report: {
    objective: number;
    last30Days: { availability: number | null; errorBudget: { remainingRatio: number | null } };
  };
}

export function availabilityMetrics(
  registry: Registry,
  source: () => (() => Promise<AvailabilityFacts>) | undefined,
): void {
  let reading: Promise<AvailabilityFacts | undefined> | undefined;
  const read = async () => {
    reading ??= (source()?.() ?? Promise.resolve(undefined)).finally(() => {
      reading = undefined;
    });
    const facts = await reading;
    return facts?.probing ? facts : undefined;
  };
  scrapeTimeGauge(
    registry,
    'tresor_probe_up',
    'Whether the server’s last end-to-end probe of itself passed (1) or failed (0).',
    async () => {
      const last = (await read())?.last;
      return last === undefined ? undefined : last.ok ? 1 : 0;
    },
  );
  scrapeTimeGauge(
    registry,
    'tresor_probe_last_timestamp_seconds',
    'When the server last probed itself end to end (Unix time).',
    async () => {
      const last = (await read())?.last;
      return last === undefined ? undefined : Date.parse(last.at) / 1000;
    },
  );
  scrapeTimeGauge(
    registry,
    'tresor_availability_30d_ratio',
    'Availability over the last 30 days measured by the server’s own probes (gaps count as down).',
    async () => (await read())?.report.last30Days.availability ?? undefined,
  );
  scrapeTimeGauge(
    registry,
    'tresor_availability_objective_ratio',
    'The availability objective (0.999).',
    async () => (await read())?.report.objective,
  );
  scrapeTimeGauge(
    registry,
    'tresor_availability_error_budget_remaining_ratio',
    'The share of the 30-day error budget left (negative when overspent).',
    async () => (await read())?.report.last30Days.errorBudget.remainingRatio ?? undefined,
  );
}
