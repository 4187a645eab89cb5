/**
 * Storage: the control store's group commit (store/sqlite/store.ts stats: mean batch size is
 * `rate(jobs) / rate(batches)`), and the tenant stores' registry: how many are open and may be (the
 * handle budget, store/sqlite/handle-budget.ts), opened, closed, evicted and wiped, and their group
 * commits summed (store/types.ts TenantStoresStats), and on SQLite the checkpoints of their WALs in
 * the checkpoint worker thread (store/sqlite/wal-checkpointer.ts). Fsyncs per request of tenant writes:
 * `rate(tresor_tenant_store_commit_batches_total) / rate(tresor_http_requests_total)`.
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

/** What the tenant stores' registry counts (store/types.ts TenantStoresStats). */
export interface TenantStoresFacts {
  open: number;
  maxOpen: number;
  opened: number;
  closed: number;
  evicted: number;
  wiped: number;
  commitBatches: number;
  commitJobs: number;
  /** SQLite: the tenant WALs' checkpoints in a worker thread (store/sqlite/wal-checkpointer.ts). */
  walCheckpoints?: { checkpoints: number; complete: number; failed: number };
}

export function storeMetrics(
  registry: Registry,
  sources: () => {
    groupCommit?: () => GroupCommitFacts;
    tenantStores?: () => TenantStoresFacts;
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
  scrapeTimeGauge(
    registry,
    'tresor_tenant_stores_max_open',
    'Tenant stores kept open at most (SQLite: the handle budget derived from the file limit).',
    () => tenants()?.maxOpen,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_stores_opened_total',
    'Tenant stores opened (or created) since start; with few open, a high rate means the open-store bound is too small.',
    () => tenants()?.opened,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_stores_closed_total',
    'Tenant stores closed since start, for any reason (eviction, destroy, shutdown).',
    () => tenants()?.closed,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_stores_evicted_total',
    'Idle tenant stores closed to stay within the handle budget (no checkpoint, no wipe); each is reopened on its next use.',
    () => tenants()?.evicted,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_stores_wiped_total',
    'Tenant stores wiped and removed at the end of their contract.',
    () => tenants()?.wiped,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_store_commit_batches_total',
    'Transactions the tenant stores\u2019 group commits began (SQLite: one fsync each, summed over the tenant files; PostgreSQL: the shared writer\u2019s).',
    () => tenants()?.commitBatches,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_store_commit_jobs_total',
    'Writes the tenant stores\u2019 group commits ran (batched into the transactions above).',
    () => tenants()?.commitJobs,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_wal_checkpoints_total',
    'Checkpoints of tenant stores\u2019 WALs run in the checkpoint worker thread (SQLite).',
    () => tenants()?.walCheckpoints?.checkpoints,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_wal_checkpoints_complete_total',
    'Of those, checkpoints that copied the whole WAL, so that the next commit restarts it (SQLite).',
    () => tenants()?.walCheckpoints?.complete,
  );
  scrapeTimeCounter(
    registry,
    'tresor_tenant_wal_checkpoints_failed_total',
    'Checkpoints of tenant WALs that failed in the worker thread; SQLite\u2019s own checkpoint at 1,000 pages still bounds the WAL (SQLite).',
    () => tenants()?.walCheckpoints?.failed,
  );
}
