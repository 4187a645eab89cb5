/**
 * The connection pool every PostgreSQL store of Tresor uses, and what each of its connections is
 * set to before a query runs.
 *
 * Type parsing, so rows read the same as on SQLite (src/server/control-store.ts header):
 * - int8 (bigint columns, count(*)) and numeric (sum() of bigints) become JS numbers; a value past
 *   2^53 cannot be one exactly, so reading it throws rather than hand back a rounded number;
 * - bytea stays a Buffer (node-postgres' default); times are ISO text and booleans 0/1 in the
 *   tables themselves, so no parser touches them.
 *
 * Session settings: `synchronous_commit = on` on every connection (an acknowledged COMMIT waits for
 * its WAL flush; with `off` a crash loses the last commits though the callers were told they were
 * saved), and the search_path of the store the connection serves. Both are set at connection start
 * (startup options) and checked again each time a store borrows the connection: a pool may serve
 * several stores (the control store and every tenant's schema), and the search_path is what keeps a
 * tenant's unqualified queries inside its own schema.
 */

import type { PostgresPool, PostgresPoolClient } from 'kysely';
import pg from 'pg';

const INT8_OID = 20;
const NUMERIC_OID = 1700;

function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value))
    throw new RangeError(
      `a PostgreSQL int8 value is beyond 2^53 and cannot be read exactly (${text.length} digits)`,
    );
  return value;
}

function parseNumeric(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || (/^-?\d+$/.test(text) && !Number.isSafeInteger(value)))
    throw new RangeError('a PostgreSQL numeric value cannot be read exactly as a JS number');
  return value;
}

const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (format !== 'binary' && oid === INT8_OID) return parseInt8;
    if (format !== 'binary' && oid === NUMERIC_OID) return parseNumeric;
    return pg.types.getTypeParser(oid, format ?? 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** Pools made by createPgPool: only those parse types as the stores expect. */
const POOLS_OF_OURS = new WeakSet<pg.Pool>();

export interface PgPoolOptions {
  /**
   * Connections at most (default 10). Each store's writer holds one for its life (the control
   * store's, the tenant stores' shared one), so a shared pool needs those plus its readers.
   */
  max?: number;
  /** How long a use waits for a free connection before it fails (default 30 s): never for ever. */
  connectionTimeoutMillis?: number;
}

/** A pool for Tresor's stores: their type parsers, synchronous_commit on from the first query. */
export function createPgPool(url: string, options: PgPoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 30_000,
    types: TYPES,
    options: '-c synchronous_commit=on',
  });
  // An idle connection that breaks (a server restart) emits 'error' on the pool; unheard, Node
  // would end the process. The pool drops that connection and opens another on the next use.
  pool.on('error', () => {});
  POOLS_OF_OURS.add(pool);
  return pool;
}

export function assertTresorPool(pool: pg.Pool): void {
  if (!POOLS_OF_OURS.has(pool))
    throw new TypeError('a PostgreSQL store needs a pool made by createPgPool (its type parsers)');
}

/** Quotes an identifier for SQL text; callers pass only checked names (schema names we build). */
export function quoteIdent(name: string): string {
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(name)) throw new RangeError(`not a Tresor schema name: ${name}`);
  return `"${name}"`;
}

/** The search_path each pooled connection was last set to (keyed by the pg client itself). */
const SEARCH_PATHS = new WeakMap<object, string>();

const SET_SESSION =
  "SELECT set_config('search_path', $1, false), set_config('synchronous_commit', 'on', false)";

/** Sets the connection's search_path (and synchronous_commit) unless it has them already. */
export async function applySession(client: pg.PoolClient | pg.Client, searchPath: string): Promise<void> {
  if (SEARCH_PATHS.get(client) === searchPath) return;
  SEARCH_PATHS.delete(client);
  await client.query(SET_SESSION, [searchPath]);
  SEARCH_PATHS.set(client, searchPath);
}

/**
 * Kysely's view of `pool` for one store: every connection it hands out has the store's
 * search_path. `hold`, if given, runs before a connection is borrowed (it may wait: a tenant's
 * store being swapped by a restore; or throw to refuse: a tenant being destroyed) and returns what
 * to run once that connection is given back. end() does
 * nothing: the pool's owner ends it.
 */
export function sessionPool(
  pool: pg.Pool,
  searchPath: string,
  hold?: () => (() => void) | Promise<() => void>,
): PostgresPool {
  return {
    async connect(): Promise<PostgresPoolClient> {
      const unhold = (await hold?.()) ?? (() => {});
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        unhold();
        throw error;
      }
      try {
        await applySession(client, searchPath);
      } catch (error) {
        client.release(error instanceof Error ? error : true);
        unhold();
        throw error;
      }
      let released = false;
      return {
        query: client.query.bind(client) as PostgresPoolClient['query'],
        release(destroy?: boolean) {
          if (released) return;
          released = true;
          client.release(destroy);
          unhold();
        },
      };
    },
    async end() {},
  };
}

/** Where a store lives, for logs and `Store.location`: host, port, database and schema, no credentials. */
export function describeLocation(pool: pg.Pool, schema: string): string {
  const options = pool.options as {
    connectionString?: string;
    host?: string;
    port?: number;
    database?: string;
  };
  let { host, port, database } = options;
  if (options.connectionString !== undefined) {
    try {
      const url = new URL(options.connectionString);
      host = url.hostname || host;
      port = url.port === '' ? port : Number(url.port);
      database = decodeURIComponent(url.pathname.replace(/^\//, '')) || database;
    } catch {
      // A libpq key=value string: keep what the options say.
    }
  }
  return `postgresql://${host ?? 'localhost'}:${port ?? 5432}/${database ?? ''}#${schema}`;
}
