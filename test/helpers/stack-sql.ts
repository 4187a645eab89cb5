/**
 * TEST-ONLY. Reads a stack's tables behind the server's back, on either backend: the tenant's
 * SQLite file (read-only) or, on PostgreSQL, the stack's database with the tenant's schema (or the
 * control store's, `tresor`) as the whole search_path. The SQL is what both backends accept; its
 * parameters are written `?` (numbered `$1…` here for PostgreSQL).
 */

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { leafTexts } from '../../src/audit/leaf-codec.ts';
import { onServer, testPgPrefix } from './pg.ts';
import type { TresorStack } from './tresor-stack.ts';

type Row = Record<string, unknown>;

/** `?` → `$1`, `$2`… (the tests' SQL holds no `?` inside a string literal). */
function numbered(text: string): string {
  let n = 0;
  return text.replace(/\?/g, () => `$${++n}`);
}

async function pgRows<R extends object>(
  url: string,
  schema: string,
  text: string,
  params: unknown[],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await client.query("SELECT set_config('search_path', $1, false)", [pg.escapeIdentifier(schema)]);
    return (await client.query(numbered(text), params)).rows as R[];
  } finally {
    await client.end();
  }
}

function sqliteRows<R extends object>(path: string, text: string, params: unknown[]): R[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(text).all(...params) as R[];
  } finally {
    db.close();
  }
}

/** Rows of `text` run in tenant `tenant`'s store. */
export async function tenantRows<R extends object>(
  stack: Pick<TresorStack, 'dataDir' | 'database'>,
  tenant: string,
  text: string,
  params: unknown[] = [],
): Promise<R[]> {
  if (stack.database.kind === 'postgres') return pgRows(stack.database.url, `tenant_${tenant}`, text, params);
  return sqliteRows(join(stack.dataDir, 'tenants', `${tenant}.sqlite`), text, params);
}

/** Rows of `text` run in the control store. */
export async function controlRows<R extends object>(
  stack: Pick<TresorStack, 'dataDir' | 'database'>,
  text: string,
  params: unknown[] = [],
): Promise<R[]> {
  if (stack.database.kind === 'postgres') return pgRows(stack.database.url, 'tresor', text, params);
  return sqliteRows(join(stack.dataDir, 'control.sqlite'), text, params);
}

/** Whether tenant `tenant`'s store is there: its SQLite file, or its PostgreSQL schema. */
export async function tenantStoreExists(
  stack: Pick<TresorStack, 'dataDir' | 'database'>,
  tenant: string,
): Promise<boolean> {
  if (stack.database.kind === 'sqlite') return existsSync(join(stack.dataDir, 'tenants', `${tenant}.sqlite`));
  const rows = await pgRows(stack.database.url, 'tresor', 'SELECT 1 FROM pg_namespace WHERE nspname = ?', [
    `tenant_${tenant}`,
  ]);
  return rows.length > 0;
}

/** The TRESOR_* settings that point another server (or the CLI) at the stack's database. */
export function databaseEnv(stack: Pick<TresorStack, 'database'>): Record<string, string> {
  return stack.database.kind === 'postgres' ? { TRESOR_DATABASE_URL: stack.database.url } : {};
}

/** The database name of a PostgreSQL stack. */
function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

/**
 * A copy of a PostgreSQL stack's database (CREATE DATABASE … TEMPLATE: the server must be stopped,
 * PostgreSQL copies a database no one is connected to), named with the test prefix; drop() it.
 */
export async function copyStackDatabase(
  stack: Pick<TresorStack, 'database'>,
): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  if (stack.database.kind !== 'postgres') throw new Error('copyStackDatabase is for a PostgreSQL stack');
  const name = `${testPgPrefix('tresor_test')}_${randomBytes(6).toString('hex')}`;
  await onServer(`CREATE DATABASE ${name} TEMPLATE ${pg.escapeIdentifier(databaseName(stack.database.url))}`);
  const url = new URL(stack.database.url);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/** Puts a copy (copyStackDatabase) back in place of the stack's database (the server stopped). */
export async function restoreStackDatabase(stack: Pick<TresorStack, 'database'>, copy: { name: string }) {
  if (stack.database.kind !== 'postgres') throw new Error('restoreStackDatabase is for a PostgreSQL stack');
  const name = pg.escapeIdentifier(databaseName(stack.database.url));
  await onServer(`DROP DATABASE ${name} WITH (FORCE)`);
  await onServer(`CREATE DATABASE ${name} TEMPLATE ${pg.escapeIdentifier(copy.name)}`);
}

