// backends: sqlite (the in-process marks of SQLite; PostgreSQL's marks are proven in server/tenant-work-startup)
/**
 * The pending marks of tenant outboxes on SQLite: a mark is durable before the tenant's write
 * commits, and the sequencer's clear removes it only if no write started, ended or is in flight
 * since it read the outbox, and only once the tenant has been quiet for keepMarkMs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createSqlitePendingSources } from '../../src/audit/pending-sources.ts';
import { type ControlDB, openControlStore } from '../../src/server/control-store.ts';
import { createTenantStores, type TenantStores } from '../../src/store/sqlite/tenant-stores.ts';
import type { Store } from '../../src/store/types.ts';
import { insertRecord, RECORDS_MIGRATIONS, type RecordsDb } from '../store/fixtures/records.ts';

describe('pending marks (SQLite)', () => {
  let dir: string;
  let control: Store<ControlDB>;
  let stores: TenantStores<RecordsDb>;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-pending-'));
    control = await openControlStore(join(dir, 'control.sqlite'));
    stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS });
  });

  afterEach(async () => {
    await stores.close();
    await control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes the mark durable before the write runs, and clears it only when nothing can be left', async () => {
    const pending = createSqlitePendingSources(control, { keepMarkMs: 0 });
    const store = await stores.create('acme');
    let markedDuringWrite: string[] = [];
    await pending.write('acme', store, async (trx) => {
      markedDuringWrite = await pending.list();
      await insertRecord(trx, 'r1', 'v');
    });
    assert.deepEqual(markedDuringWrite, ['acme']);

    // A write that starts after the sequencer read the outbox keeps the mark.
    let token = pending.before('acme');
    await pending.write('acme', store, (trx) => insertRecord(trx, 'r2', 'v'));
    await pending.drained('acme', token, 0);
    assert.deepEqual(await pending.list(), ['acme']);

    // A write in flight when the clear comes keeps it too.
    token = pending.before('acme');
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    const slow = pending.write('acme', store, async (trx) => {
      started();
      await held;
      await insertRecord(trx, 'r3', 'v');
    });
    await running;
    await pending.drained('acme', pending.before('acme'), 0);
    assert.deepEqual(await pending.list(), ['acme']);
    release();
    await slow;
    await pending.drained('acme', token, 0);
    assert.deepEqual(await pending.list(), ['acme'], 'the token predates the slow write');

    // Quiet since the outbox was read: cleared; the next write marks again.
    await pending.drained('acme', pending.before('acme'), 0);
    assert.deepEqual(await pending.list(), []);
    assert.equal(pending.stats().cleared, 1);
    await pending.write('acme', store, (trx) => insertRecord(trx, 'r4', 'v'));
    assert.deepEqual(await pending.list(), ['acme']);
    pending.close();
  });

  it('keeps a mark while the tenant was written within keepMarkMs, and clears it once that passed', async () => {
    let now = 1_000_000;
    const pending = createSqlitePendingSources(control, { keepMarkMs: 60_000, now: () => now });
    const store = await stores.create('acme');
    await pending.write('acme', store, (trx) => insertRecord(trx, 'r1', 'v'));
    const token = pending.before('acme');
    await pending.drained('acme', token, 0);
    assert.deepEqual(await pending.list(), ['acme'], 'written a moment ago');
    now += 60_000;
    await pending.drained('acme', token, 0);
    assert.deepEqual(await pending.list(), []);
    pending.close();
  });

  it('a restore-style mark() after the outbox was read keeps the mark', async () => {
    const pending = createSqlitePendingSources(control, { keepMarkMs: 0 });
    await stores.create('acme');
    const token = pending.before('acme');
    await pending.mark('acme');
    await pending.drained('acme', token, 0);
    assert.deepEqual(await pending.list(), ['acme']);
    pending.close();
  });
});
