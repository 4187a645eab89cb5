/**
 * The PostgreSQL snapshot: the control store's schema and every listed tenant's schema
 * (`tenant_<id>`), each written to one file of pg-schema-file.ts's format (`control.pgs`,
 * `tenants/<id>.pgs`), all from ONE instant of the database.
 *
 * One connection, one `REPEATABLE READ READ ONLY` transaction: every COPY of every schema reads the
 * same snapshot (www.postgresql.org/docs/current/transaction-iso.html#XACT-REPEATABLE-READ), so the
 * control store's tenant list, its audit log and each tenant's rows and outbox agree — a stronger
 * cut than SQLite's one file after another. Writers are never blocked by it (MVCC).
 *
 * Before the snapshot is taken, every table to be copied is locked in ACCESS SHARE mode (LOCK runs
 * before the transaction's first query, so the snapshot is taken after the locks are held): a
 * tenant closed meanwhile (DROP SCHEMA) or a migration (ALTER TABLE) waits for the backup's copy
 * instead of pulling a table away under it; reads and writes of rows go on. A schema dropped
 * between the listing and the locks is looked up again (a few tries); a listed tenant whose schema
 * is gone is left out, as a closed tenant's store is on SQLite.
 *
 * The rows leave the database by `COPY … TO STDOUT (FORMAT binary)` through pg-copy-streams; the
 * database server does the encoding, this process frames the pieces and takes the digest.
 */
import { createHash } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { quoteIdent } from '../store/pg/pool.ts';
import { tenantSchema } from '../store/pg/tenant-stores.ts';
import { BackupError } from './errors.ts';
import {
  frameBytes,
  PG_SCHEMA_FILE_MAGIC,
  type PgSchemaFrame,
  type PgTableHeader,
} from './pg-schema-file.ts';
import type { SnapshotFile, StoreSnapshotter } from './snapshot.ts';

/** The control store's file in a PostgreSQL backup. */
export const CONTROL_PG_FILE = 'control.pgs';

/** Kysely's migration tables: not copied (the manifest's schemaVersion says how far to migrate). */
export const MIGRATION_TABLES = ['kysely_migration', 'kysely_migration_lock'] as const;

/** Tries at taking the locks when schemas vanish meanwhile (tenants closed during the listing). */
const LOCK_TRIES = 5;

/** COPY's pieces are gathered into frames of about this size. */
const FRAME_BYTES = 256 * 1024;

export interface PgSnapshotterOptions {
  /** The database URL (password included): for the client only, never in a message. */
  url: string;
  /** The control store's schema (`tresor`). */
  controlSchema: string;
}

interface PlannedFile {
  name: string;
  kind: SnapshotFile['kind'];
  tenant: string | null;
  schema: string;
  path: string;
}

