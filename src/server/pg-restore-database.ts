/**
 * A PostgreSQL backup's files (pg-snapshot.ts) loaded into an EMPTY database: what `tresor restore
 * --database-url` and the trial restore's scratch database share.
 *
 *   1. the database refused unless it is empty (no table, view or sequence outside PostgreSQL's own
 *      schemas, no `tresor` or `tenant_*` schema) and usable (checks.ts: UTF8, byte-order collation);
 *   2. each file's schema created and migrated up to its manifest schemaVersion (a version this
 *      Tresor does not know — a backup of a newer one — is refused), as the server would have left it;
 *   3. every file's rows loaded in ONE transaction (pg-schema-load.ts: COPY FROM, sequences set),
 *      with the restored tenants marked pending for the sequencer as on SQLite;
 *   4. on any failure every schema this load created is dropped again: the database is left empty.
 *
 * A server must not be started on the database before the load has returned: between 2 and 3 its
 * schemas exist without their rows.
 */
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import { BackupError, type BackupManifest, loadPgSchemaFile } from '../backup/index.ts';
import { createPgPool, quoteIdent, sessionPool } from '../store/pg/pool.ts';
import { checkDatabase } from '../store/pg/store.ts';
import { tenantSchema } from '../store/pg/tenant-stores.ts';
import type { Migrations } from '../store/types.ts';
import { tenantStorePgMigrations } from '../vault/tenant-store-schema.ts';
import { CONTROL_SCHEMA, controlStorePgMigrations } from './control-store.ts';

export interface PgLoadResult {
  /** The schemas made and loaded: the control store's first. */
  schemas: string[];
  tables: number;
}

/** Whether the database holds anything of its users (or Tresor): refused as a restore target. */
export async function pgDatabaseEmpty(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%')
          + (SELECT count(*) FROM pg_namespace WHERE nspname = $1 OR nspname LIKE 'tenant\\_%') AS n`,
    [CONTROL_SCHEMA],
  );
  return Number(rows[0]?.n ?? 1) === 0;
}

/** pgDatabaseEmpty on a connection of its own. */
export async function pgDatabaseEmptyAt(url: string): Promise<boolean> {
  const pool = createPgPool(url, { max: 1 });
  try {
    return await pgDatabaseEmpty(pool);
  } finally {
    await pool.end();
  }
}

/** Drops what a load made (a restore whose later check failed leaves the database empty again). */
export async function dropPgSchemas(url: string, schemas: readonly string[]): Promise<void> {
  const pool = createPgPool(url, { max: 1 });
  try {
    for (const schema of [...schemas].reverse())
      await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
  } finally {
    await pool.end();
  }
}

/** `shown`: the database as messages name it (its URL with the password redacted). */
export function pgTargetNotEmpty(shown: string): BackupError {
  return new BackupError(
    'TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY',
    `restore target ${shown} is not an empty database: a restore never mixes with existing data (give a new database, created with ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C')`,
  );
}

/**
 * Loads the restored files of `manifest` (in `folder`, as restoreFiles wrote them) into the empty
 * database at `url`. `shown` names it in messages.
 */
export async function loadBackupIntoPg(options: {
  url: string;
  shown: string;
  manifest: BackupManifest;
  folder: string;
}): Promise<PgLoadResult> {
  const { manifest } = options;
  if (manifest.backend !== 'postgres')
    throw new BackupError(
      'TRESOR_ERR_BACKUP_INVALID',
      `backup ${manifest.backupId} was taken on ${manifest.backend}, not PostgreSQL: restore it into a data folder (--to)`,
    );
  const pool = createPgPool(options.url, { max: 2 });
  const created: string[] = [];
  try {
    if (!(await pgDatabaseEmpty(pool))) throw pgTargetNotEmpty(options.shown);
    const files = [...manifest.files].sort(
      (a, b) => Number(b.kind === 'control') - Number(a.kind === 'control'),
    );
    if (files[0]?.kind !== 'control')
      throw new BackupError(
        'TRESOR_ERR_BACKUP_INVALID',
        `backup ${manifest.backupId} holds no control store`,
      );
    const plan = files.map((file) => {
      const control = file.kind === 'control';
      if (!control && file.tenant === null)
        throw new BackupError('TRESOR_ERR_BACKUP_INVALID', `${file.name} names no tenant`);
      return {
        file,
        schema: control ? CONTROL_SCHEMA : tenantSchema(file.tenant ?? ''),
        migrations: control ? controlStorePgMigrations : tenantStorePgMigrations,
      };
    });
    for (const { file, schema, migrations } of plan) {
      await migrateSchema(pool, schema, migrations, file.schemaVersion, file.name, created);
    }
    const client = await pool.connect();
    let tables = 0;
    let clean = false;
    try {
      await client.query('BEGIN');
      for (const { file, schema } of plan) {
        tables += (await loadPgSchemaFile(client, schema, `${options.folder}/${file.name}`, file.name))
          .tables;
      }
      await markRestoredOutboxes(client, manifest.tenants);
      await client.query('COMMIT');
      clean = true;
    } finally {
      // After a failure the connection may be mid-COPY: it is ended, not given back.
      client.release(clean ? undefined : true);
    }
    return { schemas: plan.map((p) => p.schema), tables };
  } catch (error) {
    for (const schema of created.reverse())
      await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`).catch(() => undefined);
    throw error;
  } finally {
    await pool.end();
  }
}

/** CREATE SCHEMA and its migrations up to `version` (recorded in `created` once made). */
async function migrateSchema(
  pool: pg.Pool,
  schema: string,
  migrations: Migrations,
  version: string,
  name: string,
  created: string[],
): Promise<void> {
  if (!Object.hasOwn(migrations, version))
    throw new BackupError(
      'TRESOR_ERR_BACKUP_INVALID',
      `${name} is at schema version ${JSON.stringify(version)}, which this Tresor does not know (a backup of a newer version?)`,
    );
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: sessionPool(pool, quoteIdent(schema)) }),
  });
  try {
    if (created.length === 0) await checkDatabase(db);
    await sql.raw(`CREATE SCHEMA ${quoteIdent(schema)}`).execute(db);
    created.push(schema);
    const migrator = new Migrator({
      db,
      provider: { getMigrations: async () => migrations },
      migrationTableSchema: schema,
    });
    const { error } = await migrator.migrateTo(version);
    if (error !== undefined) throw error;
  } finally {
    // The pool is the caller's: only this Kysely's handle goes.
    await db.destroy().catch(() => undefined);
  }
}

/**
 * Each restored tenant whose store may exist is marked pending (src/audit/pending-sources.ts), so the
 * first start's sequencer looks at its outbox once: the snapshot is one instant, but a mark is only
 * a hint and the restored marks may lag the outboxes they describe.
 */
async function markRestoredOutboxes(
  client: pg.PoolClient,
  tenants: readonly { id: string; state: string }[],
): Promise<void> {
  const table = `${quoteIdent(CONTROL_SCHEMA)}.audit_pending_sources`;
  await client.query(`DELETE FROM ${table}`);
  const live = tenants.filter((t) => t.state === 'active' || t.state === 'closing').map((t) => t.id);
  for (const id of live) await client.query(`INSERT INTO ${table} (source) VALUES ($1)`, [id]);
}
