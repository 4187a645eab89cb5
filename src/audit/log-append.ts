/**
 * The statements of one sequencer pass's write to the control store: the entries (their leaves in
 * compressed blocks, leaf-store.ts), the
 * perfect subtrees they completed (audit_nodes) and each source's advanced cursor (audit_cursors), as
 * plain SQL with parameters, so the main thread (through the store's transaction) and the sequencer's
 * worker thread (through its own connection) write exactly the same rows. Multi-row inserts come in a
 * few fixed sizes so a connection's statement cache holds them all (the query builder's per-row work
 * was once most of a pass).
 */

import { type LeafTail, leafStatements } from './leaf-store.ts';

/** Rows per INSERT statement, largest first (3 parameters each, well under SQLite's 32,766). */
const CHUNK_SIZES = [256, 64, 16, 4, 1] as const;
const PLACEHOLDERS = new Map<number, string>(
  CHUNK_SIZES.map((rows) => [rows, Array.from({ length: rows }, () => '(?, ?, ?)').join(', ')]),
);

/** [start, count] pieces of `n` rows, each count one of CHUNK_SIZES. */
function chunksOf(n: number): [number, number][] {
  const pieces: [number, number][] = [];
  let start = 0;
  for (const size of CHUNK_SIZES) {
    while (n - start >= size) {
      pieces.push([start, size]);
      start += size;
    }
  }
  return pieces;
}

export interface LogStatement {
  sql: string;
  parameters: unknown[];
}

export interface LogAppend {
  /** The entries: [idx, tenant, leaf], consecutive indices from the log's size. */
  entries: readonly (readonly [number, string | null, string])[];
  /** The partial leaf block the log ends with (tailOf), which the first new leaves complete. */
  tail: LeafTail | null;
  /** audit_nodes rows: [level, idx, hash]. */
  nodes: readonly (readonly [number, number, Uint8Array])[];
  /** audit_cursors: each source's last moved outbox seq. */
  cursors: readonly (readonly [string, number])[];
}

export function logStatements(append: LogAppend): LogStatement[] {
  const statements: LogStatement[] = [];
  const rows = (table: string, columns: string, all: readonly (readonly unknown[])[]) => {
    for (const [start, count] of chunksOf(all.length)) {
      statements.push({
        sql: `INSERT INTO ${table} (${columns}) VALUES ${PLACEHOLDERS.get(count) as string}`,
        parameters: all.slice(start, start + count).flat(),
      });
    }
  };
  statements.push(...leafStatements(append.entries, append.tail));
  rows('audit_nodes', 'level, idx, hash', append.nodes);
  for (const [source, seq] of append.cursors) {
    statements.push({
      sql: 'INSERT INTO audit_cursors (source, seq) VALUES (?, ?) ON CONFLICT (source) DO UPDATE SET seq = excluded.seq',
      parameters: [source, seq],
    });
  }
  return statements;
}

/** `?` parameters as PostgreSQL's `$1, $2…` (the log's statements hold no `?` in literals). */
export function numbered(statement: string): string {
  let n = 0;
  return statement.replace(/\?/g, () => `$${++n}`);
}
