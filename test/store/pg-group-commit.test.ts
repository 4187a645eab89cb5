/**
 * Group commit on PostgreSQL keeps the SQLite store's contract (group-commit.test.ts): one
 * transaction per batch, a savepoint per write, a failing write undoes only itself, a failing COMMIT
 * rejects the whole batch, writes commit in the order they were requested.
 */
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { type Kysely, type Migration, sql } from 'kysely';
import { TresorError } from '../../src/errors.ts';
import { openPgStore, type PgStore } from '../../src/store/pg/store.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';
import { insertRecord, RECORDS_PG_MIGRATIONS, type RecordsDb } from './fixtures/records.ts';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function rejectionCode(result: PromiseSettledResult<unknown>): string {
  if (result.status === 'fulfilled') return 'fulfilled';
  return result.reason instanceof TresorError ? result.reason.code : String(result.reason);
}

async function recordIds(store: PgStore<RecordsDb>): Promise<string[]> {
  const rows = await store.db.selectFrom('records').select('id').orderBy('id').execute();
  return rows.map((r) => r.id);
}

interface DeferredDb {
  parents: { id: string };
  children: { id: string; parent: string };
}

/** A foreign key checked only at COMMIT: a violation fails the whole batch there. */
const deferredForeignKey: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`CREATE TABLE parents (id text PRIMARY KEY);
      CREATE TABLE children (id text PRIMARY KEY,
        parent text NOT NULL REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`.execute(db);
  },
};

