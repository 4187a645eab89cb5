/**
 * The audit log's leaves as rows of (idx, tenant, leaf), for tests that tamper with a stored log as an
 * attacker holding the file would: the leaves are stored in compressed blocks (src/audit/leaf-store.ts),
 * so a test reads them all, edits the rows and writes the tables again. The caller drops the
 * append-only triggers first (AuditLogFixture.tamper does).
 */
import type Database from 'better-sqlite3';
import { leafTexts } from '../../src/audit/leaf-codec.ts';
import { leafStatements } from '../../src/audit/leaf-store.ts';

export interface LeafRow {
  idx: number;
  tenant: string | null;
  leaf: string;
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
  let run: [number, string | null, string][] = [];
  const flush = () => {
    for (const s of leafStatements(run, null)) db.prepare(s.sql).run(...(s.parameters as unknown[]));
    run = [];
  };
  for (const r of rows) {
    const last = run[run.length - 1];
    if (last !== undefined && last[0] + 1 !== r.idx) flush();
    run.push([r.idx, r.tenant, r.leaf]);
  }
  flush();
}

/** Reads the rows, lets `edit` change them (in place, or by returning new ones), and writes them back. */
export function editLeafRows(
  db: Database.Database,
  edit: (rows: LeafRow[]) => LeafRow[] | undefined | void,
): void {
  const rows = readLeafRows(db);
  writeLeafRows(db, edit(rows) ?? rows);
}

/** The leaf of one index (undefined if none is stored). */
export function leafAt(db: Database.Database, idx: number): string | undefined {
  return readLeafRows(db).find((r) => r.idx === idx)?.leaf;
}

function tenantOf(leaf: string): string | null {
  try {
    const t = (JSON.parse(leaf) as { tenant?: unknown }).tenant;
    return typeof t === 'string' ? t : null;
  } catch {
    return null;
  }
}
