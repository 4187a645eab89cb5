/**
 * Reads the audit log tables (log-schema.ts) of a PostgreSQL control store for `tresor audit
 * verify`, the scheduled verification and the restore checks: the PostgreSQL counterpart of
 * log-reader.ts, with the same snapshot interface (AuditLogSnapshot).
 *
 * - One connection of its own, in ONE `REPEATABLE READ READ ONLY` transaction: checkpoints and
 *   entries come from one snapshot (the sequencer commits entries no later than the checkpoint
 *   that covers them), and the verifier cannot change what it checks. It reads beside a live
 *   server: PostgreSQL readers never block the sequencer's writes.
 * - Leaf blocks are read by index range (`idx >= from ORDER BY idx LIMIT n`, the primary key's
 *   order) with the stored level-0 hashes of the range, and handed out as a LeafBatch when the range
 *   is clean (leaf-batch-read.ts). Anything else goes leaf by leaf as a VerifyEntry, so a gap, a
 *   reordering or a missing hash is seen and reported by the verifier, never smoothed over.
 * - The URL may hold a password: no message here repeats it (`location` is the redacted form).
 */
import pg from 'pg';
import { TresorError } from '../errors.ts';
import { entriesOf, leafBatchesOf } from './leaf-batch-read.ts';
import { LEAF_BLOCK_SPAN } from './leaf-store.ts';
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
      const result = await client.query<{ n: string }>(
        'SELECT coalesce(sum(n), 0)::text AS n FROM audit_leaves',
      );
      return Number(result.rows[0]?.n ?? 0);
    },
    leafBatches: (rows = LEAF_BATCH_ROWS) => leafBatches(client, rows),
    async *entries() {
      for await (const item of leafBatches(client, LEAF_BATCH_ROWS)) yield* entriesOf(item);
    },
    async close() {
      await client.query('COMMIT').catch(() => undefined);
      await client.end().catch(() => undefined);
    },
  };
}

interface BlockRow {
  idx: string;
  n: number;
  block: Buffer;
}

/**
 * The leaf blocks (leaf-store.ts) along the primary key, a few thousand leaves at a time, each run
 * with the level-0 hashes of its index range, through leafBatchesOf (as the SQLite reader).
 */
async function* leafBatches(client: pg.Client, rows: number): AsyncIterableIterator<LeafBatch | VerifyEntry> {
  if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError('rows must be a positive integer');
  const perRead = Math.max(1, Math.ceil(rows / LEAF_BLOCK_SPAN));
  // idx as text: a bigint beyond 2^53 must not be rounded into another index.
  let from: bigint | null = null;
  for (;;) {
    const result: pg.QueryResult<BlockRow> = await client.query<BlockRow>(
      // ORDER BY the column, not the text alias of the select list (which would sort "128" before "64").
      `SELECT l.idx::text AS idx, l.n, l.block FROM audit_leaves l
        WHERE ($1::numeric IS NULL OR l.idx >= $1::numeric) ORDER BY l.idx LIMIT $2`,
      [from === null ? null : from.toString(), perRead],
    );
    const batch = result.rows.map((r) => ({ idx: Number(r.idx), n: Number(r.n), block: r.block }));
    const first = batch[0];
    const last = result.rows[result.rows.length - 1];
    const lastBlock = batch[batch.length - 1];
    if (first === undefined || last === undefined || lastBlock === undefined) return;
    const hashRows = await client.query<{ idx: string; hash: Buffer }>(
      'SELECT idx::text AS idx, hash FROM audit_nodes WHERE level = 0 AND idx >= $1::numeric AND idx < $2::numeric ORDER BY idx',
      [result.rows[0]?.idx, (BigInt(last.idx) + BigInt(lastBlock.n)).toString()],
    );
    const byIndex = new Map(hashRows.rows.map((r) => [Number(r.idx), r.hash]));
    yield* leafBatchesOf(batch, {
      range(start, count) {
        const parts: Buffer[] = [];
        for (let i = start; i < start + count; i++) {
          const hash = byIndex.get(i);
          if (hash === undefined || hash.length !== 32) return null;
          parts.push(hash);
        }
        return Buffer.concat(parts).toString('latin1');
      },
      one: (index) => byIndex.get(index) ?? null,
    });
    if (result.rows.length < perRead) return;
    from = BigInt(last.idx) + 1n;
  }
}

/** A driver error's reason, without anything it might quote of the connection string. */
function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  // node-postgres messages name hosts, users and databases, never the password; still, strip any URL.
  const safe = message.replace(/postgres(?:ql)?:\/\/\S*/gi, '[database url]');
  return typeof code === 'string' ? `${safe} (${code})` : safe;
}