describe('PostgreSQL store group commit', () => {
  let database: FreshPgDatabase;
  let store: PgStore<RecordsDb>;
  let n = 0;

  before(async () => {
    database = await freshPgDatabase();
  });

  after(async () => {
    await database?.drop();
  });

  beforeEach(async () => {
    n += 1;
    store = await openPgStore<RecordsDb>({
      url: database.url,
      schema: `gc_${n}`,
      migrations: RECORDS_PG_MIGRATIONS,
    });
  });

  afterEach(async () => {
    await store.close();
  });

  it('commits 64 concurrent writes in one transaction, each caller getting its own result', async () => {
    const ids = Array.from({ length: 64 }, (_, i) => `r${String(i).padStart(2, '0')}`);
    const results = await Promise.all(ids.map((id) => store.write((trx) => insertRecord(trx, id, 'v'))));
    assert.deepEqual(results, ids);
    assert.equal(store.stats().batches, 1);
    assert.equal(store.stats().maxBatch, 64);
    assert.deepEqual(await recordIds(store), ids);
  });

  it('puts writes requested while a batch runs into the next batch', async () => {
    const started = deferred();
    const proceed = deferred();
    const first = store.write(async (trx) => {
      started.resolve();
      await proceed.promise;
      return insertRecord(trx, 'first', 'v');
    });
    await started.promise;
    const later = ['l1', 'l2', 'l3'].map((id) => store.write((trx) => insertRecord(trx, id, 'v')));
    proceed.resolve();
    assert.equal(await first, 'first');
    assert.deepEqual(await Promise.all(later), ['l1', 'l2', 'l3']);
    assert.equal(store.stats().batches, 2);
    assert.equal(store.stats().maxBatch, 3);
  });

  it('caps a batch at maxBatch jobs', async () => {
    const capped = await openPgStore<RecordsDb>({
      url: database.url,
      schema: `gc_${n}_capped`,
      migrations: RECORDS_PG_MIGRATIONS,
      maxBatch: 4,
    });
    try {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) => capped.write((trx) => insertRecord(trx, `c${i}`, 'v'))),
      );
      assert.equal(capped.stats().maxBatch, 4);
      assert.equal(capped.stats().batches, 3);
      assert.equal(capped.stats().jobs, 10);
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
    const events = await store.db.selectFrom('audit_events').select('event').execute();
    assert.deepEqual(events.map((e) => JSON.parse(e.event).target.recordIds[0]).sort(), ['a', 'c']);
  });

  it('rolls back a write whose SQL fails (a constraint; the transaction is aborted until ROLLBACK TO) without touching its batch-mates', async () => {
    await store.write((trx) => insertRecord(trx, 'dup', 'v'));
    const [a, b, c] = await Promise.allSettled([
      store.write((trx) => insertRecord(trx, 'a', 'v')),
      store.write((trx) => insertRecord(trx, 'dup', 'again')),
      store.write((trx) => insertRecord(trx, 'z', 'v')),
    ]);
    assert.equal(a.status, 'fulfilled');
    assert.equal(b.status, 'rejected');
    assert.match(
      String(b.status === 'rejected' && b.reason),
      /duplicate key value violates unique constraint/,
    );
    assert.equal(c.status, 'fulfilled');
    assert.equal(store.stats().batches, 2);
    assert.deepEqual(await recordIds(store), ['a', 'dup', 'z']);
  });

  it('commits writes in the order they were requested', async () => {
    const ran: string[] = [];
    const ids = Array.from({ length: 100 }, (_, i) => `q${String(i).padStart(3, '0')}`);
    await Promise.all(
      ids.map((id) =>
        store.write(async (trx) => {
          ran.push(id);
          return insertRecord(trx, id, 'v');
        }),
      ),
    );
    await store.write((trx) => insertRecord(trx, 'first', 'v'));
    const seen = await store.write(async (trx) => {
      const row = await trx.selectFrom('records').select('id').where('id', '=', 'first').executeTakeFirst();
      await insertRecord(trx, 'second', 'v');
      return row?.id;
    });
    assert.equal(seen, 'first');
    assert.deepEqual(ran, ids);
    const events = await store.db
      .selectFrom('audit_events')
      .select(['seq', 'event'])
      .orderBy('seq')
      .execute();
    const order = events.map((e) => JSON.parse(e.event).target.recordIds[0] as string);
    assert.deepEqual(order, [...ids, 'first', 'second']);
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
    assert.deepEqual(await recordIds(store), ['acked']);
    proceed.resolve();
    await pending;
    assert.deepEqual(await recordIds(store), ['acked', 'in-flight']);
  });

  it('rejects every write of a batch whose COMMIT fails, saves none of it, and recovers', async () => {
    const withParents = await openPgStore<RecordsDb & DeferredDb>({
      url: database.url,
      schema: `gc_${n}_fk`,
      migrations: { ...RECORDS_PG_MIGRATIONS, '0003-deferred-fk': deferredForeignKey },
    });
    try {
      const [a, b] = await Promise.allSettled([
        withParents.write((trx) => insertRecord(trx, 'a', 'v')),
        withParents.write((trx) =>
          trx.insertInto('children').values({ id: 'c', parent: 'missing' }).execute(),
        ),
      ]);
      assert.equal(rejectionCode(a), 'TRESOR_ERR_UNAVAILABLE');
      assert.equal(rejectionCode(b), 'TRESOR_ERR_UNAVAILABLE');
      assert.equal(withParents.stats().failedBatches, 1);
      assert.equal(withParents.stats().lastFailure, '23503'); // foreign_key_violation
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
    assert.equal(rejectionCode(a), 'TRESOR_ERR_UNAVAILABLE');
    assert.equal(b.status, 'rejected');
    assert.deepEqual(c, { status: 'fulfilled', value: 'c' });
    assert.equal(store.stats().batches, 2);
    assert.deepEqual(await recordIds(store), ['c']);
  });

  it("runs each write in its caller's async context, not in the writer's", async () => {
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

  it('finishes queued writes on close(), then refuses new ones', async () => {
    const queued = ['x1', 'x2', 'x3'].map((id) => store.write((trx) => insertRecord(trx, id, 'v')));
    await store.close();
    assert.deepEqual(await Promise.all(queued), ['x1', 'x2', 'x3']);
    await assert.rejects(
      store.write((trx) => insertRecord(trx, 'late', 'v')),
      (error: unknown) => error instanceof TresorError && error.code === 'TRESOR_ERR_UNAVAILABLE',
    );
    const check = await openPgStore<RecordsDb>({
      url: database.url,
      schema: `gc_${n}`,
      migrations: RECORDS_PG_MIGRATIONS,
    });
    try {
      assert.deepEqual(await recordIds(check), ['x1', 'x2', 'x3']);
    } finally {
      await check.close();
    }
  });

  it('reads int8 as numbers (count(*), identity seq) and refuses one past 2^53 rather than round it', async () => {
    await store.write((trx) => insertRecord(trx, 'a', 'v'));
    const { rows } = await sql<{
      n: unknown;
      seq: unknown;
    }>`SELECT count(*) AS n, max(seq) AS seq FROM audit_events`.execute(store.db);
    assert.deepEqual(rows, [{ n: 1, seq: 1 }]);
    const safe = await sql<{ v: unknown }>`SELECT ${Number.MAX_SAFE_INTEGER}::int8 AS v`.execute(store.db);
    assert.equal(safe.rows[0]?.v, Number.MAX_SAFE_INTEGER);
    await assert.rejects(sql`SELECT 9007199254740993::int8 AS v`.execute(store.db), /beyond 2\^53/);
    const bytes = await sql<{ b: unknown }>`SELECT '\\x00ff'::bytea AS b`.execute(store.db);
    assert.ok(Buffer.isBuffer(bytes.rows[0]?.b));
    assert.deepEqual([...((bytes.rows[0]?.b as Buffer | undefined) ?? [])], [0, 255]);
  });
});
