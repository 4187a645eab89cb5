/**
 * The audit log's leaves as rows of (idx, tenant, leaf), for tests that tamper with a stored log as an
 * attacker holding the file would: the leaves are stored in compressed blocks (src/audit/leaf-store.ts),
 * so a test reads them all, edits the rows and writes the tables again. The caller drops the
 * append-only triggers first. AuditLogFixture.tamper shows the leaves to the test as the earlier
 * table `audit_log` (idx, tenant, leaf) while it runs, and stores what the test left in it.
 */
import type Database from 'better-sqlite3';
import { encodeLeafBlock, leafTexts } from '../../src/audit/leaf-codec.ts';
import { LEAF_BLOCK_SPAN } from '../../src/audit/leaf-store.ts';

export interface LeafRow {
  idx: number;
  tenant: string | null;
  /** The leaf's text, or its bytes (a test storing bytes that are not UTF-8). */
  leaf: string | Buffer;
}

/** Every stored leaf, in index order. */
export function readLeafRows(db: Database.Database): LeafRow[] {
  const rows: LeafRow[] = [];
  const blocks = db.prepare('SELECT idx, n, block FROM audit_leaves ORDER BY idx').all() as {
    idx: number;
    block: Buffer;
  }[];
  for (const b of blocks)
    for (const [i, leaf] of leafTexts(b.block).entries())
      rows.push({ idx: b.idx + i, tenant: tenantOf(leaf), leaf });
  return rows;
}

/** Replaces the stored leaves by `rows` (runs of consecutive indices become blocks, as the sequencer writes them). */
export function writeLeafRows(db: Database.Database, rows: readonly LeafRow[]): void {
  db.exec('DELETE FROM audit_leaves; DELETE FROM audit_tenant_entries; DELETE FROM audit_tenants;');
  let run: LeafRow[] = [];
  const flush = () => {
    const first = run[0];
    if (first === undefined) return;
    // Blocks as leafStatements cuts them (at each multiple of LEAF_BLOCK_SPAN), leaves as given.
    for (let at = 0; at < run.length; ) {
      let end = at + 1;
      while (end < run.length && (run[end] as LeafRow).idx % LEAF_BLOCK_SPAN !== 0) end++;
      const piece = run.slice(at, end);
      db.prepare('INSERT INTO audit_leaves (idx, n, block) VALUES (?, ?, ?)').run(
        (piece[0] as LeafRow).idx,
        piece.length,
        encodeLeafBlock(piece.map((r) => r.leaf)),
      );
      at = end;
    }
    for (const r of run) {
      if (r.tenant === null) continue;
      db.prepare('INSERT INTO audit_tenants (tenant) VALUES (?) ON CONFLICT (tenant) DO NOTHING').run(
        r.tenant,
      );
      db.prepare(
        'INSERT INTO audit_tenant_entries (ref, idx) SELECT ref, ? FROM audit_tenants WHERE tenant = ?',
      ).run(r.idx, r.tenant);
    }
    run = [];
  };
  for (const r of rows) {
    const last = run[run.length - 1];
    if (last !== undefined && last.idx + 1 !== r.idx) flush();
    run.push(r);
  }
  flush();
}

/** Reads the rows, lets `edit` change them (in place, or by returning new ones), and writes them back. */
export function editLeafRows(db: Database.Database, edit: (rows: LeafRow[]) => LeafRow[] | undefined): void {
  const rows = readLeafRows(db);
  writeLeafRows(db, edit(rows) ?? rows);
}

/** The leaf of one index (undefined if none is stored). */
export function leafAt(db: Database.Database, idx: number): string | undefined {
  const leaf = readLeafRows(db).find((r) => r.idx === idx)?.leaf;
  return leaf === undefined ? undefined : leaf.toString();
}

function tenantOf(leaf: string): string | null {
  try {
    const t = (JSON.parse(leaf) as { tenant?: unknown }).tenant;
    return typeof t === 'string' ? t : null;
  } catch {
    return null;
  }
}
