// backends: sqlite (the handle budget, WAL files and their wiping are the SQLite registry's)
/**
 * The handle budget: with few stores kept open and many tenants, every read and write succeeds;
 * closing an idle store to stay within the budget (eviction) neither checkpoints nor wipes it (its
 * WAL file is still there, holding the frames); destroy() still wipes a tenant completely.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  FDS_PER_STORE,
  MIN_OPEN_STORES,
  RESERVED_FDS,
  softFileLimit,
  tenantStoreBudget,
} from '../../src/store/sqlite/handle-budget.ts';
import { createTenantStores, type TenantStores } from '../../src/store/sqlite/tenant-stores.ts';
import { insertRecord, RECORDS_MIGRATIONS, type RecordsDb } from './fixtures/records.ts';

const TENANTS = 50;
const MAX_OPEN = 4;
const tenantIds = Array.from({ length: TENANTS }, (_, i) => `t${String(i).padStart(3, '0')}`);

describe('tenant store handle budget and eviction', () => {
  let dir: string;
  let tenantsDir: string;
  let stores: TenantStores<RecordsDb>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-evict-'));
    tenantsDir = join(dir, 'tenants');
    stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS, maxOpen: MAX_OPEN });
  });

  afterEach(async () => {
    await stores.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`serves reads and writes over ${TENANTS} tenants with ${MAX_OPEN} stores open, and eviction neither checkpoints nor wipes`, async () => {
    for (const t of tenantIds) await stores.create(t);
    // Two rounds of writes and reads over every tenant, concurrently: each round evicts and reopens.
    for (const round of [1, 2]) {
      await Promise.all(
        tenantIds.map(async (t) => {
          const store = await stores.open(t);
          await store.write((trx) => insertRecord(trx, `${t}-r${round}`, `value-${round}`));
          const rows = await store.db.selectFrom('records').select('id').orderBy('id').execute();
          assert.deepEqual(
            rows.map((r) => r.id),
            Array.from({ length: round }, (_, i) => `${t}-r${i + 1}`),
          );
        }),
      );
    }
    const stats = stores.stats();
    assert.ok(stats.open <= MAX_OPEN, `open ${stats.open}`);
    assert.ok(stats.evicted >= TENANTS, `evicted ${stats.evicted}`);
    assert.equal(stats.wiped, 0);
    assert.equal(stats.maxOpen, MAX_OPEN);

    // Every evicted store kept its WAL: not checkpointed (its frames are there, non-zero), not deleted.
    const open = new Set(stores.openTenants());
    const evicted = tenantIds.filter((t) => !open.has(t));
    assert.ok(evicted.length >= TENANTS - MAX_OPEN);
    for (const t of evicted) {
      const wal = join(tenantsDir, `${t}.sqlite-wal`);
      assert.ok(existsSync(wal), `${t}: the WAL is still there`);
      assert.ok(statSync(wal).size > 32, `${t}: the WAL holds frames`);
      assert.ok(
        readFileSync(wal).includes(`${t}-r2`),
        `${t}: the last write is in the WAL (no checkpoint moved it)`,
      );
    }

    // A restarted registry reads what the WALs hold.
    await stores.close();
    stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS, maxOpen: MAX_OPEN });
    for (const t of tenantIds) {
      const store = await stores.open(t);
      assert.equal((await store.db.selectFrom('records').selectAll().execute()).length, 2);
    }
  });

  it('wipes a destroyed tenant completely, evicted or not, and leaves the others as they were', async () => {
    for (const t of tenantIds.slice(0, 10)) {
      const store = await stores.create(t);
      await store.write((trx) => insertRecord(trx, `${t}-secret-id`, 'v'));
    }
    const victim = 't000'; // evicted long ago: its WAL is on disk, unzeroed
    assert.ok(!stores.openTenants().includes(victim));
    assert.ok(existsSync(join(tenantsDir, `${victim}.sqlite-wal`)));
    await stores.destroy(victim);
    assert.equal(stores.stats().wiped, 1);
    const left = readdirSync(tenantsDir).filter((n) => n.startsWith(`${victim}.`));
    assert.deepEqual(left, []);
    for (const name of readdirSync(tenantsDir))
      assert.ok(!readFileSync(join(tenantsDir, name)).includes(`${victim}-secret-id`), name);

    const open = 't009';
    assert.ok(stores.openTenants().includes(open));
    await stores.destroy(open);
    assert.equal(stores.stats().wiped, 2);
    assert.deepEqual(
      readdirSync(tenantsDir).filter((n) => n.startsWith(`${open}.`)),
      [],
    );
    for (const t of tenantIds.slice(1, 9)) {
      const store = await stores.open(t);
      assert.equal((await store.db.selectFrom('records').selectAll().execute()).length, 1);
    }
  });

  it('derives the budget from the soft file limit, minus client connections and a reserve', () => {
    const limits = [
      'Limit                     Soft Limit           Hard Limit           Units     ',
      'Max open files            20000                20000                files     ',
    ].join('\n');
    assert.equal(softFileLimit(limits), 20_000);
    assert.equal(softFileLimit('Max open files unlimited unlimited files'), Number.MAX_SAFE_INTEGER);
    assert.equal(softFileLimit('nothing here'), undefined);
    assert.deepEqual(tenantStoreBudget(4096, 20_000), {
      maxOpen: Math.floor((20_000 - 4096 - RESERVED_FDS) / FDS_PER_STORE),
      fileLimit: 20_000,
    });
    assert.equal(tenantStoreBudget(4096, 1024).maxOpen, MIN_OPEN_STORES);
    // Node raised this process's soft limit to its hard one at start: the budget uses all of it.
    const own = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const [soft, hard] = (own ?? '').slice('Max open files'.length).trim().split(/\s+/);
    assert.equal(soft, hard);
    assert.equal(tenantStoreBudget(0).fileLimit, softFileLimit());
  });
  it(`an open store holds at most FDS_PER_STORE (${FDS_PER_STORE}) descriptors, counted in /proc/self/fd`, async () => {
    const n = MAX_OPEN;
    const fds = () => readdirSync('/proc/self/fd').length;
    for (const t of tenantIds.slice(0, n)) await stores.create(t);
    await stores.close();
    stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS, maxOpen: MAX_OPEN });
    const before = fds();
    for (const t of tenantIds.slice(0, n)) {
      const store = await stores.open(t);
      await store.write((trx) => insertRecord(trx, `${t}-fd`, 'value'));
      await store.db.selectFrom('records').select('id').execute();
    }
    assert.equal(stores.stats().open, n);
    const perStore = (fds() - before) / n;
    assert.ok(perStore <= FDS_PER_STORE, `${perStore} descriptors per open store, budgeted ${FDS_PER_STORE}`);
  });
});
