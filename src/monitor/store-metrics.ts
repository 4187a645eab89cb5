/**
 * Storage: the control store's group commit (store/sqlite/store.ts stats: mean batch size is
 * `rate(jobs) / rate(batches)`) and how many tenant stores are open. Each tenant store has its
 * own group commit, whose figures are not exposed yet.
 */
import type { Registry } from 'prom-client';
import { scrapeTimeCounter, scrapeTimeGauge } from './scrape-time.ts';

export interface GroupCommitFacts {
  batches: number;
  jobs: number;
  maxBatch: number;
  failedBatches: number;
  queued: number;
}

export function storeMetrics(
  registry: Registry,
  sources: () => {
    groupCommit?: () => GroupCommitFacts;
    tenantStores?: () => { open: number; opened: number };
  },
): void {
  const commit = () => sources().groupCommit?.();
  const tenants = () => sources().tenantStores?.();
  scrapeTimeCounter(
    registry,
    'tresor_store_commit_batches_total',
    'Transactions the control store\u2019s group commit began (one fsync each).',
    () => commit()?.batches,
  );
  scrapeTimeCounter(
    registry,
    'tresor_store_commit_jobs_total',
    'Writes the control store\u2019s group commit ran (batched into the transactions above).',
    () => commit()?.jobs,
  );
  scrapeTimeCounter(
    registry,
    'tresor_store_commit_failed_batches_total',
    'Group-commit transactions of the control store that failed.',
    () => commit()?.failedBatches,
  );
  scrapeTimeGauge(
    registry,
    'tresor_store_commit_max_batch',
    'Most writes in one group-commit transaction of the control store since start.',
    () => commit()?.maxBatch,
  );
  scrapeTimeGauge(
    registry,
    'tresor_store_commit_queued',
    'Writes waiting for the control store\u2019s next group-commit transaction.',
    () => commit()?.queued,
  );
  scrapeTimeGauge(registry, 'tresor_tenant_stores_open', 'Tenant stores open now.', () => tenants()?.open);
  scrapeTimeCounter(
    registry,
    'tresor_tenant_stores_opened_total',
    'Tenant stores opened (or created) since start; with few open, a high rate means the open-store bound is too small.',
    () => tenants()?.opened,
  );
}
