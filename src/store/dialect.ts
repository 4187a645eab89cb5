/**
 * Which SQL dialect a Kysely (or a transaction) speaks, for the few queries that cannot be written
 * once for both backends: statements precompiled for speed (their placeholders differ: `?` on
 * SQLite, `$n` on PostgreSQL) and functions only one backend has (json_extract on SQLite, ->> on
 * PostgreSQL). The branch stays next to the query that needs it.
 */
import { CompiledQuery, PostgresAdapter, type RawBuilder, sql } from 'kysely';

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

/**
 * The text at `path` inside the JSON text of `column` (null when absent): SQLite's
 * json_extract(column, '$.a.b'), PostgreSQL's (column::jsonb #>> '{a,b}').
 */
export function jsonText(
  dialect: SqlDialect,
  column: string,
  path: readonly string[],
): RawBuilder<string | null> {
  if (
    !/^[a-z_][a-z0-9_]*$/.test(column) ||
    path.length === 0 ||
    !path.every((p) => /^[A-Za-z][A-Za-z0-9]*$/.test(p))
  )
    throw new RangeError('jsonText takes a column name and a path of plain keys');
  return dialect === 'postgres'
    ? sql.raw<string | null>(`(${column}::jsonb #>> '{${path.join(',')}}')`)
    : sql.raw<string | null>(`json_extract(${column}, '$.${path.join('.')}')`);
}
