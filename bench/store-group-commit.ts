/**
 * Group commit against one transaction per write, on the same SQLite file settings (WAL,
 * synchronous=FULL): `concurrency` loops each write a 1 KiB record and its audit event.
 *
 *   naive    one BEGIN IMMEDIATE…COMMIT (one fsync) per write — the store's first version, with the
 *            same connection settings and statement cache
 *   grouped  openSqliteStore: concurrent writes share a transaction, each in its own savepoint
 *
 * Both run on a fresh file in a temporary folder (removed afterwards) on the same disk as `dir`:
 * fsync cost is the disk's, so run it where the data folder will live.
 *   npx tsx bench/store-group-commit.ts [seconds] [concurrency]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Kysely, type Migration, Migrator, type Transaction } from 'kysely';
import { appendAuditEvent, auditEventsMigration, type WithAuditEvents } from '../src/audit/event.ts';
import { TresorSqliteDialect } from '../src/store/sqlite/dialect.ts';
import { openSqlite } from '../src/store/sqlite/open.ts';
import { openSqliteStore } from '../src/store/sqlite/store.ts';
import type { Migrations } from '../src/store/types.ts';
import { measureAsync, type Rate } from './measure.ts';

interface BenchDb extends WithAuditEvents {
  records: { id: string; value: Buffer };
}

const recordsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('records')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('value', 'blob', (c) => c.notNull())
      .execute();
  },
};

const MIGRATIONS: Migrations = { '0001-audit': auditEventsMigration, '0002-records': recordsMigration };

export interface GroupCommitBench {
  /** Acknowledged writes per second, one transaction per write. */
  naive: number;
  /** Acknowledged writes per second with group commit. */
  grouped: number;
  concurrency: number;
  /** Mean jobs per transaction in the grouped run. */
  meanBatch: number;
  rates: { naive: Rate; grouped: Rate };
}

export interface GroupCommitBenchOptions {
  seconds: number;
  concurrency?: number;
  /** Folder for the temporary files (default the OS temp folder). */
  dir?: string;
}

function writeRecord(value: Buffer): (trx: Transaction<BenchDb>) => Promise<void> {
  return async (trx) => {
    const id = randomBytes(12).toString('hex');
    await trx.insertInto('records').values({ id, value }).execute();
    await appendAuditEvent(trx, {
      at: new Date().toISOString(),
      actor: { kind: 'system', id: 'bench' },
      tenant: 'bench',
      action: 'record.create',
      target: { collection: 'records', recordIds: [id] },
      outcome: 'success',
    });
  };
}

async function naiveRate(path: string, concurrency: number, seconds: number, value: Buffer): Promise<Rate> {
  // Same connection settings and statement cache as the store: only the transaction policy differs.
  const db = new Kysely<BenchDb>({
    dialect: new TresorSqliteDialect(openSqlite(path), { beginImmediate: true }),
  });
  try {
    const migrator = new Migrator({
      db: db as Kysely<unknown>,
      provider: { getMigrations: async () => MIGRATIONS },
    });
    const { error } = await migrator.migrateToLatest();
    if (error) throw error;
    const work = writeRecord(value);
    return await measureAsync(() => db.transaction().execute(work), concurrency, seconds);
  } finally {
    await db.destroy();
  }
}

async function groupedRate(
  path: string,
  concurrency: number,
  seconds: number,
  value: Buffer,
): Promise<{ rate: Rate; meanBatch: number }> {
  const store = await openSqliteStore<BenchDb>(path, MIGRATIONS);
  try {
    const work = writeRecord(value);
    const rate = await measureAsync(() => store.write(work), concurrency, seconds);
    const { jobs, batches } = store.stats();
    return { rate, meanBatch: batches > 0 ? jobs / batches : 0 };
  } finally {
    await store.close();
  }
}

export async function benchGroupCommit(options: GroupCommitBenchOptions): Promise<GroupCommitBench> {
  const concurrency = options.concurrency ?? 64;
  const folder = mkdtempSync(join(options.dir ?? tmpdir(), 'tresor-bench-store-'));
  const value = randomBytes(1024);
  try {
    const naive = await naiveRate(join(folder, 'naive.sqlite'), concurrency, options.seconds, value);
    const grouped = await groupedRate(join(folder, 'grouped.sqlite'), concurrency, options.seconds, value);
    return {
      naive: naive.opsPerSecond,
      grouped: grouped.rate.opsPerSecond,
      concurrency,
      meanBatch: grouped.meanBatch,
      rates: { naive, grouped: grouped.rate },
    };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seconds = Number(process.argv[2] ?? 3);
  const concurrency = Number(process.argv[3] ?? 64);
  const r = await benchGroupCommit({ seconds, concurrency });
  console.log(
    `concurrency ${r.concurrency}: naive ${r.naive.toFixed(0)} writes/s, grouped ${r.grouped.toFixed(0)} writes/s ` +
      `(×${(r.grouped / r.naive).toFixed(1)}, mean batch ${r.meanBatch.toFixed(1)})`,
  );
}
