/**
 * PostgreSQL backend of Store: one schema of one database per store (the control store's, or a
 * tenant's: tenant-stores.ts), with group commit (group-commit.ts).
 *
 * - Reads (`db`) use the pool; writes go through one dedicated connection (the group-commit
 *   writer). A read started after a write was acknowledged sees it (READ COMMITTED, the commit done).
 * - Opening checks the database (checks.ts: fsync on, synchronous_commit on, UTF8, byte-order
 *   collation) and refuses with a clear error otherwise, then applies the migrations not yet
 *   applied, in the store's schema, under Kysely's PostgreSQL migration lock (an advisory lock):
 *   two processes opening a new store at once apply each migration once, and the migrations of
 *   one run share one transaction, so a failing one leaves the schema as it was.
 */
import { Kysely, Migrator, PostgresDialect, sql, type Transaction } from 'kysely';
import type pg from 'pg';
import { TresorError } from '../../errors.ts';
import type { Migrations, Store } from '../types.ts';
import { assertUsableDatabase, factsFromRow, PG_FACTS_QUERY } from './checks.ts';
import { DEFAULT_MAX_BATCH, PgGroupCommit, type PgStoreStats } from './group-commit.ts';
import { assertTresorPool, createPgPool, describeLocation, quoteIdent, sessionPool } from './pool.ts';

export { DEFAULT_MAX_BATCH, type PgStoreStats } from './group-commit.ts';

export interface PgStore<DB> extends Store<DB> {
  stats(): PgStoreStats;
}

export interface PgStoreOptions {
  /** Either a connection URL (the store makes and ends its own pool)… */
  url?: string;
  /** …or a pool from createPgPool, shared with other stores (its owner ends it). */
  pool?: pg.Pool;
  /** The schema holding the store's tables and its migration history ('public', 'tresor', …). */
  schema: string;
  migrations: Migrations;
  /** Jobs per transaction at most (default 256). */
  maxBatch?: number;
}

export async function openPgStore<DB>(options: PgStoreOptions): Promise<PgStore<DB>> {
  const searchPath = quoteIdent(options.schema);
  const { pool, owned } = poolOf(options);
  const writer = new PgGroupCommit(pool, searchPath, options.maxBatch ?? DEFAULT_MAX_BATCH, options.schema);
  try {
    const db = writer.kysely<unknown>();
    await checkDatabase(db);
    await migrate(db, options.schema, options.migrations);
    const reader = new Kysely<DB>({ dialect: new PostgresDialect({ pool: sessionPool(pool, searchPath) }) });
    return new PgSchemaStore<DB>(
      describeLocation(pool, options.schema),
      reader,
      writer,
      owned ? pool : undefined,
    );
  } catch (error) {
    await writer.close();
    if (owned) await pool.end();
    throw error;
  }
}

export function poolOf(options: { url?: string; pool?: pg.Pool }): { pool: pg.Pool; owned: boolean } {
  if (options.pool !== undefined) {
    assertTresorPool(options.pool);
    return { pool: options.pool, owned: false };
  }
  if (options.url === undefined) throw new TypeError('a PostgreSQL store needs a url or a pool');
  return { pool: createPgPool(options.url), owned: true };
}

/** Refuses a database that would not keep acknowledged writes, or would order text unlike SQLite. */
export async function checkDatabase(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql.raw<Record<string, unknown>>(PG_FACTS_QUERY).execute(db);
  const row = rows[0];
  if (row === undefined)
    throw new TresorError(
      'TRESOR_ERR_CONFIG_INVALID',
      'PostgreSQL: the current database is not in pg_database',
    );
  assertUsableDatabase(factsFromRow(row));
}

/** Applies what is missing of `migrations` in `schema`, whose name is also the search_path in use. */
export async function migrate(db: Kysely<unknown>, schema: string, migrations: Migrations): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: schema,
  });
  const { error } = await migrator.migrateToLatest();
  if (error !== undefined) throw error;
}

class PgSchemaStore<DB> implements PgStore<DB> {
  readonly location: string;
  readonly db: Kysely<DB>;
  readonly #writer: PgGroupCommit;
  readonly #ownedPool: pg.Pool | undefined;
  #closed: Promise<void> | undefined;

  constructor(location: string, db: Kysely<DB>, writer: PgGroupCommit, ownedPool: pg.Pool | undefined) {
    this.location = location;
    this.db = db;
    this.#writer = writer;
    this.#ownedPool = ownedPool;
  }

  write<T>(work: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
    return this.#writer.write(undefined, work);
  }

  healthy(): Promise<boolean> {
    return this.#writer.healthy();
  }

  stats(): PgStoreStats {
    return this.#writer.stats();
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#writer.close();
      await this.db.destroy();
      await this.#ownedPool?.end();
    })();
    return this.#closed;
  }
}
