/**
 * TEST-ONLY. Reads a stack's tables behind the server's back, on either backend: the tenant's
 * SQLite file (read-only) or, on PostgreSQL, the stack's database with the tenant's schema (or the
 * control store's, `tresor`) as the whole search_path. The SQL is what both backends accept; its
 * parameters are written `?` (numbered `$1…` here for PostgreSQL).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { TresorStack } from './tresor-stack.ts';

type Row = Record<string, unknown>;

/** `?` → `$1`, `$2`… (the tests' SQL holds no `?` inside a string literal). */
function numbered(text: string): string {
  let n = 0;
  return text.replace(/\?/g, () => `$${++n}`);
}

async function pgRows<R extends Row>(
  url: string,
  schema: string,
  text: string,
  params: unknown[],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await client.query("SELECT set_config('search_path', $1, false)", [pg.escapeIdentifier(schema)]);
    return (await client.query<R>(numbered(text), params)).rows;
  } finally {
    await client.end();
  }
}

function sqliteRows<R extends Row>(path: string, text: string, params: unknown[]): R[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(text).all(...params) as R[];
  } finally {
    db.close();
  }
}

/** Rows of `text` run in tenant `tenant`'s store. */
export async function tenantRows<R extends Row>(
  stack: Pick<TresorStack, 'dataDir' | 'database'>,
  tenant: string,
  text: string,
  params: unknown[] = [],
): Promise<R[]> {
  if (stack.database.kind === 'postgres') return pgRows(stack.database.url, `tenant_${tenant}`, text, params);
  return sqliteRows(join(stack.dataDir, 'tenants', `${tenant}.sqlite`), text, params);
}

/** Rows of `text` run in the control store. */
export async function controlRows<R extends Row>(
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
