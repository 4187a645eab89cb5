// backends: postgres (the PostgreSQL run lock is an advisory lock; the SQLite one is in-process and tested here too)
/**
 * The backup run lock (src/backup/run-lock.ts): while a run's maker holds its lock, another
 * process's lock says the maker is there; once it releases, or its session ends (what kill -9
 * does: here pg_terminate_backend of the holding session), the maker is gone. The in-process
 * lock (SQLite) answers "gone" for every run this process is not making.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createLocalRunLock, createPgRunLock, type RunLock } from '../../src/backup/run-lock.ts';
import { type FreshPgDatabase, freshPgDatabase, testPgPrefix } from '../helpers/pg.ts';
import { waitFor } from '../helpers/wait.ts';

describe('backup run lock', () => {
  let database: FreshPgDatabase | undefined;
  const locks: RunLock[] = [];

  before(async () => {
    database = await freshPgDatabase({ prefix: testPgPrefix('h_runlock') });
  });
  after(async () => {
    for (const lock of locks) await lock.close().catch(() => undefined);
    await database?.drop();
  });

  const pgLock = (): RunLock => {
    const lock = createPgRunLock({ url: (database as FreshPgDatabase).url });
    locks.push(lock);
    return lock;
  };

  test('PostgreSQL: a held run is not gone for another node; released, it is', async () => {
    const maker = pgLock();
    const other = pgLock();
    const release = await maker.hold('bk-1');
    assert.equal(await other.makerGone('bk-1'), false);
    assert.equal(await other.makerGone('bk-2'), true, 'another run is not held');
    // A try that found it free released it again: the maker can take it.
    const release2 = await maker.hold('bk-2');
    await release2();
    await release();
    assert.equal(await other.makerGone('bk-1'), true);
  });

  test("PostgreSQL: the maker's session ends (as on kill -9): its run's maker is gone", async () => {
    const maker = pgLock();
    const other = pgLock();
    await maker.hold('bk-3');
    assert.equal(await other.makerGone('bk-3'), false);
    const admin = new pg.Client({ connectionString: (database as FreshPgDatabase).url });
    await admin.connect();
    try {
      const ended = await admin.query<{ ended: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'tresor-backup-run' AND pid <> pg_backend_pid()`,
      );
      assert.ok(ended.rows.length >= 1);
    } finally {
      await admin.end();
    }
    // The backend ends asynchronously after the signal: polled, bounded.
    await waitFor('the terminated session to free the lock', async () =>
      (await other.makerGone('bk-3')) ? true : undefined,
    );
  });

  test('in-process (SQLite): gone unless this process makes it now', async () => {
    const lock = createLocalRunLock();
    assert.equal(await lock.makerGone('bk-1'), true);
    const release = await lock.hold('bk-1');
    assert.equal(await lock.makerGone('bk-1'), false);
    await release();
    assert.equal(await lock.makerGone('bk-1'), true);
  });
});
