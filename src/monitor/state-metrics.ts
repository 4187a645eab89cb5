/**
 * The metrics read from the server's parts at each scrape, from the counts they already keep: the
 * background jobs, storage, the key cache, live access grants, the certificates in use and the
 * measured availability (one
 * family per file beside this one). A part not handed in is absent from the scrape. The sources are
 * narrow functions the server wires: monitor imports none of the domains above it.
 */
import type { Registry } from 'prom-client';
import { type AvailabilityFacts, availabilityMetrics } from './availability-metrics.ts';
import { type CertificateFiles, certificateMetrics } from './certificate-metrics.ts';
import { grantMetrics } from './grant-metrics.ts';
import { type JobFacts, jobMetrics } from './job-metrics.ts';
import { type KeyCacheFacts, keyCacheMetrics } from './key-cache-metrics.ts';
import { type GroupCommitFacts, storeMetrics, type TenantStoresFacts } from './store-metrics.ts';

export interface StateMetricsSources {
  /** The job runner's status (server/jobs.ts). */
  jobs?: () => Record<string, JobFacts>;
  /** The control store's group commit (store/sqlite/store.ts stats). */
  groupCommit?: () => GroupCommitFacts;
  /** The tenant stores' registry: open, opened, evicted, wiped, the budget, their group commits. */
  tenantStores?: () => TenantStoresFacts;
  keyCache?: () => KeyCacheFacts;
  grants?: () => Promise<{ active: number; breakGlass: number }>;
  /** The certificates in use, by role. */
  certificates?: CertificateFiles;
  /** The server's own probe results as availability (server/probe-job.ts). */
  availability?: () => Promise<AvailabilityFacts>;
}

export interface StateMetrics {
  watch(sources: StateMetricsSources): void;
}

export function stateMetrics(registry: Registry): StateMetrics {
  let s: StateMetricsSources = {};
  jobMetrics(registry, () => s.jobs?.());
  storeMetrics(registry, () => s);
  keyCacheMetrics(registry, () => s.keyCache?.());
  grantMetrics(registry, () => s.grants);
  certificateMetrics(registry, () => s.certificates);
  availabilityMetrics(registry, () => s.availability);
  return {
    watch(sources) {
      s = sources;
    },
  };
}
