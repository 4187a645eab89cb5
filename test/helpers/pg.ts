/**
 * A fresh PostgreSQL database per test file, on the machine's PostgreSQL (127.0.0.1:5432, user
 * postgres, trust auth; TRESOR_TEST_PG_URL overrides the server's address). Made from template0 with
 * UTF8 and the C collation, as Tresor's stores require (src/store/pg/checks.ts). If PostgreSQL is
 * not running the helper fails, saying how to start it: PostgreSQL tests never skip.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

const SERVER_URL = process.env.TRESOR_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

const HOW_TO_START =
  'PostgreSQL is not reachable at 127.0.0.1:5432. Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start';

export interface FreshPgDatabase {
  /** The database's name (<prefix>_<random>). */
  name: string;
  /** A connection URL for it. */
  url: string;
  /** Drops the database, ending any connection still open to it. */
  drop(): Promise<void>;
}

/** Runs `statement` on the server's maintenance database, failing clearly if it is not up. */
export async function onServer(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`${HOW_TO_START} (${(error as Error).message})`);
  }
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/**
 * The prefix of every database the tests make: TRESOR_TEST_PG_PREFIX when set (so runs sharing one
 * PostgreSQL server, several developers' or helpers', keep to names of their own), else `fallback`.
 */
export function testPgPrefix(fallback: string): string {
  const fromEnv = process.env.TRESOR_TEST_PG_PREFIX;
  return fromEnv === undefined || fromEnv === '' ? fallback : fromEnv;
}

/**
 * Creates `<prefix>_<random>` from template0: UTF8, LC_COLLATE and LC_CTYPE C. The prefix is
 * `options.prefix`, else TRESOR_TEST_PG_PREFIX, else `pgstore`.
 */
export async function freshPgDatabase(
  options: { prefix?: string; collate?: string } = {},
): Promise<FreshPgDatabase> {
  const prefix = options.prefix ?? testPgPrefix('pgstore');
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(prefix))
    throw new RangeError('a database prefix is lower-case letters, digits, _');
  const collate = options.collate ?? 'C';
  if (!/^[A-Za-z0-9_.-]+$/.test(collate)) throw new RangeError('not a collation name');
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await onServer(
    `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE '${collate}' LC_CTYPE '${collate}'`,
  );
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    name,
    url: url.toString(),
    drop() {
      dropped ??= onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      return dropped;
    },
  };
}
