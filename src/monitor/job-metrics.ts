/**
 * The background jobs (server/jobs.ts keeps their runs, failures and last outcomes), by job name:
 * a job whose last run failed is `tresor_job_last_run_failed 1` until a run succeeds.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { labelVocabulary, PLAIN_NAME } from './label-values.ts';

/** A job's counts, as the job runner keeps them. */
export interface JobFacts {
  runs: number;
  failures: number;
  lastSuccess?: string;
  lastOutcome?: 'success' | 'failure';
}

export function jobMetrics(registry: Registry, jobs: () => Record<string, JobFacts> | undefined): void {
  const registers = [registry];
  const names = labelVocabulary(PLAIN_NAME, 64);
  const each = (visit: (job: string, facts: JobFacts) => void) => {
    for (const [job, facts] of Object.entries(jobs() ?? {})) visit(names.of(job), facts);
  };
  new Counter({
    name: 'tresor_job_runs_total',
    help: 'Runs of each background job since start.',
    labelNames: ['job'] as const,
    registers,
    collect() {
      this.reset();
      each((job, f) => this.inc({ job }, f.runs));
    },
  });
  new Counter({
    name: 'tresor_job_failures_total',
    help: 'Failed runs of each background job since start.',
    labelNames: ['job'] as const,
    registers,
    collect() {
      this.reset();
      each((job, f) => this.inc({ job }, f.failures));
    },
  });
  new Gauge({
    name: 'tresor_job_last_run_failed',
    help: '1 when the last finished run of the job failed, else 0.',
    labelNames: ['job'] as const,
    registers,
    collect() {
      this.reset();
      each((job, f) => this.set({ job }, f.lastOutcome === 'failure' ? 1 : 0));
    },
  });
  new Gauge({
    name: 'tresor_job_last_success_timestamp_seconds',
    help: 'When the job last succeeded (Unix time); absent when it never did since start.',
    labelNames: ['job'] as const,
    registers,
    collect() {
      this.reset();
      each((job, f) => {
        const at = f.lastSuccess === undefined ? Number.NaN : Date.parse(f.lastSuccess);
        if (Number.isFinite(at)) this.set({ job }, at / 1000);
      });
    },
  });
}
