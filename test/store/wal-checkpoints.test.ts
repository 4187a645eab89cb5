// backends: sqlite (the tenant files' WALs; PostgreSQL has one WAL of its own)
/**
 * The tenant stores checkpoint their WALs in a worker thread every CHECKPOINT_EVERY_BATCHES batches
 * (src/store/sqlite/wal-checkpointer.ts), so a tenant written now and then restarts its WAL small
 * instead of growing it to SQLite's 1,000 pages (4 MB). Checked without timing anything:
 * - a tenant written write after write keeps its WAL far below what SQLite's own checkpoint allows,
 *   every write is still there and the file passes integrity_check;
 * - a store written now and then restarts its WAL at the first commit after the worker's checkpoint,
 *   without its writes waiting for it;
 * - closing the registry waits for a checkpoint still in flight (it completes; none fails).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { CHECKPOINT_EVERY_BATCHES } from '../../src/store/sqlite/store.ts';
import { createTenantStores, type TenantStores } from '../../src/store/sqlite/tenant-stores.ts';
import { insertRecord, RECORDS_MIGRATIONS, type RecordsDb } from './fixtures/records.ts';

/** A WAL frame: its 24-byte header and one 4 KiB page. */
const FRAME_BYTES = 24 + 4096;
/** SQLite's own automatic checkpoint runs once the WAL holds this many frames. */
const SQLITE_AUTOCHECKPOINT_FRAMES = 1000;
const WRITES = 600;

describe('tenant WAL checkpoints in a worker thread', () => {
  let dir: string;
  let stores: TenantStores<RecordsDb>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-wal-checkpoints-'));
    stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS });
  });

  afterEach(async () => {
    await stores.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a WAL written batch after batch small, and every write intact', async () => {
    // The worker thread starts at the first checkpoint (loading TypeScript from source takes a
    // while), and a WAL file never shrinks: another tenant's writes start it.
    const warm = await stores.create('ten_warm');
    for (let i = 0; (stores.stats().walCheckpoints?.checkpoints ?? 0) === 0 && i < 20_000; i++)
      await warm.write((trx) => insertRecord(trx, `r${i}`, 'value'));
    const before = stores.stats().walCheckpoints?.checkpoints ?? 0;

    const store = await stores.create('ten_checkpoints');
    // 1.5 KB a record: each write (a batch of its own) appends 4 to 6 frames.
    const value = 'v'.repeat(1500);
    let largestWal = 0;
    for (let i = 0; i < WRITES; i++) {
      await store.write((trx) => insertRecord(trx, `r${i}`, value));
      largestWal = Math.max(largestWal, statSync(`${store.location}-wal`).size);
    }
    const { walCheckpoints } = stores.stats();
    assert.ok(walCheckpoints !== undefined);
    assert.equal(walCheckpoints.failed, 0);
    // A checkpoint is asked every CHECKPOINT_EVERY_BATCHES batches unless the last one is still running.
    assert.ok(
      walCheckpoints.checkpoints - before >= 4,
      `${walCheckpoints.checkpoints} checkpoints over ${WRITES / CHECKPOINT_EVERY_BATCHES} asks`,
    );
    assert.ok(walCheckpoints.complete >= 2, `${walCheckpoints.complete} complete checkpoints`);
    // Without them the WAL grows to SQLITE_AUTOCHECKPOINT_FRAMES frames (4 MB) before SQLite
    // restarts it; with them, written without pause, it restarts once it passed
    // HOLD_WRITES_AT_FRAMES, from a checkpoint its writes wait for.
    assert.ok(
      largestWal < (SQLITE_AUTOCHECKPOINT_FRAMES / 2) * FRAME_BYTES,
      `the WAL reached ${largestWal} bytes`,
    );

    await stores.close();
    stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS });
    const reopened = await stores.open('ten_checkpoints');
    const integrity = await sql<{ integrity_check: string }>`PRAGMA integrity_check`.execute(reopened.db);
    assert.deepEqual(integrity.rows, [{ integrity_check: 'ok' }]);
    const count = await reopened.db
      .selectFrom('records')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    assert.equal(Number(count.n), WRITES);
  });

  it('restarts the WAL of a store written now and then at its next commit after the checkpoint', async () => {
    const store = await stores.create('ten_sometimes');
    for (let i = 0; i < CHECKPOINT_EVERY_BATCHES; i++)
      await store.write((trx) => insertRecord(trx, `r${i}`, 'value'));
    // Nothing is written while the worker's checkpoint runs (its thread starts with the first one).
    for (let i = 0; (stores.stats().walCheckpoints?.checkpoints ?? 0) === 0 && i < 1500; i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(stores.stats().walCheckpoints, { checkpoints: 1, complete: 1, failed: 0 });
    await store.write((trx) => insertRecord(trx, 'after', 'value'));
    // Frames in the WAL now, as another connection sees them: the last write's alone, had it restarted.
    const probe = new Database(store.location, { fileMustExist: true });
    try {
      const [frames] = probe.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
      assert.ok(frames !== undefined && frames.log < 10, `the WAL holds ${frames?.log} frames`);
    } finally {
      probe.close();
    }
  });

  it('closes only after the checkpoint it asked for has finished', async () => {
    const store = await stores.create('ten_close');
    // The batch that completes CHECKPOINT_EVERY_BATCHES asks for one; close at once behind it.
    for (let i = 0; i < CHECKPOINT_EVERY_BATCHES; i++)
      await store.write((trx) => insertRecord(trx, `r${i}`, 'value'));
    await stores.close();
    const { walCheckpoints } = stores.stats();
    assert.deepEqual(walCheckpoints, { checkpoints: 1, complete: 1, failed: 0 });
  });
});
