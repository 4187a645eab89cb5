// backends: sqlite postgres
/**
 * The tenant stores' metrics, fed by a real registry (SQLite files with a handle budget of 2, or
 * PostgreSQL schemas remembering 2) through the narrow source the server wires: tenant stores
 * opened, closed, evicted and wiped, the handle budget, and the tenant group commits' transactions
 * and writes — which on SQLite are summed over the files and do not drop when a store is evicted —
 * and on SQLite the checkpoints of the tenant WALs in the checkpoint worker thread.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTresorMetrics } from '../../src/monitor/metrics.ts';
import { createPgTenantStores } from '../../src/store/pg/tenant-stores.ts';
import { CHECKPOINT_EVERY_BATCHES } from '../../src/store/sqlite/store.ts';
import { createTenantStores } from '../../src/store/sqlite/tenant-stores.ts';
import type { TenantStores } from '../../src/store/types.ts';
import { onPostgres } from '../helpers/backend.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';
import {
  insertRecord,
  RECORDS_MIGRATIONS,
  RECORDS_PG_MIGRATIONS,
  type RecordsDb,
} from '../store/fixtures/records.ts';
import { promtool, sampleValue } from './scrape.ts';

const MAX_OPEN = 2;
const TENANTS = ['ma', 'mb', 'mc', 'md', 'me'];
const WRITES_EACH = 3;

describe('tenant store metrics', () => {
  let dir: string;
  let pg: FreshPgDatabase | undefined;
  let stores: TenantStores<RecordsDb>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-store-metrics-'));
    if (onPostgres) {
      pg = await freshPgDatabase();
      stores = await createPgTenantStores<RecordsDb>({
        url: pg.url,
        migrations: RECORDS_PG_MIGRATIONS,
        maxOpen: MAX_OPEN,
      });
    } else {
      stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS, maxOpen: MAX_OPEN });
    }
  });

  after(async () => {
    await stores?.close();
    await pg?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('count opens, evictions, wipes, the budget and the tenant group commits, evicted stores included', async () => {
    const metrics = createTresorMetrics();
    metrics.state.watch({ tenantStores: () => stores.stats() });
    const scrape = async () => (await metrics.scrape()).body;
    const value = (body: string, name: string) => sampleValue(body, name) ?? Number.NaN;

    for (const t of TENANTS) await stores.create(t);
    const before = await scrape();
    // One write at a time, so each is a batch of its own: round-robin over more tenants than the
    // budget keeps open, so the stores written first are evicted before the scrape.
    for (let i = 0; i < WRITES_EACH; i++) {
      for (const t of TENANTS) {
        const store = await stores.open(t);
        await store.write((trx) => insertRecord(trx, `${t}-${i}`, 'a value'));
      }
    }
    const written = await scrape();
    const writes = TENANTS.length * WRITES_EACH;
    const batches = value(written, 'tresor_tenant_store_commit_batches_total');
    const jobs = value(written, 'tresor_tenant_store_commit_jobs_total');
    assert.equal(jobs - value(before, 'tresor_tenant_store_commit_jobs_total'), writes);
    assert.equal(batches - value(before, 'tresor_tenant_store_commit_batches_total'), writes);
    assert.equal(value(written, 'tresor_tenant_stores_max_open'), MAX_OPEN);
    assert.ok(value(written, 'tresor_tenant_stores_open') <= MAX_OPEN + 1);
    const evicted = value(written, 'tresor_tenant_stores_evicted_total');
    assert.ok(evicted >= writes - MAX_OPEN, `round-robin over ${TENANTS.length} evicts: ${evicted}`);
    const closed = value(written, 'tresor_tenant_stores_closed_total');
    assert.ok(closed >= evicted);
    assert.equal(
      value(written, 'tresor_tenant_stores_opened_total') - closed,
      value(written, 'tresor_tenant_stores_open'),
      'every store opened is open or closed',
    );
    assert.equal(value(written, 'tresor_tenant_stores_wiped_total'), 0);

    await stores.destroy('ma');
    const destroyed = await scrape();
    assert.equal(value(destroyed, 'tresor_tenant_stores_wiped_total'), 1);
    // A counter never goes down: the wiped store's transactions stay counted.
    assert.equal(value(destroyed, 'tresor_tenant_store_commit_batches_total'), batches);
    assert.equal(value(destroyed, 'tresor_tenant_store_commit_jobs_total'), jobs);
    const checked = await promtool(['check', 'metrics'], destroyed);
    assert.equal(checked.code, 0, checked.output);
  });

  it('count the tenant WAL checkpoints of the worker thread on SQLite, none on PostgreSQL', async () => {
    const metrics = createTresorMetrics();
    metrics.state.watch({ tenantStores: () => stores.stats() });
    const tenant = 'mw';
    await stores.create(tenant);
    const store = await stores.open(tenant);
    // A batch of its own each: the last asks for a checkpoint (CHECKPOINT_EVERY_BATCHES).
    for (let i = 0; i < CHECKPOINT_EVERY_BATCHES; i++)
      await store.write((trx) => insertRecord(trx, `${tenant}-${i}`, 'a value'));
    const answered = () => (stores.stats().walCheckpoints?.checkpoints ?? 0) > 0;
    // The worker thread starts at the first checkpoint; bounded by the file's time limit.
    while (!onPostgres && !answered()) await new Promise((resolve) => setTimeout(resolve, 20));
    const body = (await metrics.scrape()).body;
    const names = [
      'tresor_tenant_wal_checkpoints_total',
      'tresor_tenant_wal_checkpoints_complete_total',
      'tresor_tenant_wal_checkpoints_failed_total',
    ];
    if (onPostgres) {
      for (const name of names) assert.equal(sampleValue(body, name), undefined, name);
    } else {
      assert.deepEqual(
        names.map((name) => sampleValue(body, name)),
        [1, 1, 0],
      );
    }
    const checked = await promtool(['check', 'metrics'], body);
    assert.equal(checked.code, 0, checked.output);
  });
});
