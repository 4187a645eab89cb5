/**
 * Where each sink's cursor is kept: `{nextIndex, checkpointSize}` — entries [0, nextIndex) and the
 * checkpoints of size ≤ checkpointSize are delivered (dispatcher.ts).
 *
 * - In the control store (`audit_sink_cursors`, one row per sink name), on both backends: the
 *   server's choice. On PostgreSQL the cursor is the cluster's, so the process that takes the
 *   sequencer's lease goes on delivering where the last holder's cursor was written. A save never
 *   moves a cursor back (a process that lost the lease and finishes its last delivery late cannot
 *   undo a newer holder's progress).
 * - In files of a folder, `<dir>/<name>.cursor.json` (tmp, fsync, rename, fsync folder): the
 *   dispatcher's default, and where cursors were kept before the table. The table adopts a sink's
 *   file cursor the first time it has no row of its own (`legacyDir`), so an upgrade re-delivers
 *   nothing.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { type Kysely, type Migration, sql, type Transaction } from 'kysely';

export interface SinkCursor {
  nextIndex: number;
  checkpointSize: number;
}

export interface SinkCursors {
  /** The sink's cursor; {0, 0} before its first delivery. Rejects when it cannot be read or trusted. */
  load(name: string): Promise<SinkCursor>;
  /** Durably records the sink's cursor (never behind what is recorded: see above). */
  save(name: string, cursor: SinkCursor): Promise<void>;
}

export interface AuditSinkCursorsTable {
  name: string;
  next_index: number;
  checkpoint_size: number;
  updated_at: string;
}

export interface WithAuditSinkCursors {
  audit_sink_cursors: AuditSinkCursorsTable;
}

export const auditSinkCursorsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`CREATE TABLE audit_sink_cursors (
      name TEXT PRIMARY KEY,
      next_index INTEGER NOT NULL CHECK (next_index >= 0),
      checkpoint_size INTEGER NOT NULL CHECK (checkpoint_size >= 0),
      updated_at TEXT NOT NULL
    )`.execute(db);
  },
};

/** PostgreSQL's audit_sink_cursors: the same table, the counters bigint. */
export const auditSinkCursorsPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`CREATE TABLE audit_sink_cursors (
      name text PRIMARY KEY,
      next_index bigint NOT NULL CHECK (next_index >= 0),
      checkpoint_size bigint NOT NULL CHECK (checkpoint_size >= 0),
      updated_at text NOT NULL
    )`.execute(db);
  },
};

/** What the table's cursors need of the control store: its reads and its (group-committed) writes. */
export interface SinkCursorStore {
  readonly db: Kysely<WithAuditSinkCursors>;
  write<T>(work: (trx: Transaction<WithAuditSinkCursors>) => Promise<T>): Promise<T>;
}

const ZERO: SinkCursor = { nextIndex: 0, checkpointSize: 0 };

/** The cursors in the control store's table; a sink without a row adopts its file in `legacyDir`. */
export function storedSinkCursors(
  store: SinkCursorStore,
  options: { legacyDir?: string; now?: () => Date } = {},
): SinkCursors {
  const now = options.now ?? (() => new Date());
  const legacy = options.legacyDir === undefined ? undefined : fileSinkCursors(options.legacyDir);
  const save = async (name: string, cursor: SinkCursor) => {
    const at = now().toISOString();
    await store.write((trx) =>
      trx
        .insertInto('audit_sink_cursors')
        .values({
          name,
          next_index: cursor.nextIndex,
          checkpoint_size: cursor.checkpointSize,
          updated_at: at,
        })
        .onConflict((oc) =>
          oc.column('name').doUpdateSet({
            // The larger of the two, written so both dialects read it (SQLite has no greatest()).
            next_index: sql`CASE WHEN excluded.next_index > audit_sink_cursors.next_index
              THEN excluded.next_index ELSE audit_sink_cursors.next_index END`,
            checkpoint_size: sql`CASE WHEN excluded.checkpoint_size > audit_sink_cursors.checkpoint_size
              THEN excluded.checkpoint_size ELSE audit_sink_cursors.checkpoint_size END`,
            updated_at: at,
          }),
        )
        .execute(),
    );
  };
  return {
    async load(name) {
      const row = await store.db
        .selectFrom('audit_sink_cursors')
        .select(['next_index', 'checkpoint_size'])
        .where('name', '=', name)
        .executeTakeFirst();
      if (row !== undefined) return { nextIndex: row.next_index, checkpointSize: row.checkpoint_size };
      if (legacy === undefined) return ZERO;
      const adopted = await legacy.load(name);
      if (adopted.nextIndex > 0 || adopted.checkpointSize > 0) await save(name, adopted);
      return adopted;
    },
    save,
  };
}

/** The cursors as files in `dir` (created 0700 when first needed). */
export function fileSinkCursors(dir: string): SinkCursors {
  const pathOf = (name: string) => join(dir, `${name}.cursor.json`);
  return {
    async load(name) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      return readCursor(pathOf(name));
    },
    save: (name, cursor) => writeCursor(pathOf(name), cursor),
  };
}

async function readCursor(path: string): Promise<SinkCursor> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return ZERO;
    throw error;
  }
  // A cursor that does not parse is never reset to 0 silently: the operator decides.
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`cursor file ${path} is not JSON`);
  }
  const { nextIndex, checkpointSize } = (parsed ?? {}) as Record<string, unknown>;
  if (!isCount(nextIndex) || !isCount(checkpointSize)) {
    throw new Error(`cursor file ${path} needs non-negative integers nextIndex and checkpointSize`);
  }
  return { nextIndex, checkpointSize };
}

/** Crash-safe replacement: the cursor file is the old one or the new one after kill -9 or power loss. */
async function writeCursor(path: string, cursor: SinkCursor): Promise<void> {
  const tmp = `${path}.tmp`;
  const file = await open(tmp, 'w', 0o600);
  try {
    await file.writeFile(`${JSON.stringify(cursor)}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(tmp, path);
  const folder = await open(join(path, '..'), 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
