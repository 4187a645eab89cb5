/**
 * Where the live audit log starts: the archived end E, below which the control store no longer holds
 * the leaves, the tenant index or the level 0–7 nodes of the log — those entries live only in sealed
 * segments on the backup destinations (segment.ts; docs/audit.md, "Sealed segments").
 *
 * E is the one row of `audit_archived (id INTEGER PRIMARY KEY CHECK (id = 1), end_idx INTEGER NOT
 * NULL)`. A store without that table (older than its migration) or without the row has archived
 * nothing: E = 0. The readers here tolerate the table's absence by looking it up first, never by a
 * failing query (on PostgreSQL a failed statement would end the reader's transaction).
 *
 * E is read-only here: the verifier and the readers must not be able to move it.
 */
import Database from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import { TresorError } from '../errors.ts';
import { dialectOf } from '../store/dialect.ts';
import { TILE_WIDTH } from './tiles.ts';

export const ARCHIVED_TABLE = 'audit_archived';

/** Checks a stored end: a non-negative multiple of the tile width (segments cover whole tiles). */
export function checkArchivedEnd(value: unknown): number {
  const end = typeof value === 'string' || typeof value === 'bigint' ? Number(value) : value;
  if (typeof end !== 'number' || !Number.isSafeInteger(end) || end < 0 || end % TILE_WIDTH !== 0)
    throw new TresorError(
      'TRESOR_ERR_AUDIT_STORE_UNREADABLE',
      `${ARCHIVED_TABLE}.end_idx is not a multiple of ${TILE_WIDTH}: the archived end is unreadable`,
    );
  return end;
}

// biome-ignore lint/suspicious/noExplicitAny: the table may not be in the caller's schema type
type AnyDb = Kysely<any>;

/**
 * E from a control store's Kysely or a transaction of it: the one reader for the server (its cursor,
 * read at start and, on PostgreSQL, every 2 s), pruning (log-prune.ts), the verify job, the metrics
 * and the access review. 0 without the table or row (a store the CLI opens may predate the
 * migration; costs one catalogue lookup more than a bare SELECT); a value that is not whole tiles
 * is an unreadable store, never a guess.
 */
export async function readArchivedEnd(db: AnyDb): Promise<number> {
  const exists =
    dialectOf(db) === 'postgres'
      ? await sql<{ found: boolean }>`SELECT to_regclass(${ARCHIVED_TABLE}) IS NOT NULL AS found`.execute(db)
      : await sql<{ found: number }>`SELECT count(*) AS found FROM sqlite_master
            WHERE type = 'table' AND name = ${ARCHIVED_TABLE}`.execute(db);
  if (!exists.rows[0]?.found) return 0;
  const row = await sql<{ end_idx: unknown }>`SELECT end_idx FROM audit_archived WHERE id = 1`.execute(db);
  const first = row.rows[0];
  return first === undefined ? 0 : checkArchivedEnd(first.end_idx);
}

/** E from a SQLite control store file, opened read-only (tresor audit verify / export). */
export function readArchivedEndOfFile(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const found = db
      .prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
      .pluck()
      .get(ARCHIVED_TABLE) as number;
    if (found === 0) return 0;
    const end = db.prepare('SELECT end_idx FROM audit_archived WHERE id = 1').pluck().get();
    return end === undefined ? 0 : checkArchivedEnd(end);
  } finally {
    db.close();
  }
}

/**
 * E from a PostgreSQL control store, on a connection of its own, read-only; `shown` is the URL as
 * messages may show it (no password).
 */
export async function readArchivedEndOfPg(options: {
  url: string;
  shown: string;
  schema: string;
}): Promise<number> {
  const client = new pg.Client({ connectionString: options.url });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('BEGIN READ ONLY');
    await client.query(`SET LOCAL search_path TO ${pg.escapeIdentifier(options.schema)}`);
    const found = await client.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [
      ARCHIVED_TABLE,
    ]);
    if (found.rows[0]?.found !== true) return 0;
    const row = await client.query<{ end_idx: string }>(
      'SELECT end_idx::text AS end_idx FROM audit_archived WHERE id = 1',
    );
    const first = row.rows[0];
    return first === undefined ? 0 : checkArchivedEnd(first.end_idx);
  } catch (error) {
    if (error instanceof TresorError) throw error;
    throw new TresorError(
      'TRESOR_ERR_AUDIT_STORE_UNREADABLE',
      `cannot read the archived end from ${options.shown} (${(error as { code?: string }).code ?? 'error'})`,
    );
  } finally {
    await client.query('COMMIT').catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}
