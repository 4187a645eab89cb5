import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync, linkSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { type Kysely, type Migration, sql } from 'kysely';
import { TresorError } from '../../src/errors.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/store.ts';
import { insertRecord, RECORDS_MIGRATIONS, type RecordsDb } from './fixtures/records.ts';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

async function recordIds(store: SqliteStore<RecordsDb>): Promise<string[]> {
  const rows = await store.db.selectFrom('records').select('id').orderBy('id').execute();
  return rows.map((r) => r.id);
}

/** The TresorError code a settled write rejected with ('fulfilled' if it did not reject). */
function rejectionCode(result: PromiseSettledResult<unknown>): string {
  if (result.status === 'fulfilled') return 'fulfilled';
  return result.reason instanceof TresorError ? result.reason.code : String(result.reason);
}

function isUnavailable(error: unknown): boolean {
  return error instanceof TresorError && error.code === 'TRESOR_ERR_UNAVAILABLE';
}

describe('SQLite store group commit', () => {
  let dir: string;
  let path: string;
  let store: SqliteStore<RecordsDb>;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-group-commit-'));
    path = join(dir, 'store.sqlite');
    store = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS);
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('whileIdle runs between batches, in queue order, with the write lock free for another connection', async () => {
    const other = new Database(path);
    other.pragma('busy_timeout = 0'); // a held write lock would fail at once, not wait
    try {
      const before = ['a1', 'a2', 'a3'].map((id) => store.write((trx) => insertRecord(trx, id, 'v')));
      const seen: string[][] = [];
      const idle = store.whileIdle(async () => {
        // The writes queued before have committed; none queued after has started.
        seen.push(
          (other.prepare('SELECT id FROM records ORDER BY id').all() as { id: string }[]).map((r) => r.id),
        );
        await new Promise((r) => setTimeout(r, 20));
        other.exec('BEGIN IMMEDIATE');
        other.prepare("INSERT INTO records (id, value) VALUES ('outside', 'v')").run();
        other.exec('COMMIT');
        return 'done';
      });
      const afterIdle = ['b1', 'b2'].map((id) => store.write((trx) => insertRecord(trx, id, 'v')));
      assert.deepEqual(await Promise.all(before), ['a1', 'a2', 'a3']);
      assert.equal(await idle, 'done');
      assert.deepEqual(await Promise.all(afterIdle), ['b1', 'b2']);
      assert.deepEqual(seen, [['a1', 'a2', 'a3']]);
      assert.deepEqual(await recordIds(store), ['a1', 'a2', 'a3', 'b1', 'b2', 'outside']);
      // A failing outside job rejects its own caller only.
      const failing = store.whileIdle(async () => {
        throw new Error('outside failed');
      });
      const later = store.write((trx) => insertRecord(trx, 'c1', 'v'));
      await assert.rejects(failing, /outside failed/);
      assert.equal(await later, 'c1');
    } finally {
      other.close();
    }
  });

  it('commits 64 concurrent writes in one transaction, each caller getting its own result', async () => {
    const ids = Array.from({ length: 64 }, (_, i) => `r${String(i).padStart(2, '0')}`);
    const results = await Promise.all(ids.map((id) => store.write((trx) => insertRecord(trx, id, 'v'))));
    assert.deepEqual(results, ids);
    const stats = store.stats();
    assert.equal(stats.jobs, 64);
    assert.equal(stats.batches, 1);
    assert.equal(stats.maxBatch, 64);
    assert.deepEqual(await recordIds(store), ids);
  });

  it('puts writes requested while a batch runs into the next batch', async () => {
    const started = deferred();
    const proceed = deferred();
    const first = store.write(async (trx) => {
      await insertRecord(trx, 'first', 'v');
      started.resolve();
      await proceed.promise;
    });
    await started.promise;
    const later = [
      store.write((trx) => insertRecord(trx, 'later-1', 'v')),
      store.write((trx) => insertRecord(trx, 'later-2', 'v')),
    ];
    assert.equal(store.stats().queued, 2);
    proceed.resolve();
    await Promise.all([first, ...later]);
    assert.equal(store.stats().batches, 2);
    assert.equal(store.stats().maxBatch, 2);
    assert.deepEqual(await recordIds(store), ['first', 'later-1', 'later-2']);
  });

  it('gives the event loop a turn between batches while writers keep the queue full', async () => {
    // Each writer queues its next write as soon as the last resolves, so the queue is never empty;
    // without a turn between batches, no timer, socket or pipe would run until they all stopped.
    const loops = 8;
    const writesPerLoop = 50;
    let acknowledged = 0;
    const writers = Promise.all(
      Array.from({ length: loops }, async (_, loop) => {
        for (let i = 0; i < writesPerLoop; i++) {
          await store.write((trx) => insertRecord(trx, `l${loop}-${i}`, 'v'));
          acknowledged++;
        }
      }),
    );
    let acknowledgedWhenTheLoopTurned: number | undefined;
    setImmediate(() => {
      acknowledgedWhenTheLoopTurned = acknowledged;
    });
    await writers;
    assert.equal(acknowledged, loops * writesPerLoop);
    assert.ok(
      acknowledgedWhenTheLoopTurned !== undefined && acknowledgedWhenTheLoopTurned < loops * writesPerLoop,
      `the event loop turned only after ${acknowledgedWhenTheLoopTurned} of ${loops * writesPerLoop} writes`,
    );
  });

  it('caps a batch at maxBatch jobs', async () => {
    const capped = await openSqliteStore<RecordsDb>(join(dir, 'capped.sqlite'), RECORDS_MIGRATIONS, {
      maxBatch: 16,
    });
    try {
      await Promise.all(
        Array.from({ length: 64 }, (_, i) => capped.write((trx) => insertRecord(trx, `r${i}`, 'v'))),
      );
      assert.equal(capped.stats().batches, 4);
      assert.equal(capped.stats().maxBatch, 16);
    } finally {
      await capped.close();
    }
  });

  it('rolls back only a failing write, which rejects with its own error, while its batch-mates commit', async () => {
    const own = new Error('refused by the domain');
    const [a, b, c] = await Promise.allSettled([
      store.write((trx) => insertRecord(trx, 'a', 'v')),
      store.write(async (trx) => {
        await insertRecord(trx, 'b', 'v');
        throw own;
      }),
      store.write((trx) => insertRecord(trx, 'c', 'v')),
    ]);
    assert.deepEqual(a, { status: 'fulfilled', value: 'a' });
    assert.deepEqual(b, { status: 'rejected', reason: own });
    assert.deepEqual(c, { status: 'fulfilled', value: 'c' });
    assert.equal(store.stats().batches, 1);
    assert.deepEqual(await recordIds(store), ['a', 'c']);
    // The failed write's audit event went with it: one event per committed record.
    const events = await store.db.selectFrom('audit_events').select('event').execute();
    assert.deepEqual(events.map((e) => JSON.parse(e.event).target.recordIds[0]).sort(), ['a', 'c']);
  });

  it('rolls a lone failing write back whole: its own error, nothing saved, no store failure, the next write commits', async () => {
    const own = new Error('refused by the domain');
    await assert.rejects(
      store.write(async (trx) => {
        await insertRecord(trx, 'lone', 'v');
        throw own;
      }),
      (error) => error === own,
    );
    await assert.rejects(
      store.write((trx) => insertRecord(trx, 'lone', 'v').then(() => insertRecord(trx, 'lone', 'w'))),
      /UNIQUE constraint failed/,
    );
    assert.deepEqual(await recordIds(store), []);
    assert.equal(store.stats().failedBatches, 0, 'a refused write is not a failure of the store');
    // A lone write that ends the transaction itself is not saved either, and the store goes on.
    const ended = store.write(async (trx) => {
      await insertRecord(trx, 'ended', 'v');
      await sql`ROLLBACK`.execute(trx);
    });
    assert.equal(
      rejectionCode((await Promise.allSettled([ended]))[0] as PromiseSettledResult<unknown>),
      'TRESOR_ERR_UNAVAILABLE',
    );
    assert.equal(await store.write((trx) => insertRecord(trx, 'after', 'v')), 'after');
    assert.deepEqual(await recordIds(store), ['after']);
    const events = await store.db.selectFrom('audit_events').select('event').execute();
    assert.deepEqual(
      events.map((e) => JSON.parse(e.event).target.recordIds[0]),
      ['after'],
    );
  });

  it('rolls back a write whose SQL fails (a constraint) without touching its batch-mates', async () => {
    await store.write((trx) => insertRecord(trx, 'dup', 'v'));
    const [a, b] = await Promise.allSettled([
      store.write((trx) => insertRecord(trx, 'a', 'v')),
      store.write((trx) => insertRecord(trx, 'dup', 'again')),
    ]);
    assert.equal(a.status, 'fulfilled');
    assert.equal(b.status, 'rejected');
    assert.match(String(b.status === 'rejected' && b.reason), /UNIQUE constraint failed/);
    assert.deepEqual(await recordIds(store), ['a', 'dup']);
  });

  it('commits writes in the order they were requested', async () => {
    // Queued without waiting: one batch, run in queue order.
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        store.write((trx) => insertRecord(trx, `q${String(i).padStart(3, '0')}`, 'v')),
      ),
    );
    // One caller in sequence: the second write sees the first.
    await store.write((trx) => insertRecord(trx, 'first', 'v'));
    const seen = await store.write(async (trx) => {
      const row = await trx.selectFrom('records').select('id').where('id', '=', 'first').executeTakeFirst();
      await insertRecord(trx, 'second', 'v');
      return row?.id;
    });
    assert.equal(seen, 'first');
    const events = await store.db
      .selectFrom('audit_events')
      .select(['seq', 'event'])
      .orderBy('seq')
      .execute();
    const order = events.map((e) => JSON.parse(e.event).target.recordIds[0] as string);
    const expected = [
      ...Array.from({ length: 100 }, (_, i) => `q${String(i).padStart(3, '0')}`),
      'first',
      'second',
    ];
    assert.deepEqual(order, expected);
  });

  it('shows an acknowledged write to the next read, and keeps a batch in progress invisible to readers', async () => {
    await store.write((trx) => insertRecord(trx, 'acked', 'v'));
    assert.deepEqual(await recordIds(store), ['acked']);

    const inserted = deferred();
    const proceed = deferred();
    const pending = store.write(async (trx) => {
      await insertRecord(trx, 'in-flight', 'v');
      inserted.resolve();
      await proceed.promise;
    });
    await inserted.promise;
    // The batch holds the write lock; the WAL reader still answers, from the last commit.
    assert.deepEqual(await recordIds(store), ['acked']);
    proceed.resolve();
    await pending;
    assert.deepEqual(await recordIds(store), ['acked', 'in-flight']);
  });

  it('rejects every write of a batch whose COMMIT fails, saves none of it, and recovers', async () => {
    const withParents = await openSqliteStore<RecordsDb & DeferredDb>(join(dir, 'fk.sqlite'), {
      ...RECORDS_MIGRATIONS,
      '0003-deferred-fk': deferredForeignKey,
    });
    try {
      const [a, b] = await Promise.allSettled([
        withParents.write((trx) => insertRecord(trx, 'a', 'v')),
        // A deferred foreign key is checked only at COMMIT: the whole batch fails there.
        withParents.write((trx) =>
          trx.insertInto('children').values({ id: 'c', parent: 'missing' }).execute(),
        ),
      ]);
      assert.equal(a.status, 'rejected');
      assert.equal(rejectionCode(a), 'TRESOR_ERR_UNAVAILABLE');
      assert.equal(b.status, 'rejected');
      assert.equal(rejectionCode(b), 'TRESOR_ERR_UNAVAILABLE');
      assert.equal(withParents.stats().failedBatches, 1);
      assert.equal(withParents.stats().lastFailure, 'SQLITE_CONSTRAINT_FOREIGNKEY');
      assert.equal((await withParents.db.selectFrom('records').selectAll().execute()).length, 0);
      assert.equal((await withParents.db.selectFrom('audit_events').selectAll().execute()).length, 0);

      await withParents.write((trx) => insertRecord(trx, 'after', 'v'));
      assert.equal(withParents.stats().lastFailure, null);
      assert.equal((await withParents.db.selectFrom('records').selectAll().execute()).length, 1);
    } finally {
      await withParents.close();
    }
  });

  it('fails the writes before one that ends the shared transaction, and runs the writes after it in the next batch', async () => {
    const [a, b, c] = await Promise.allSettled([
      store.write((trx) => insertRecord(trx, 'a', 'v')),
      store.write(async (trx) => {
        await insertRecord(trx, 'b', 'v');
        await sql`ROLLBACK`.execute(trx); // forbidden: a work function must not end the transaction
      }),
      store.write((trx) => insertRecord(trx, 'c', 'v')),
    ]);
    assert.equal(a.status, 'rejected');
    assert.equal(rejectionCode(a), 'TRESOR_ERR_UNAVAILABLE');
    assert.equal(b.status, 'rejected');
    assert.deepEqual(c, { status: 'fulfilled', value: 'c' });
    assert.equal(store.stats().batches, 2);
    assert.deepEqual(await recordIds(store), ['c']);
  });

  it("runs each write in its caller's async context, not in the flusher's", async () => {
    const requestContext = new AsyncLocalStorage<string>();
    const seen = await Promise.all(
      ['req-1', 'req-2', 'req-3'].map((id) =>
        requestContext.run(id, () => store.write(async () => requestContext.getStore())),
      ),
    );
    assert.deepEqual(seen, ['req-1', 'req-2', 'req-3']);
    assert.equal(store.stats().batches, 1);
  });

  it('reports healthy by committing a probe write, and unhealthy once closed', async () => {
    assert.equal(await store.healthy(), true);
    assert.equal(store.stats().batches, 1);
    await store.close();
    assert.equal(await store.healthy(), false);
  });

  it('reports unhealthy, and fails writes as unavailable, once the database refuses writes', async () => {
    // query_only makes the writer connection refuse writes with SQLITE_READONLY, like a read-only file.
    await store.write((trx) => sql`PRAGMA query_only = 1`.execute(trx));
    assert.equal(await store.healthy(), false);
    await assert.rejects(
      store.write((trx) => insertRecord(trx, 'refused', 'v')),
      isUnavailable,
    );
    assert.equal(store.stats().lastFailure, 'SQLITE_READONLY');
    assert.deepEqual(await recordIds(store), []);
  });

  it('finishes queued writes on close(), then refuses new ones', async () => {
    const writes = Array.from({ length: 50 }, (_, i) =>
      store.write((trx) => insertRecord(trx, `r${i}`, 'v')),
    );
    await store.close();
    assert.equal((await Promise.all(writes)).length, 50);
    await assert.rejects(
      store.write((trx) => insertRecord(trx, 'late', 'v')),
      isUnavailable,
    );
    const reopened = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS);
    try {
      assert.equal((await recordIds(reopened)).length, 50);
    } finally {
      await reopened.close();
    }
  });

  it('zeroes the WAL before SQLite deletes it on close, keeping the data in the database', async () => {
    const marker = `MARKER-${process.pid}-${Date.now()}`;
    await store.write((trx) => insertRecord(trx, 'secret', marker));
    const walLink = join(dir, 'wal-link');
    linkSync(`${path}-wal`, walLink); // same inode: shows what happens to the WAL's bytes
    assert.equal(readFileSync(walLink).includes(marker), true, 'the WAL holds the marker before close');
    await store.close();
    assert.equal(existsSync(`${path}-wal`), false); // SQLite removed it on close
    const wal = readFileSync(walLink);
    assert.notEqual(wal.length, 0);
    assert.equal(
      wal.findIndex((byte) => byte !== 0),
      -1,
      'the WAL still holds non-zero bytes',
    );
    store = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS);
    const row = await store.db
      .selectFrom('records')
      .select('value')
      .where('id', '=', 'secret')
      .executeTakeFirst();
    assert.equal(row?.value, marker);
  });

  it('leaves the WAL alone when another connection has the file open (a CLI beside the server): nothing is corrupted', async () => {
    for (let round = 0; round < 5; round++) {
      const other = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS);
      await other.write((trx) => insertRecord(trx, `before-${round}`, 'v'));
      // This store closes (checkpoint, and formerly: zero the WAL) while the other keeps writing.
      const writes = Array.from({ length: 40 }, (_, i) =>
        other.write((trx) => insertRecord(trx, `during-${round}-${i}`, 'v')),
      );
      await Promise.all([store.close(), ...writes]);
      await other.close();
      store = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS);
      const check = await sql<{ integrity_check: string }>`PRAGMA integrity_check`.execute(store.db);
      assert.deepEqual(
        check.rows.map((r) => r.integrity_check),
        ['ok'],
      );
      const ids = await recordIds(store);
      for (let i = 0; i < 40; i++) assert.ok(ids.includes(`during-${round}-${i}`), `during-${round}-${i}`);
    }
  });
});

interface DeferredDb {
  parents: { id: string };
  children: { id: string; parent: string };
}

const deferredForeignKey: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`CREATE TABLE parents (id TEXT PRIMARY KEY)`.execute(db);
    await sql`CREATE TABLE children (id TEXT PRIMARY KEY, parent TEXT NOT NULL REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`.execute(
      db,
    );
  },
};
