/**
 * Kysely's SqliteDialect with the two changes a Tresor store needs:
 * - `beginImmediate`: transactions start with BEGIN IMMEDIATE, which takes the write lock up front,
 *   so a group-commit batch never fails half-way on a lock upgrade (SQLITE_BUSY) after its jobs ran.
 * - `onAcquire`/`onRelease`: the store learns when its single connection is in use, so close() can
 *   wait for reads in flight instead of closing the file under them.
 * - prepared statements are cached per connection: Kysely's driver prepares every query anew, which
 *   cost a third of group-commit throughput (measured: 30k → 43k writes/s).
 */
import type Database from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type SqliteDatabase,
  SqliteDialect,
} from 'kysely';

export interface TresorSqliteDialectOptions {
  beginImmediate?: boolean;
  onAcquire?: () => void;
  onRelease?: () => void;
}

export class TresorSqliteDialect extends SqliteDialect {
  readonly #options: TresorSqliteDialectOptions;

  constructor(database: Database.Database, options: TresorSqliteDialectOptions = {}) {
    super({ database: withStatementCache(database) });
    this.#options = options;
  }

  override createDriver(): Driver {
    const inner = super.createDriver();
    const { beginImmediate = false, onAcquire, onRelease } = this.#options;
    return {
      init: () => inner.init(),
      async acquireConnection() {
        const connection = await inner.acquireConnection();
        onAcquire?.();
        return connection;
      },
      async releaseConnection(connection: DatabaseConnection) {
        onRelease?.();
        await inner.releaseConnection(connection);
      },
      async beginTransaction(connection, settings) {
        if (!beginImmediate) return inner.beginTransaction(connection, settings);
        await connection.executeQuery(CompiledQuery.raw('begin immediate'));
      },
      commitTransaction: (connection) => inner.commitTransaction(connection),
      rollbackTransaction: (connection) => inner.rollbackTransaction(connection),
      savepoint: (connection, name, compile) => savepointOf(inner, 'savepoint')(connection, name, compile),
      rollbackToSavepoint: (connection, name, compile) =>
        savepointOf(inner, 'rollbackToSavepoint')(connection, name, compile),
      releaseSavepoint: (connection, name, compile) =>
        savepointOf(inner, 'releaseSavepoint')(connection, name, compile),
      destroy: () => inner.destroy(),
    };
  }
}

type SavepointMethod = 'savepoint' | 'rollbackToSavepoint' | 'releaseSavepoint';

function savepointOf(driver: Driver, method: SavepointMethod): NonNullable<Driver[SavepointMethod]> {
  const fn = driver[method];
  if (!fn) throw new Error(`the SQLite driver has no ${method}`);
  return fn.bind(driver);
}

/** Prepared statements kept per connection; Kysely would otherwise prepare every query anew. */
const STATEMENT_CACHE_SIZE = 256;

function withStatementCache(database: Database.Database): SqliteDatabase {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => {
      cache.clear();
      database.close();
    },
    prepare(sql: string) {
      const cached = cache.get(sql);
      // A statement still stepping (an unfinished iterate()) cannot be reused: prepare another.
      if (cached && !cached.busy) {
        cache.delete(sql);
        cache.set(sql, cached);
        return cached;
      }
      const statement = database.prepare(sql);
      cache.set(sql, statement);
      if (cache.size > STATEMENT_CACHE_SIZE) {
        const oldest = cache.keys().next().value;
        if (oldest !== undefined) cache.delete(oldest);
      }
      return statement;
    },
  };
}
