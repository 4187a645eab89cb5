/**
 * Gauges read from the server's parts at each scrape, from the counts they already keep: the
 * background jobs' runs and failures, the control store's group commit, the key cache, live access
 * grants (and break-glass ones), and the TLS certificate's expiry. A part not handed in is simply
 * absent from the scrape. The sources are narrow functions the server wires (monitor imports none
 * of the domains above it).
 */
import { X509Certificate } from 'node:crypto';
import { Counter, Gauge, type Registry } from 'prom-client';
import { labelVocabulary, PLAIN_NAME } from './label-values.ts';

/** A job's counts, as the job runner keeps them (server/jobs.ts). */
export interface JobFacts {
  runs: number;
  failures: number;
  lastSuccess?: string;
  lastOutcome?: 'success' | 'failure';
}

export interface StateMetricsSources {
  jobs?: () => Record<string, JobFacts>;
  /** The control store's group commit (store/sqlite/store.ts stats). */
  groupCommit?: () => {
    batches: number;
    jobs: number;
    maxBatch: number;
    failedBatches: number;
    queued: number;
  };
  /** The tenant stores' registry: how many are open (each has its own group commit). */
  tenantStores?: () => { open: number; opened: number };
  keyCache?: () => { hits: number; misses: number; evictions: number; expirations: number; size: number };
  grants?: () => Promise<{ active: number; breakGlass: number }>;
  /**
   * The certificates in use, by role (`server`: the HTTPS one; `keyd-client`: the server's mTLS
   * certificate towards keyd), each read from its file (PEM, the leaf first) at each scrape so a
   * reload or a replaced file shows.
   */
  certificates?: Readonly<Record<string, () => Buffer | string>>;
}

export interface StateMetrics {
  watch(sources: StateMetricsSources): void;
}

