/**
 * The server's own availability probe (docs/availability.md): every `probe.intervalSeconds`, one
 * end-to-end probe of its public URL (src/probe/probe.ts) with the probe tenant's API key, the
 * result kept in the control store (`probe.run` job), and availability computed from them with
 * gaps counted down: when the server cannot probe itself, it was not serving either. Off without
 * `probe.apiKeyFile`.
 *
 * Several server processes on one database: the figure is the service's, so one probe per interval
 * for the cluster — the scheduled probe runs in the process that `leads()` (the sequencer's lease
 * holder) and skips a tick when the stored results already hold one less than half an interval old
 * (a takeover right after the last holder's probe). Every process answers from the same stored
 * results, so each gives the same report; `node.runsProbe` says which one probes now, and each
 * process's own liveness is its /healthz and /readyz.
 */
import { readFileSync } from 'node:fs';
import type { ProbeConfig } from '../config/server-config.ts';
import { TresorError } from '../errors.ts';
import { type AvailabilityReport, availability } from '../probe/availability.ts';
import { runProbe } from '../probe/probe.ts';
import { type ProbeResultsStore, probeResultsSince, recordProbeResult } from '../probe/probe-results.ts';
import type { JobRunner } from './jobs.ts';

export const AVAILABILITY_OBJECTIVE = 0.999;
const DAY_MS = 86_400_000;

export interface AvailabilityView {
  /** Whether the server probes itself (probe.apiKeyFile is set). */
  probing: boolean;
  url?: string;
  /** The last probe's result. */
  last?: { at: string; ok: boolean; failed?: { step: string; why: string } };
  report: AvailabilityReport;
  /** This process: whether it runs the scheduled probe now (several processes: the lease holder). */
  node: { runsProbe: boolean };
}

export interface ProbeJob {
  availability(): Promise<AvailabilityView>;
  /** Runs one probe now (tests, and the first probe at start). */
  runOnce(): Promise<boolean>;
  close(): Promise<void>;
}

export interface ProbeJobDeps {
  config: ProbeConfig;
  /** The origin to probe when probe.url is not set: publicUrl, else where the server listens. */
  defaultUrl: () => string;
  store: ProbeResultsStore;
  jobs: JobRunner;
  clock: () => Date;
  /** Whether this process runs the cluster's scheduled jobs now (default: always). */
  leads?: () => boolean;
}

function readKey(file: string): string {
  let key: string;
  try {
    key = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new TresorError(
      'TRESOR_ERR_CONFIG_INVALID',
      `probe.apiKeyFile cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  if (key === '' || /\s/.test(key))
    throw new TresorError('TRESOR_ERR_CONFIG_INVALID', 'probe.apiKeyFile holds no API key');
  return key;
}

export function startProbeJob(deps: ProbeJobDeps): ProbeJob {
  const { config, store, jobs, clock } = deps;
  const apiKey = config.apiKeyFile !== undefined ? readKey(config.apiKeyFile) : undefined;
  const ca = config.caFile !== undefined ? readFileSync(config.caFile) : undefined;
  let running: Promise<boolean> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const runOnce = (): Promise<boolean> => {
    if (!apiKey) return Promise.resolve(false);
    const url = new URL(config.url ?? deps.defaultUrl());
    running ??= jobs
      .run('probe.run', async () => {
        const result = await runProbe(
          { url, ca, apiKey, collection: 'tresor_probe', deadlineMs: 10_000, auditWaitMs: 10_000 },
          clock,
        );
        await recordProbeResult(store, result, clock());
        if (!result.ok)
          throw new TresorError(
            'TRESOR_ERR_UNAVAILABLE',
            `probe failed at ${result.failed?.step}: ${result.failed?.why}`,
          );
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };

  const leads = deps.leads ?? (() => true);
  /** Whether this process has probed since it last took the lead: then no other one has meanwhile. */
  let probingSinceLead = false;
  /** The scheduled probe: in the leading process, unless a result of another one is this fresh. */
  const scheduled = async (): Promise<void> => {
    if (!leads()) {
      probingSinceLead = false;
      return;
    }
    if (running) return;
    if (!probingSinceLead) {
      // Just took the lead: the last holder may have probed a moment ago.
      const now = clock();
      const recent = await probeResultsSince(store, new Date(now.getTime() - config.intervalMs / 2));
      if (recent.length > 0) return;
      probingSinceLead = true;
    }
    await runOnce();
  };

  if (apiKey) {
    timer = setInterval(() => void scheduled().catch(() => undefined), config.intervalMs);
    timer.unref();
  }

  return {
    runOnce,
    async availability() {
      const now = clock();
      const results = await probeResultsSince(store, new Date(now.getTime() - 30 * DAY_MS));
      const report = availability(results, {
        now,
        intervalMs: config.intervalMs,
        objective: AVAILABILITY_OBJECTIVE,
        gaps: 'down',
      });
      const last = results.at(-1);
      return {
        probing: apiKey !== undefined,
        ...(apiKey ? { url: new URL(config.url ?? deps.defaultUrl()).origin } : {}),
        ...(last
          ? { last: { at: last.at, ok: last.ok, ...(last.failed ? { failed: last.failed } : {}) } }
          : {}),
        report,
        node: { runsProbe: apiKey !== undefined && leads() },
      };
    },
    async close() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
