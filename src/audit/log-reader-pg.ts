/**
 * Reads the audit log tables (log-schema.ts) of a PostgreSQL control store for `tresor audit
 * verify`, the scheduled verification and the restore checks: the PostgreSQL counterpart of
 * log-reader.ts, with the same snapshot interface (AuditLogSnapshot).
 *
 * - One connection of its own, in ONE `REPEATABLE READ READ ONLY` transaction: checkpoints and
 *   entries come from one snapshot (the sequencer commits entries no later than the checkpoint
 *   that covers them), and the verifier cannot change what it checks. It reads beside a live
 *   server: PostgreSQL readers never block the sequencer's writes.
 * - Rows are read by index range (`idx >= from ORDER BY idx LIMIT n`, the primary key's order), each
 *   with its stored level-0 hash, and handed out as a LeafBatch when the range is clean: consecutive
 *   indices and every row with a 32-byte hash. Anything else goes row by row as a VerifyEntry, so a
 *   gap, a reordering or a missing hash is seen and reported by the verifier, never smoothed over.
 * - The URL may hold a password: no message here repeats it (`location` is the redacted form).
 */
import pg from 'pg';
import { TresorError } from '../errors.ts';
import type { AuditLogSnapshot } from './log-reader.ts';
import type { LeafBatch, VerifyEntry } from './verify.ts';

/** Rows per batch, as the SQLite reader's. */
const LEAF_BATCH_ROWS = 4096;

export interface PgLogSnapshotOptions {
  /** The database URL (password included): for the client only. */
  url: string;
  /** The URL as messages may show it (password redacted). */
  shown: string;
  /** The schema holding the control store's tables, when not the connection's default. */
  schema?: string;
}

export async function openPgLogSnapshot(options: PgLogSnapshotOptions): Promise<AuditLogSnapshot> {
  const client = new pg.Client({ connectionString: options.url });
  // A failure of the connection while nobody awaits a query must not crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    throw new TresorError(
      'TRESOR_ERR_AUDIT_STORE_UNREADABLE',
      `cannot connect to ${options.shown}: ${reasonOf(error)}`,
    );
  }
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    if (options.schema !== undefined)
      await client.query(`SET LOCAL search_path TO ${pg.escapeIdentifier(options.schema)}`);
    // The snapshot is taken by the first query after BEGIN: take it now.
    await client.query('SELECT count(*) FROM audit_checkpoints');
  } catch (error) {
    await client.end().catch(() => undefined);
    throw new TresorError(
      'TRESOR_ERR_AUDIT_STORE_UNREADABLE',
      `${options.shown} holds no audit log: ${reasonOf(error)}`,
    );
  }
  return {
    location: options.shown,
    async checkpoints() {
      const result = await client.query<{ note: string }>('SELECT note FROM audit_checkpoints ORDER BY size');
      return result.rows.map((r) => r.note);
    },
    async size() {
      const result = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_log');
      return Number(result.rows[0]?.n ?? 0);
    },
    leafBatches: (rows = LEAF_BATCH_ROWS) => leafBatches(client, rows),
    async close() {
      await client.query('COMMIT').catch(() => undefined);
      await client.end().catch(() => undefined);
    },
  };
}

interface LogRow {
  idx: string;
  leaf: string;
  hash: Buffer | null;
}

async function* leafBatches(client: pg.Client, rows: number): AsyncIterableIterator<LeafBatch | VerifyEntry> {
  if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError('rows must be a positive integer');
  // idx as text: a bigint beyond 2^53 must not be rounded into another index.
  let from: bigint | null = null;
  for (;;) {
    const result: pg.QueryResult<LogRow> = await client.query<LogRow>(
      `SELECT l.idx::text AS idx, l.leaf, n.hash
         FROM audit_log l LEFT JOIN audit_nodes n ON n.level = 0 AND n.idx = l.idx
        WHERE ($1::numeric IS NULL OR l.idx >= $1::numeric)
        ORDER BY l.idx LIMIT $2`,
      [from === null ? null : from.toString(), rows],
    );
    const batch = result.rows;
    const first = batch[0];
    const last = batch[batch.length - 1];
    if (first === undefined || last === undefined) return;
    const clean = cleanBatch(batch);
    if (clean !== null) yield clean;
    else
      for (const row of batch) {
        yield { index: Number(row.idx), leaf: row.leaf, storedLeafHash: row.hash };
      }
    if (batch.length < rows) return;
    from = BigInt(last.idx) + 1n;
  }
}

/** The rows as one LeafBatch when they are consecutive from a safe index and each has its 32-byte hash. */
function cleanBatch(rows: readonly LogRow[]): LeafBatch | null {
  const first = Number(rows[0]?.idx);
  if (!Number.isSafeInteger(first) || first < 0 || !Number.isSafeInteger(first + rows.length)) return null;
  const parts: Buffer[] = [];
  const hashes: Buffer[] = [];
  const starts = new Uint32Array(rows.length + 1);
  const zero = Buffer.alloc(1);
  let at = 0;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as LogRow;
    if (row.idx !== String(first + i) || row.hash === null || row.hash.length !== 32) return null;
    const leaf = Buffer.from(row.leaf, 'utf8');
    // PostgreSQL text holds no 0x00, but the batch layout depends on it: checked, not assumed.
    if (leaf.includes(0)) return null;
    starts[i] = at;
    parts.push(zero, leaf);
    at += 1 + leaf.length;
    hashes.push(row.hash);
  }
  starts[rows.length] = at;
  parts.push(zero);
  return {
    first,
    count: rows.length,
    bytes: Buffer.concat(parts),
    starts,
    storedLeafHashes: Buffer.concat(hashes).toString('latin1'),
  };
}

/** A driver error's reason, without anything it might quote of the connection string. */
function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  // node-postgres messages name hosts, users and databases, never the password; still, strip any URL.
  const safe = message.replace(/postgres(?:ql)?:\/\/\S*/gi, '[database url]');
  return typeof code === 'string' ? `${safe} (${code})` : safe;
}
