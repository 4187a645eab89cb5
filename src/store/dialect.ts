/**
 * Which SQL dialect a Kysely (or a transaction) speaks, for the few queries that cannot be written
 * once for both backends: statements precompiled for speed (their placeholders differ: `?` on
 * SQLite, `$n` on PostgreSQL) and functions only one backend has (json_extract on SQLite, ->> on
 * PostgreSQL). The branch stays next to the query that needs it.
 */
import { CompiledQuery, PostgresAdapter } from 'kysely';

export type SqlDialect = 'sqlite' | 'postgres';

interface HasExecutor {
  getExecutor(): { readonly adapter: unknown };
}

export function dialectOf(db: HasExecutor): SqlDialect {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite';
}

/**
 * A fixed statement written once with `?` placeholders (no `?` inside its literals), kept in both
 * forms so neither is built again per call.
 */
export class FixedStatement {
  readonly #sqlite: string;
  readonly #postgres: string;

  constructor(sqliteText: string) {
    if (/'[^']*\?[^']*'/.test(sqliteText))
      throw new RangeError('a fixed statement has no ? inside a literal');
    this.#sqlite = sqliteText;
    let n = 0;
    this.#postgres = sqliteText.replace(/\?/g, () => `$${++n}`);
  }

  /** The compiled query for `db`'s dialect with these parameters. */
  compile(db: HasExecutor, parameters: readonly unknown[]): CompiledQuery {
    return CompiledQuery.raw(dialectOf(db) === 'postgres' ? this.#postgres : this.#sqlite, [...parameters]);
  }
}
