/**
 * Where the audit log's leaves are stored, and the only code that reads or writes them there
 * (log-schema.ts has the tables, leaf-codec.ts the block format):
 *
 *   audit_leaves          idx (first leaf index), n (leaves), block: leaves idx … idx + n - 1,
 *                         compressed together (leaf-codec.ts)
 *   audit_tenants         ref (a small integer), tenant: each tenant id the log names, once
 *   audit_tenant_entries  (ref, idx) per entry that names a tenant: a tenant's entries in order
 *
 * Blocks never cross a multiple of LEAF_BLOCK_SPAN, and a 64-aligned range is ONE block: a pass that
 * appends to a log ending inside a range rewrites that range's block with the new leaves added (the
 * one change the table's triggers allow: the same idx, more leaves). So however small the sequencer's
 * batches, a finished range costs one inflate to read, and a range [k·64, m·64) is whole blocks (what
 * pruning an archived range deletes).
 *
 * Writing: leafStatements (the sequencer's pass, log-append.ts). Reading: readLeaves (a range),
 * readTenantLeaves (a tenant's), storedLogSize, and the verifier's readers (log-reader.ts,
 * log-reader-pg.ts) through leaf-batch-read.ts.
 */
import type { Kysely } from 'kysely';
import { encodeLeafBlock, leafTexts } from './leaf-codec.ts';
import type { WithAuditLog } from './log-schema.ts';

/** Leaves per block at most; a block lies inside one range [k·SPAN, (k + 1)·SPAN). */
export const LEAF_BLOCK_SPAN = 64;

export interface LeafStatement {
  sql: string;
  parameters: unknown[];
}

/** The partial block a log ends with: its first index and its leaves. */
export interface LeafTail {
  idx: number;
  leaves: string[];
}

/** One stored block row. */
export interface LeafBlockRow {
  idx: number;
  n: number;
  block: Uint8Array;
}

/** The statement reading the block that a log of `size` entries ends inside, or null when it ends on a boundary. */
export function tailBlockQuery(size: number): LeafStatement | null {
  if (size % LEAF_BLOCK_SPAN === 0) return null;
  return {
    sql: 'SELECT idx, n, block FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx',
    parameters: [size - (size % LEAF_BLOCK_SPAN), size],
  };
}

/** The tail from tailBlockQuery's rows: exactly one block, ending at `size`; anything else is refused. */
export function tailOf(rows: readonly LeafBlockRow[], size: number): LeafTail | null {
  if (size % LEAF_BLOCK_SPAN === 0) return null;
  const row = rows[0];
  const idx = row === undefined ? Number.NaN : Number(row.idx);
  const leaves = row === undefined ? [] : leafTexts(row.block);
  if (rows.length !== 1 || idx + leaves.length !== size || leaves.length !== Number(row?.n))
    throw new Error(`the audit log's last leaf block does not end at its size ${size}`);
  return { idx, leaves };
}

/**
 * The statements that store entries [idx, tenant, leaf] (consecutive indices, the log's next ones)
 * after `tail` (tailOf of the log as it stands): one block per 64-aligned range, the first one
 * rewriting the tail's block when there is one; the tenants, and each tenanted entry's (ref, idx).
 */
export function leafStatements(
  entries: readonly (readonly [number, string | null, string])[],
  tail: LeafTail | null,
): LeafStatement[] {
  const first = entries[0];
  if (first === undefined) return [];
  const statements: LeafStatement[] = [];
  let leaves: string[] = [];
  let start = first[0];
  if (tail !== null) {
    if (tail.idx + tail.leaves.length !== first[0]) throw new Error('leaves must follow the log’s tail');
    leaves = [...tail.leaves];
    start = tail.idx;
  }
  const flush = () => {
    if (leaves.length === 0) return;
    statements.push({
      // An upsert: the tail's block is rewritten with its leaves and the new ones (the trigger lets it grow only).
      sql: 'INSERT INTO audit_leaves (idx, n, block) VALUES (?, ?, ?) ON CONFLICT (idx) DO UPDATE SET n = excluded.n, block = excluded.block',
      parameters: [start, leaves.length, encodeLeafBlock(leaves)],
    });
  };
  for (const [i, [idx, , leaf]] of entries.entries()) {
    if (idx !== first[0] + i) throw new Error('audit entries must have consecutive indices');
    if (idx % LEAF_BLOCK_SPAN === 0 && leaves.length > 0) {
      flush();
      leaves = [];
      start = idx;
    }
    leaves.push(leaf);
  }
  flush();
  const tenanted = entries.filter((e) => e[1] !== null) as (readonly [number, string, string])[];
  const tenants = [...new Set(tenanted.map((e) => e[1]))];
  for (const chunk of chunked(tenants, 64)) {
    statements.push({
      sql: `INSERT INTO audit_tenants (tenant) VALUES ${chunk.map(() => '(?)').join(', ')} ON CONFLICT (tenant) DO NOTHING`,
      parameters: chunk,
    });
  }
  for (const chunk of chunked(tenanted, 256)) {
    statements.push({
      sql: `WITH v (idx, tenant) AS (VALUES ${chunk.map(() => '(?, ?)').join(', ')})
            INSERT INTO audit_tenant_entries (ref, idx)
            SELECT t.ref, CAST(v.idx AS BIGINT) FROM v JOIN audit_tenants t ON t.tenant = v.tenant`,
      parameters: chunk.flatMap((e) => [e[0], e[1]]),
    });
  }
  return statements;
}