/** Runs `statements` on one connection to `url`, the control store's schema as search_path. */
export async function onDatabase(url: string, statements: { text: string; params?: unknown[] }[]) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await client.query("SELECT set_config('search_path', 'tresor', false)");
    const results: Row[][] = [];
    for (const { text, params = [] } of statements)
      results.push((await client.query(numbered(text), params)).rows);
    return results;
  } finally {
    await client.end();
  }
}

/** SQL on one store of a stack, over one connection kept open (many reads in a row). */
export interface StoreSql {
  all<R extends object = Row>(text: string, params?: unknown[]): Promise<R[]>;
  /** A change: the number of rows it changed. */
  run(text: string, params?: unknown[]): Promise<number>;
  close(): Promise<void>;
}

/**
 * Opens tenant `where.tenant`'s store, or the control store: the SQLite file (read-only unless
 * `write`: only with the server stopped) or a PostgreSQL connection with its schema as search_path.
 */
export async function openStoreSql(
  stack: Pick<TresorStack, 'dataDir' | 'database'>,
  where: { tenant: string } | 'control',
  options: { write?: boolean } = {},
): Promise<StoreSql> {
  if (stack.database.kind === 'postgres') {
    const client = new pg.Client({ connectionString: stack.database.url, connectionTimeoutMillis: 10_000 });
    await client.connect();
    const schema = where === 'control' ? 'tresor' : `tenant_${where.tenant}`;
    await client.query("SELECT set_config('search_path', $1, false)", [pg.escapeIdentifier(schema)]);
    return {
      all: async <R extends object>(text: string, params: unknown[] = []) =>
        (await client.query(numbered(text), params)).rows as R[],
      run: async (text, params = []) => (await client.query(numbered(text), params)).rowCount ?? 0,
      close: () => client.end(),
    };
  }
  const path =
    where === 'control'
      ? join(stack.dataDir, 'control.sqlite')
      : join(stack.dataDir, 'tenants', `${where.tenant}.sqlite`);
  const db = new Database(path, { readonly: options.write !== true, fileMustExist: true });
  return {
    all: async <R extends object>(text: string, params: unknown[] = []) =>
      db.prepare(text).all(...params) as R[],
    run: async (text, params = []) => db.prepare(text).run(...params).changes,
    close: async () => {
      db.close();
    },
  };
}

/**
 * On PostgreSQL, after a CHECKPOINT: every file of the stack's database, every WAL file of the
 * cluster, and pg_dump's output (as the file `pg_dump`). On SQLite: none (the stores are in the
 * data folder).
 */
export async function databaseFiles(
  stack: Pick<TresorStack, 'dataDir' | 'database'>,
  filesUnder: (dir: string) => { path: string; bytes: Buffer }[] = readFilesUnder,
): Promise<{ path: string; bytes: Buffer }[]> {
  if (stack.database.kind !== 'postgres') return [];
  const { url } = stack.database;
  const [where] = await controlRows<{ dir: string; oid: number }>(
    stack,
    "SELECT current_setting('data_directory') AS dir, oid FROM pg_database WHERE datname = current_database()",
  );
  if (!where) throw new Error('no data directory');
  await controlRows(stack, 'CHECKPOINT');
  const own = filesUnder(join(where.dir, 'base', String(where.oid)));
  const wal = filesUnder(join(where.dir, 'pg_wal'));
  if (own.length === 0 || wal.length === 0) throw new Error('the database’s files or the WAL were not found');
  // Not spawnSync: a blocked event loop would miss the server closing an idle kept-alive socket.
  const dump = await new Promise<Buffer>((resolve, reject) => {
    execFile(
      'pg_dump',
      ['--no-owner', url],
      { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, timeout: 120_000 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`pg_dump failed: ${stderr.toString('utf8')}`)) : resolve(stdout),
    );
  });
  return [...own, ...wal, { path: 'pg_dump', bytes: dump }];
}

/** Every file under `dir` and its bytes (a file removed while walking is skipped). */
export function readFilesUnder(dir: string): { path: string; bytes: Buffer }[] {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    try {
      if (entry.isDirectory()) out.push(...readFilesUnder(path));
      else if (entry.isFile()) out.push({ path, bytes: readFileSync(path) });
    } catch {
      // removed while we walked
    }
  }
  return out;
}

/** The audit log's leaves in index order, read from the control store's leaf blocks behind the server's back. */
export async function controlLeaves(stack: Pick<TresorStack, 'dataDir' | 'database'>): Promise<string[]> {
  const rows = await controlRows<{ block: Buffer }>(stack, 'SELECT block FROM audit_leaves ORDER BY idx');
  return rows.flatMap((row) => leafTexts(row.block));
}