export function createPgSnapshotter(options: PgSnapshotterOptions): StoreSnapshotter {
  return {
    backend: 'postgres',
    async snapshot(scratch, tenants) {
      const plan: PlannedFile[] = [
        {
          name: CONTROL_PG_FILE,
          kind: 'control',
          tenant: null,
          schema: options.controlSchema,
          path: join(scratch, CONTROL_PG_FILE),
        },
      ];
      for (const tenant of tenants) {
        const name = `tenants/${tenant}.pgs`;
        plan.push({ name, kind: 'tenant', tenant, schema: tenantSchema(tenant), path: join(scratch, name) });
      }
      await mkdir(join(scratch, 'tenants'), { recursive: true, mode: 0o700 });
      const client = new pg.Client({ connectionString: options.url });
      // A connection failure while no query is awaited must not end the process.
      client.on('error', () => undefined);
      try {
        await client.connect();
      } catch (error) {
        throw failed(`cannot connect to the database (${codeOf(error)})`);
      }
      try {
        const tables = await lockAndSnapshot(
          client,
          plan.map((f) => f.schema),
        );
        const files: SnapshotFile[] = [];
        for (const file of plan) {
          const schemaTables = tables.get(file.schema);
          if (schemaTables === undefined) {
            if (file.kind === 'tenant') continue;
            throw failed(`the control store's schema ${file.schema} does not exist`);
          }
          files.push(await copySchema(client, file, schemaTables));
        }
        await client.query('COMMIT');
        return files;
      } catch (error) {
        if (error instanceof BackupError) throw error;
        throw failed(`copying the database failed (${codeOf(error)})`);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
}

/**
 * Opens the snapshot transaction with every table of `schemas` locked; answers the tables of each
 * schema that exists, parents first (foreign keys), then by name.
 */
async function lockAndSnapshot(
  client: pg.Client,
  schemas: readonly string[],
): Promise<Map<string, string[]>> {
  for (let attempt = 1; ; attempt++) {
    const listed = await listTables(client, schemas);
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const all = [...listed].flatMap(([schema, tables]) =>
        tables.map((t) => `${quoteIdent(schema)}.${quoteIdent(t)}`),
      );
      if (all.length > 0) await client.query(`LOCK TABLE ${all.join(', ')} IN ACCESS SHARE MODE`);
      // The first query takes the snapshot: the tables must still be the ones listed and locked.
      const seen = await listTables(client, schemas);
      if (sameTables(listed, seen)) return orderByForeignKeys(client, seen);
    } catch (error) {
      // 42P01 undefined_table, 3F000 invalid_schema_name: a tenant closed since the listing.
      if (!['42P01', '3F000'].includes(codeOf(error)) || attempt >= LOCK_TRIES) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    }
    await client.query('ROLLBACK');
    if (attempt >= LOCK_TRIES) throw failed('the schemas kept changing while the snapshot was taken');
  }
}

async function listTables(client: pg.Client, schemas: readonly string[]): Promise<Map<string, string[]>> {
  const { rows } = await client.query<{ schema: string; table: string | null }>(
    `SELECT n.nspname AS schema, c.relname AS table
       FROM pg_namespace n
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
                           AND c.relname <> ALL ($2::text[])
      WHERE n.nspname = ANY ($1::text[])
      ORDER BY 1, 2`,
    [schemas, MIGRATION_TABLES],
  );
  const out = new Map<string, string[]>();
  for (const row of rows) {
    const tables = out.get(row.schema) ?? [];
    if (row.table !== null) tables.push(row.table);
    out.set(row.schema, tables);
  }
  return out;
}

function sameTables(a: Map<string, string[]>, b: Map<string, string[]>): boolean {
  if (a.size !== b.size) return false;
  for (const [schema, tables] of a) if (b.get(schema)?.join('\0') !== tables.join('\0')) return false;
  return true;
}

/** Each schema's tables with every table after the tables it references (ties by name). */
async function orderByForeignKeys(
  client: pg.Client,
  tables: Map<string, string[]>,
): Promise<Map<string, string[]>> {
  const { rows } = await client.query<{ schema: string; child: string; parent: string }>(
    `SELECT n.nspname AS schema, child.relname AS child, parent.relname AS parent
       FROM pg_constraint k
       JOIN pg_class child ON child.oid = k.conrelid
       JOIN pg_class parent ON parent.oid = k.confrelid
       JOIN pg_namespace n ON n.oid = child.relnamespace
      WHERE k.contype = 'f' AND n.nspname = ANY ($1::text[]) AND parent.relnamespace = n.oid`,
    [[...tables.keys()]],
  );
  const ordered = new Map<string, string[]>();
  for (const [schema, names] of tables) {
    const parents = new Map(names.map((t) => [t, new Set<string>()]));
    for (const r of rows)
      if (r.schema === schema && r.child !== r.parent) parents.get(r.child)?.add(r.parent);
    const out: string[] = [];
    const placed = new Set<string>();
    while (out.length < names.length) {
      const next = names.find(
        (t) => !placed.has(t) && [...(parents.get(t) ?? [])].every((p) => placed.has(p)),
      );
      if (next === undefined) throw failed(`the tables of ${schema} reference each other in a cycle`);
      placed.add(next);
      out.push(next);
    }
    ordered.set(schema, out);
  }
  return ordered;
}

/** One schema into its file: every table's columns, sequence values and rows; its digest and size. */
async function copySchema(
  client: pg.Client,
  file: PlannedFile,
  tables: readonly string[],
): Promise<SnapshotFile> {
  const schema = quoteIdent(file.schema);
  const { rows: versions } = await client.query<{ v: string | null }>(
    `SELECT max(name) AS v FROM ${schema}.kysely_migration`,
  );
  const schemaVersion = versions[0]?.v ?? 'none';
  const handle = await open(file.path, 'wx', 0o600);
  const hash = createHash('sha256');
  let size = 0;
  const put = async (bytes: Buffer) => {
    hash.update(bytes);
    size += bytes.length;
    await handle.write(bytes);
  };
  const frame = (f: PgSchemaFrame) => put(frameBytes(f));
  try {
    await put(PG_SCHEMA_FILE_MAGIC);
    for (const table of tables) {
      const header = await tableHeader(client, file.schema, table);
      await frame({ kind: 'table', header });
      const columns = header.columns.map(quoteIdent).join(', ');
      const rows = client.query(
        copyTo(`COPY ${schema}.${quoteIdent(table)} (${columns}) TO STDOUT (FORMAT binary)`),
      );
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      for await (const piece of rows as AsyncIterable<Buffer>) {
        pending.push(piece);
        pendingBytes += piece.length;
        if (pendingBytes >= FRAME_BYTES) {
          await frame({ kind: 'data', bytes: Buffer.concat(pending) });
          pending = [];
          pendingBytes = 0;
        }
      }
      if (pendingBytes > 0) await frame({ kind: 'data', bytes: Buffer.concat(pending) });
      await frame({ kind: 'end-table' });
    }
    await frame({ kind: 'end' });
  } finally {
    await handle.close();
  }
  return {
    name: file.name,
    kind: file.kind,
    tenant: file.tenant,
    schemaVersion,
    size,
    sha256: hash.digest('hex'),
    path: file.path,
  };
}

/** A table's columns (in order; generated ones left out, COPY cannot load them) and sequence values. */
async function tableHeader(client: pg.Client, schema: string, table: string): Promise<PgTableHeader> {
  const qualified = `${quoteIdent(schema)}.${quoteIdent(table)}`;
  const { rows } = await client.query<{ column: string; sequence: string | null }>(
    `SELECT attname AS column, pg_get_serial_sequence($1, attname) AS sequence
       FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
      ORDER BY attnum`,
    [qualified],
  );
  const sequences: Record<string, number> = {};
  for (const row of rows) {
    if (row.sequence === null) continue;
    // A sequence is not transactional: its value now is at least the snapshot's, never behind it.
    const { rows: seq } = await client.query<{ last_value: string; is_called: boolean }>(
      `SELECT last_value, is_called FROM ${row.sequence}`,
    );
    const value = seq[0];
    sequences[row.column] = value?.is_called ? Number(value.last_value) : 0;
  }
  return { table, columns: rows.map((r) => r.column), sequences };
}

function failed(message: string): BackupError {
  return new BackupError('TRESOR_ERR_BACKUP_FAILED', `snapshot: ${message}`);
}

/** A PostgreSQL error's SQLSTATE, or the error's class: never its message, which may quote values. */
function codeOf(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown };
  if (typeof e?.code === 'string') return e.code;
  return typeof e?.name === 'string' ? e.name : 'error';
}