function chunked<T>(all: readonly T[], size: number): T[][] {
  const pieces: T[][] = [];
  // Chunks of a few fixed sizes, so a connection's statement cache holds them all.
  for (let at = 0; at < all.length; ) {
    let n = size;
    while (n > all.length - at) n = Math.max(1, n >> 2);
    pieces.push(all.slice(at, at + n));
    at += n;
  }
  return pieces;
}

/** The number of entries the log holds: the end of its last block (0 when empty). */
export async function storedLogSize(db: Kysely<WithAuditLog>): Promise<number> {
  const last = await db
    .selectFrom('audit_leaves')
    .select(['idx', 'n'])
    .orderBy('idx', 'desc')
    .limit(1)
    .executeTakeFirst();
  return last === undefined ? 0 : Number(last.idx) + Number(last.n);
}

export interface StoredLeaf {
  index: number;
  leaf: string;
}

/** The leaves of indices [from, to), in order (those stored). */
export async function readLeaves(db: Kysely<WithAuditLog>, from: number, to: number): Promise<StoredLeaf[]> {
  if (to <= from) return [];
  const rows = await db
    .selectFrom('audit_leaves')
    .select(['idx', 'n', 'block'])
    .where('idx', '>=', from - (from % LEAF_BLOCK_SPAN))
    .where('idx', '<', to)
    .orderBy('idx')
    .execute();
  const out: StoredLeaf[] = [];
  for (const row of rows) {
    const idx = Number(row.idx);
    for (const [i, leaf] of leafTexts(row.block).entries()) {
      const index = idx + i;
      if (index >= from && index < to) out.push({ index, leaf });
    }
  }
  return out;
}

/** The leaves of one tenant's entries with index ≥ from (and < below), in order, at most `limit`. */
export async function readTenantLeaves(
  db: Kysely<WithAuditLog>,
  tenant: string,
  options: { from: number; limit: number; below?: number },
): Promise<StoredLeaf[]> {
  let query = db
    .selectFrom('audit_tenant_entries as e')
    .innerJoin('audit_tenants as t', 't.ref', 'e.ref')
    .select('e.idx as idx')
    .where('t.tenant', '=', tenant)
    .where('e.idx', '>=', options.from);
  if (options.below !== undefined) query = query.where('e.idx', '<', options.below);
  const wanted = (await query.orderBy('e.idx').limit(options.limit).execute()).map((r) => Number(r.idx));
  // The 64-aligned ranges holding them, each as [its start, the last wanted index in it].
  const ranges = new Map<number, number>();
  for (const idx of wanted) ranges.set(idx - (idx % LEAF_BLOCK_SPAN), idx);
  const leaves = new Map<number, string>();
  const all = [...ranges];
  for (let at = 0; at < all.length; at += 64) {
    const rows = await db
      .selectFrom('audit_leaves')
      .select(['idx', 'n', 'block'])
      .where((eb) =>
        eb.or(all.slice(at, at + 64).map(([lo, hi]) => eb.and([eb('idx', '>=', lo), eb('idx', '<=', hi)]))),
      )
      .execute();
    for (const row of rows) {
      const idx = Number(row.idx);
      for (const [i, leaf] of leafTexts(row.block).entries()) leaves.set(idx + i, leaf);
    }
  }
  const out: StoredLeaf[] = [];
  for (const index of wanted) {
    const leaf = leaves.get(index);
    if (leaf !== undefined) out.push({ index, leaf });
  }
  return out;
}

/** The `tenant` an entry's leaf names (null for none): the same value the sequencer indexed it under. */
export function tenantOfLeaf(leaf: string): string | null {
  const tenant = (JSON.parse(leaf) as { tenant?: unknown }).tenant;
  return typeof tenant === 'string' ? tenant : null;
}
