/**
 * A fresh PostgreSQL database for the bench's PostgreSQL rows (`--only http-pg`), on the server of
 * `--pg-url` (default the machine's PostgreSQL, 127.0.0.1:5432, user postgres): made from template0
 * with UTF8 and the C collation, as Tresor's stores require (src/store/pg/checks.ts), and dropped at
 * the end of the run. Tresor and the baseline each get their own database on the same server, so
 * they share the engine, its WAL device and its settings, and neither sees the other's tables.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const DEFAULT_PG_URL = 'postgresql://postgres@127.0.0.1:5432/postgres';

export interface BenchDatabase {
  url: string;
  drop(): Promise<void>;
}

async function onServer(serverUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `PostgreSQL is not reachable at ${new URL(serverUrl).host} (${(error as Error).message}): start it, or leave out http-pg`,
    );
  }
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** Creates `tresor_bench_<label>_<random>` on the server of `serverUrl`. */
export async function benchDatabase(serverUrl: string, label: string): Promise<BenchDatabase> {
  const name = `tresor_bench_${label}_${randomBytes(4).toString('hex')}`;
  await onServer(
    serverUrl,
    `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`,
  );
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => onServer(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}
