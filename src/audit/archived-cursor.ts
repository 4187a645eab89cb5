/**
 * How far the live audit log has been pruned (log-prune.ts): `audit_archived` holds one row, the
 * index `end_idx` below which the live store may have dropped the log's leaves, tenant entries and
 * tree nodes of levels 0–7 because sealed segments (segment.ts) hold them on every backup destination.
 *
 * Migration audit-archived (SQLite control 0020, PostgreSQL control 0019) creates the cursor at 0 and
 * replaces the no-delete triggers of the log's tables with ones that allow a DELETE only below it:
 *
 *   audit_leaves          a block whose whole range lies below: idx + n <= end_idx
 *   audit_tenant_entries  an entry below: idx < end_idx
 *   audit_nodes           a node of level < 8 whose whole range lies below: (idx + 1)·2^level <= end_idx
 *
 * Nodes of level 8 and up stay: the tlog-tiles tiles of level 1 and up and every proof of a later
 * entry are made of them, while the level-0 tiles of an archived range (levels 0–7) are in its
 * segments. The cursor only grows, in steps of whole tiles (256 entries); it cannot be deleted, and
 * no other row can be inserted. UPDATE rules of the log's tables are unchanged. As the other
 * triggers of the log, these stop mistakes, not an attacker with the file.
 *
 * The cursor is read by readArchivedEnd (archived-end.ts), the one reader for the server, pruning,
 * the verify job and the access review.
 */
import { type Kysely, type Migration, sql } from 'kysely';
import { REFUSE_CHANGE_FUNCTION, refusingTrigger } from '../store/pg/refuse-change.ts';
import { TILE_WIDTH } from './tiles.ts';

/** Nodes below this level of an archived range may be pruned: they are the segments' level-0 tiles. */
export const PRUNABLE_NODE_LEVELS = 8;

export interface AuditArchivedTable {
  id: number;
  end_idx: number;
}

export interface WithAuditArchived {
  audit_archived: AuditArchivedTable;
}

const BELOW_ONLY = 'the audit log is append-only, only its archived part may be pruned';
const FORWARD = 'the archived cursor only advances by whole tiles';

/** The SQLite conditions under which a DELETE is refused, per table (OLD is the row). */
const CURSOR = '(SELECT end_idx FROM audit_archived WHERE id = 1)';
const REFUSED_DELETE: Record<string, string> = {
  audit_leaves: `OLD.idx + OLD.n > ${CURSOR}`,
  audit_tenant_entries: `OLD.idx >= ${CURSOR}`,
  audit_nodes: `OLD.level >= ${PRUNABLE_NODE_LEVELS} OR (OLD.idx + 1) * (1 << OLD.level) > ${CURSOR}`,
};

export const auditArchivedMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`CREATE TABLE audit_archived (id INTEGER PRIMARY KEY CHECK (id = 1), end_idx INTEGER NOT NULL)`.execute(
      db,
    );
    await sql`INSERT INTO audit_archived (id, end_idx) VALUES (1, 0)`.execute(db);
    const refuse = (trigger: string, event: string, table: string, message: string, when = '') =>
      sql
        .raw(
          `CREATE TRIGGER ${trigger} BEFORE ${event} ON ${table}${when === '' ? '' : ` WHEN ${when}`} BEGIN SELECT RAISE(ABORT, '${message}'); END`,
        )
        .execute(db);
    await refuse(
      'audit_archived_forward',
      'UPDATE',
      'audit_archived',
      FORWARD,
      `NEW.id IS NOT OLD.id OR NEW.end_idx < OLD.end_idx OR NEW.end_idx % ${TILE_WIDTH} <> 0`,
    );
    await refuse('audit_archived_no_delete', 'DELETE', 'audit_archived', FORWARD);
    await refuse('audit_archived_no_insert', 'INSERT', 'audit_archived', FORWARD);
    for (const [table, when] of Object.entries(REFUSED_DELETE)) {
      await sql.raw(`DROP TRIGGER ${table}_no_delete`).execute(db);
      await refuse(`${table}_no_delete`, 'DELETE', table, BELOW_ONLY, when);
    }
  },
};

/**
 * PostgreSQL's form: a trigger's WHEN cannot hold a subquery there, so the DELETE triggers call a
 * function that reads the cursor of the table's own schema and refuses what is not wholly below it.
 */
export const auditArchivedPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql
      .raw(
        `${REFUSE_CHANGE_FUNCTION}
        CREATE OR REPLACE FUNCTION tresor_refuse_unarchived_delete() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE archived bigint;
        DECLARE covered bigint;
        BEGIN
          EXECUTE format('SELECT end_idx FROM %I.audit_archived WHERE id = 1', TG_TABLE_SCHEMA) INTO archived;
          IF TG_TABLE_NAME = 'audit_leaves' THEN
            covered := OLD.idx + OLD.n;
          ELSIF TG_TABLE_NAME = 'audit_tenant_entries' THEN
            covered := OLD.idx + 1;
          ELSIF TG_TABLE_NAME = 'audit_nodes' AND OLD.level < ${PRUNABLE_NODE_LEVELS} THEN
            covered := (OLD.idx + 1) * (1::bigint << OLD.level);
          END IF;
          IF covered IS NULL OR covered > coalesce(archived, 0) THEN
            RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
          END IF;
          RETURN OLD;
        END
        $$;
        CREATE TABLE audit_archived (id integer PRIMARY KEY CHECK (id = 1), end_idx bigint NOT NULL);
        INSERT INTO audit_archived (id, end_idx) VALUES (1, 0);
        ${refusingTrigger('audit_archived_forward', 'audit_archived', 'UPDATE', FORWARD, `NEW.id IS DISTINCT FROM OLD.id OR NEW.end_idx < OLD.end_idx OR NEW.end_idx % ${TILE_WIDTH} <> 0`)}
        ${refusingTrigger('audit_archived_no_delete', 'audit_archived', 'DELETE', FORWARD)}
        CREATE TRIGGER audit_archived_no_insert BEFORE INSERT ON audit_archived FOR EACH ROW EXECUTE FUNCTION tresor_refuse_change('${FORWARD}');
        CREATE TRIGGER audit_archived_no_truncate BEFORE TRUNCATE ON audit_archived FOR EACH STATEMENT EXECUTE FUNCTION tresor_refuse_change('${FORWARD}');
        ${Object.keys(REFUSED_DELETE)
          .map(
            (table) => `DROP TRIGGER ${table}_no_delete ON ${table};
        CREATE TRIGGER ${table}_no_delete BEFORE DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION tresor_refuse_unarchived_delete('${BELOW_ONLY}');`,
          )
          .join('\n')}`,
      )
      .execute(db);
  },
};