export function stateMetrics(registry: Registry): StateMetrics {
  const registers = [registry];
  const jobNames = labelVocabulary(PLAIN_NAME, 64);
  let s: StateMetricsSources = {};

  /** A counter whose value is kept elsewhere and read at scrape time. */
  const mirrored = (name: string, help: string, read: () => number | undefined) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        const v = read();
        // A label-less metric resets to 0; an unknown value is absent instead, not a false 0.
        if (v === undefined) this.remove();
        else this.inc(v);
      },
    });
  const gauge = (name: string, help: string, read: () => number | undefined | Promise<number | undefined>) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        this.reset();
        // A part that cannot answer now (the store closing, a bad certificate file) is left out of
        // this scrape rather than failing it: the other series still tell the operator what is wrong.
        const v = await Promise.resolve()
          .then(read)
          .catch(() => undefined);
        if (v === undefined) this.remove();
        else this.set(v);
      },
    });

  // Jobs.
  new Counter({
    name: 'tresor_job_runs_total',
    help: 'Runs of each background job since start.',
    labelNames: ['job'] as const,
    registers,
    collect() {
      this.reset();
      for (const [job, f] of Object.entries(s.jobs?.() ?? {})) this.inc({ job: jobNames.of(job) }, f.runs);
    },
  });
  new Counter({
    name: 'tresor_job_failures_total',
    help: 'Failed runs of each background job since start.',
    labelNames: ['job'] as const,
    registers,
    collect() {
      this.reset();
      for (const [job, f] of Object.entries(s.jobs?.() ?? {}))
        this.inc({ job: jobNames.of(job) }, f.failures);
    },
  });
  new Gauge({
    name: 'tresor_job_last_run_failed',
    help: '1 when the last finished run of the job failed, else 0.',
    labelNames: ['job'] as const,
    registers,
    collect() {
      this.reset();
      for (const [job, f] of Object.entries(s.jobs?.() ?? {}))
        this.set({ job: jobNames.of(job) }, f.lastOutcome === 'failure' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tresor_job_last_success_timestamp_seconds',
    help: 'When the job last succeeded (Unix time); absent when it never did since start.',
    labelNames: ['job'] as const,
    registers,
    collect() {
      this.reset();
      for (const [job, f] of Object.entries(s.jobs?.() ?? {})) {
        const at = f.lastSuccess === undefined ? Number.NaN : Date.parse(f.lastSuccess);
        if (Number.isFinite(at)) this.set({ job: jobNames.of(job) }, at / 1000);
      }
    },
  });

  // Group commit of the control store: mean batch size = rate(jobs) / rate(batches).
  mirrored(
    'tresor_store_commit_batches_total',
    'Transactions the control store\u2019s group commit began (one fsync each).',
    () => s.groupCommit?.().batches,
  );
  mirrored(
    'tresor_store_commit_jobs_total',
    'Writes the control store\u2019s group commit ran (batched into the transactions above).',
    () => s.groupCommit?.().jobs,
  );
  mirrored(
    'tresor_store_commit_failed_batches_total',
    'Group-commit transactions of the control store that failed.',
    () => s.groupCommit?.().failedBatches,
  );
  gauge(
    'tresor_store_commit_max_batch',
    'Most writes in one group-commit transaction of the control store since start.',
    () => s.groupCommit?.().maxBatch,
  );
  gauge(
    'tresor_store_commit_queued',
    'Writes waiting for the control store\u2019s next group-commit transaction.',
    () => s.groupCommit?.().queued,
  );

  gauge('tresor_tenant_stores_open', 'Tenant stores open now.', () => s.tenantStores?.().open);
  mirrored(
    'tresor_tenant_stores_opened_total',
    'Tenant stores opened (or created) since start; with few open, a high rate means the open-store bound is too small.',
    () => s.tenantStores?.().opened,
  );

  // Key cache: hit ratio = rate(hits) / (rate(hits) + rate(misses)).
  mirrored('tresor_key_cache_hits_total', 'Key cache lookups that found the key.', () => s.keyCache?.().hits);
  mirrored(
    'tresor_key_cache_misses_total',
    'Key cache lookups that had to ask keyd.',
    () => s.keyCache?.().misses,
  );
  mirrored(
    'tresor_key_cache_evictions_total',
    'Keys pushed out of the cache by its size bound.',
    () => s.keyCache?.().evictions,
  );
  mirrored(
    'tresor_key_cache_expirations_total',
    'Keys removed from the cache by their time or use bound.',
    () => s.keyCache?.().expirations,
  );
  gauge('tresor_key_cache_entries', 'Keys held in the cache now.', () => s.keyCache?.().size);

  // Access grants.
  let grantCounts: Promise<{ active: number; breakGlass: number } | undefined> | undefined;
  const grants = () => {
    grantCounts ??= (s.grants?.() ?? Promise.resolve(undefined)).finally(() => {
      grantCounts = undefined;
    });
    return grantCounts;
  };
  gauge(
    'tresor_access_grants_active',
    'Staff access grants live now (break-glass included).',
    async () => (await grants())?.active,
  );
  gauge(
    'tresor_access_grants_break_glass_active',
    'Break-glass grants live now.',
    async () => (await grants())?.breakGlass,
  );

  // The certificates in use; one that cannot be read is left out (and the rules see it missing).
  const roles = labelVocabulary(PLAIN_NAME, 8);
  new Gauge({
    name: 'tresor_tls_certificate_expiry_timestamp_seconds',
    help: 'When each certificate in use expires (Unix time, its notAfter), by role.',
    labelNames: ['certificate'] as const,
    registers,
    collect() {
      this.reset();
      for (const [role, read] of Object.entries(s.certificates ?? {})) {
        try {
          this.set({ certificate: roles.of(role) }, Date.parse(new X509Certificate(read()).validTo) / 1000);
        } catch {
          // unreadable now: absent from this scrape
        }
      }
    },
  });

  return {
    watch(sources) {
      s = sources;
    },
  };
}
