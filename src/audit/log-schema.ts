/**
 * The audit log's tables in the control store. The sequencer (src/audit/sequencer.ts) moves the
 * events that every store's `audit_events` outbox received, in one global order, into `audit_log`,
 * and keeps the RFC 9162 tree beside it so any proof is served with O(log² n) node reads.
 *
 *   audit_leaves       the leaves: each the entry's RFC 8785 canonical JSON — exactly the leaf bytes;
 *                      the entry names its own `index` — stored in compressed blocks of consecutive
 *                      leaves, with audit_tenants and audit_tenant_entries for a tenant's entries
 *                      (leaf-store.ts; before migration audit-leaf-blocks: audit_log, a row per leaf)
 *   audit_nodes        perfect-subtree roots: (level ℓ, idx i) covers leaves [i·2^ℓ, (i+1)·2^ℓ);
 *                      level 0 holds the leaf hashes SHA-256(0x00 ‖ leaf); levels 1–3 are not
 *                      stored (storedLevel): each is recomputed from at most 8 leaf hashes
 *   audit_checkpoints  every signed checkpoint (C2SP signed note) by tree size
 *   audit_cursors      per outbox (`control` or a tenant id), the last event seq already moved
 *
 * All only grow; triggers refuse UPDATE and DELETE (except cursors, which only advance, the log's
 * last leaf block, which grows by the leaves of its 64-aligned range, and the rows wholly below the
 * archived cursor, which pruning deletes: archived-cursor.ts, log-prune.ts).
 * The triggers stop mistakes, not an attacker with the file: that is what the signed checkpoints,
 * the witness and `tresor audit verify` are for.
 */
import { type Kysely, type Migration, sql } from 'kysely';
import { appendOnly, REFUSE_CHANGE_FUNCTION, refusingTrigger } from '../store/pg/refuse-change.ts';

/** The audit log's table before migration audit-leaf-blocks (leaf-blocks-migration.ts): a row per leaf. */
export interface AuditLogTable {
  idx: number;
  tenant: string | null;
  leaf: string;
}

export interface AuditLeavesTable {
  /** The index of the block's first leaf. */
  idx: number;
  /** The leaves it holds. */
  n: number;
  /** leaf-codec.ts: a codec byte and the compressed leaves. */
  block: Buffer;
}

export interface AuditTenantsTable {
  ref: number;
  tenant: string;
}

export interface AuditTenantEntriesTable {
  ref: number;
  idx: number;
}

export interface AuditNodesTable {
  level: number;
  idx: number;
  hash: Buffer;
}

export interface AuditCheckpointsTable {
  size: number;
  note: string;
  at: string;
}

export interface AuditCursorsTable {
  source: string;
  seq: number;
}

export interface WithAuditLog {
  audit_leaves: AuditLeavesTable;
  audit_tenants: AuditTenantsTable;
  audit_tenant_entries: AuditTenantEntriesTable;
  audit_nodes: AuditNodesTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_cursors: AuditCursorsTable;
}

const APPEND_ONLY = ['audit_log', 'audit_nodes', 'audit_checkpoints'] as const;

/** The lowest interior level audit_nodes holds (since migration audit-nodes-levels). */
export const FIRST_STORED_INTERIOR_LEVEL = 4;

/**
 * Whether audit_nodes holds nodes of `level`: the leaf hashes (level 0, which the verifier compares
 * with the leaves) and every level from FIRST_STORED_INTERIOR_LEVEL up. A node of level 1–3 is the
 * root of 2–8 leaf hashes, cheaper to recompute (≤ 7 node hashes) than to keep: they were 7/8 of the
 * interior rows, about 40 bytes per entry.
 */
export function storedLevel(level: number): boolean {
  return level === 0 || level >= FIRST_STORED_INTERIOR_LEVEL;
}

/**
 * Existing logs lose their level 1–3 rows (storedLevel): the append-only trigger is lifted for the
 * one DELETE and put back as it was, inside the migration's transaction.
 */
export const auditNodesLevelsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`DROP TRIGGER audit_nodes_no_delete`.execute(db);
    await sql`DELETE FROM audit_nodes WHERE level > 0 AND level < ${FIRST_STORED_INTERIOR_LEVEL}`.execute(db);
    await sql
      .raw(
        `CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END`,
      )
      .execute(db);
  },
};

export const auditNodesLevelsPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql
      .raw(
        `DROP TRIGGER audit_nodes_no_delete ON audit_nodes;
        DELETE FROM audit_nodes WHERE level > 0 AND level < ${FIRST_STORED_INTERIOR_LEVEL};
        ${refusingTrigger('audit_nodes_no_delete', 'audit_nodes', 'DELETE', 'the audit log is append-only')}`,
      )
      .execute(db);
  },
};

export const auditLogMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`CREATE TABLE audit_log (idx INTEGER PRIMARY KEY, tenant TEXT, leaf TEXT NOT NULL)`.execute(db);
    await sql`CREATE INDEX audit_log_tenant ON audit_log (tenant, idx)`.execute(db);
    await sql`CREATE TABLE audit_nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID`.execute(
      db,
    );
    await sql`CREATE TABLE audit_checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL, at TEXT NOT NULL)`.execute(
      db,
    );
    await sql`CREATE TABLE audit_cursors (source TEXT PRIMARY KEY, seq INTEGER NOT NULL)`.execute(db);
    for (const table of APPEND_ONLY) {
      await sql
        .raw(
          `CREATE TRIGGER ${table}_no_update BEFORE UPDATE ON ${table} BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END`,
        )
        .execute(db);
      await sql
        .raw(
          `CREATE TRIGGER ${table}_no_delete BEFORE DELETE ON ${table} BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END`,
        )
        .execute(db);
    }
    await sql`CREATE TRIGGER audit_cursors_forward BEFORE UPDATE ON audit_cursors WHEN NEW.seq < OLD.seq BEGIN SELECT RAISE(ABORT, 'audit cursors only advance'); END`.execute(
      db,
    );
  },
};

/** PostgreSQL's audit log tables: the same columns, bigint indexes and sizes, bytea hashes. */
export const auditLogPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql
      .raw(
        `${REFUSE_CHANGE_FUNCTION}
        CREATE TABLE audit_log (idx bigint PRIMARY KEY, tenant text, leaf text NOT NULL);
        CREATE INDEX audit_log_tenant ON audit_log (tenant, idx);
        CREATE TABLE audit_nodes (level integer NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY (level, idx));
        CREATE TABLE audit_checkpoints (size bigint PRIMARY KEY, note text NOT NULL, at text NOT NULL);
        CREATE TABLE audit_cursors (source text PRIMARY KEY, seq bigint NOT NULL);
        ${APPEND_ONLY.map((table) => appendOnly(table, 'the audit log is append-only')).join('\n')}
        ${refusingTrigger('audit_cursors_forward', 'audit_cursors', 'UPDATE', 'audit cursors only advance', 'NEW.seq < OLD.seq')}`,
      )
      .execute(db);
  },
};
