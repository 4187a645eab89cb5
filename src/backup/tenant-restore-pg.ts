/**
 * The restored tenant store as a PostgreSQL schema, before it is swapped in (tenant-restore.ts; the
 * SQLite file's counterpart is tenant-restore-file.ts, and this does the same steps):
 *
 *   prepareScratchSchema  the tenant's schema file of the backup (pg-schema-file.ts, already read
 *                         and checked whole) loaded into a SCRATCH schema (TenantStores.scratchPath:
 *                         `tresor_restore_<random>`): created and migrated up to the file's
 *                         schemaVersion (a version this Tresor does not know — a backup of a newer
 *                         one — is refused), its rows loaded in one transaction (pg-schema-load.ts),
 *                         then migrated to this version, as the server would open it. A session of
 *                         its own holds the scratch's advisory lock from before it is created until it
 *                         is swapped in or dropped (a server starting meanwhile leaves it alone:
 *                         tenant-stores.ts removeScratch);
 *   checkScratchSchema    every wrapped data key in it unwrapped by keyd for the tenant (each key
 *                         dropped at once): a tenant whose key was shredded is refused here, whatever
 *                         its row says (tenant-restore-file.ts's checks; PostgreSQL has no
 *                         quick_check: its rows passed COPY's type checks and the file's digest);
 *   carryForwardPg        run in the swap's transaction (PgTenantStores.replace's beforeSwap, the live
 *                         schema's tables locked): the scratch made to continue the live store, as
 *                         tenant-restore-file.ts's carryForward does on SQLite — the live outbox rows
 *                         after the backup's last seq copied under their own seqs and the identity
 *                         raised to the live one's, the sequencer's durable removal mark
 *                         (`audit_moved`) raised to the live one, the live key ring carried (each key
 *                         the larger of its two reservations), and the restore's own audit event
 *                         appended last.
 *   ScratchSchema.drop    on any failure before the swap: the scratch schema dropped, the live one
 *                         never touched.
 */
import { Kysely, Migrator, PostgresDialect } from 'kysely';
import type pg from 'pg';
import type { AuditEvent } from '../audit/event.ts';
import { KeydError } from '../keyd/errors.ts';
import type { DataKeyPurpose, KeyService } from '../keyd/operations.ts';
import { createPgPool, quoteIdent, sessionPool } from '../store/pg/pool.ts';
import { scratchLockSql } from '../store/pg/tenant-stores.ts';
import type { SwapTransaction } from '../store/types.ts';
import { tenantStorePgMigrations } from '../vault/tenant-store-schema.ts';
import { BackupError } from './errors.ts';
import type { ManifestFile } from './manifest.ts';
import { loadPgSchemaFile } from './pg-schema-load.ts';
import type { RestoredStoreCheck } from './tenant-restore-file.ts';
import { refused, shredded } from './tenant-restore-file.ts';

export interface ScratchSchema {
  readonly schema: string;
  /** Drops the scratch schema (after a failure), then ends the session. */
  drop(): Promise<void>;
  /** Ends the session (after the swap renamed the scratch into place). */
  close(): Promise<void>;
  /** Reads of the scratch schema (qualified names). */
  query: pg.Pool['query'];
}

/** Creates `schema`, migrates it to the file's version, loads `path` into it, migrates it to this version. */
export async function prepareScratchSchema(options: {
  url: string;
  schema: string;
  path: string;
  file: ManifestFile;
}): Promise<ScratchSchema> {
  const { schema, file } = options;
  if (!Object.hasOwn(tenantStorePgMigrations, file.schemaVersion))
    throw refused(
      `its store is at schema version ${JSON.stringify(file.schemaVersion)}, which this Tresor does not know (a backup of a newer version?)`,
    );
  // Two connections: the session holding the scratch's lock (and loading the rows), and the migrator's.
  const pool = createPgPool(options.url, { max: 2 });
  let session: pg.PoolClient | undefined;
  let created = false;
  const end = async () => {
    if (session !== undefined) {
      await session.query(scratchLockSql('pg_advisory_unlock'), [schema]).catch(() => undefined);
      session.release();
      session = undefined;
    }
    await pool.end().catch(() => undefined);
  };
  const drop = async () => {
    if (created)
      await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`).catch(() => undefined);
    created = false;
    await end();
  };
  try {
    session = await pool.connect();
    // A checked-out connection that breaks (the database restarted) must not end the process: the
    // restore's next query fails instead.
    session.on('error', () => undefined);
    await session.query(scratchLockSql('pg_advisory_lock'), [schema]);
    await session.query(`CREATE SCHEMA ${quoteIdent(schema)}`);
    created = true;
    await migrateScratch(pool, schema, file.schemaVersion);
    let clean = false;
    try {
      await session.query('BEGIN');
      await loadPgSchemaFile(session, schema, options.path, file.name);
      await session.query('COMMIT');
      clean = true;
    } finally {
      if (!clean) {
        // After a failure the connection may be mid-COPY: it is ended (its lock with it), not given back.
        session.release(true);
        session = undefined;
      }
    }
    await migrateScratch(pool, schema, undefined);
  } catch (error) {
    await drop();
    if (error instanceof BackupError && error.code === 'TRESOR_ERR_BACKUP_INVALID')
      throw refused(error.message);
    if (error instanceof BackupError) throw error;
    // Rows or tables that do not fit (data exception, integrity, undefined object): the backup's fault.
    if (/^(22|23|42)/.test(codeOf(error)))
      throw refused(`its store does not load as a tenant store of this version (${codeOf(error)})`);
    throw error; // the database unreachable or failing: said as it is
  }
  return {
    schema,
    drop,
    close: end,
    query: pool.query.bind(pool) as pg.Pool['query'],
  };
}

/** Migrations up to `version` (all when undefined), in `schema`, as the server runs them. */
async function migrateScratch(pool: pg.Pool, schema: string, version: string | undefined): Promise<void> {
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: sessionPool(pool, quoteIdent(schema)) }),
  });
  try {
    const migrator = new Migrator({
      db,
      provider: { getMigrations: async () => tenantStorePgMigrations },
      migrationTableSchema: schema,
    });
    const { error } =
      version === undefined ? await migrator.migrateToLatest() : await migrator.migrateTo(version);
    if (error !== undefined) throw error;
  } finally {
    // The pool is the scratch's: only this Kysely's handle goes.
    await db.destroy().catch(() => undefined);
  }
}

/** Every data key unwraps through keyd for `tenant`; the counts. TRESOR_ERR_TENANT_SHREDDED for a destroyed key. */
export async function checkScratchSchema(
  scratch: ScratchSchema,
  tenant: string,
  keys: KeyService,
): Promise<RestoredStoreCheck> {
  const q = quoteIdent(scratch.schema);
  const { rows: dataKeys } = await scratch.query<{
    key_id: string;
    tenant: string;
    purpose: string;
    wrapped: Buffer;
  }>(`SELECT key_id, tenant, purpose, wrapped FROM ${q}.data_keys ORDER BY key_id`);
  for (const row of dataKeys) {
    if (row.tenant !== tenant) throw refused('its store holds a data key of another tenant');
    try {
      const { key } = await keys.call('unwrapDataKey', {
        tenant,
        purpose: row.purpose as DataKeyPurpose,
        keyId: row.key_id,
        wrapped: Buffer.from(row.wrapped),
      });
      key.fill(0);
    } catch (err) {
      if (err instanceof KeydError && err.code === 'TRESOR_ERR_TENANT_KEY_DESTROYED') throw shredded(tenant);
      if (err instanceof KeydError && err.code === 'TRESOR_ERR_TENANT_KEY_PENDING_DESTROY')
        throw new BackupError(
          'TRESOR_ERR_TENANT_STATE',
          `tenant ${tenant} is closing: its key is pending destruction; cancel the close first`,
        );
      if (
        err instanceof KeydError &&
        (err.code === 'TRESOR_ERR_WRAPPED_KEY_INVALID' ||
          err.code === 'TRESOR_ERR_KEY_VERSION_RETIRED' ||
          err.code === 'TRESOR_ERR_KEY_ID_UNKNOWN' ||
          err.code === 'TRESOR_ERR_TENANT_KEY_UNKNOWN')
      )
        throw refused(`a data key of its store does not unwrap through keyd (${err.code})`);
      throw err; // keyd sealed or unreachable: say so as it is
    }
  }
  const count = async (table: 'records' | 'collections') =>
    Number((await scratch.query<{ n: number }>(`SELECT count(*) AS n FROM ${q}.${table}`)).rows[0]?.n ?? 0);
  return {
    records: await count('records'),
    collections: await count('collections'),
    dataKeys: dataKeys.length,
  };
}

/**
 * Makes the scratch schema continue the live schema `live` (see the header) and appends `event` to
 * its outbox, in the swap's transaction (the live tables locked by it).
 */
export async function carryForwardPg(
  swap: SwapTransaction,
  scratch: string,
  live: string,
  event: AuditEvent,
): Promise<void> {
  const to = quoteIdent(scratch);
  const from = quoteIdent(live);
  const maxSeq = async (schema: string) =>
    Number(
      (await swap.query<{ seq: number | null }>(`SELECT max(seq) AS seq FROM ${schema}.audit_events`)).rows[0]
        ?.seq ?? 0,
    );
  const moved = async (schema: string) =>
    Number(
      (await swap.query<{ seq: number | null }>(`SELECT seq FROM ${schema}.audit_moved WHERE one = 1`))
        .rows[0]?.seq ?? 0,
    );
  // Rows at or below a store's removal mark may have been removed from it: what counts is the larger.
  const last = Math.max(await maxSeq(to), await moved(to));
  const liveMoved = await moved(from);
  const liveLast = Math.max(await maxSeq(from), liveMoved);
  if (liveLast < last)
    throw refused('its audit outbox is ahead of the live one (not a backup of this store)');
  await swap.query(
    `INSERT INTO ${to}.audit_events (seq, at, tenant, action, event)
     SELECT seq, at, tenant, action, event FROM ${from}.audit_events WHERE seq > $1 ORDER BY seq`,
    [last],
  );
  // The identity never hands out a seq at or below the live one's: the next event follows the live ones.
  const liveSequence = (
    await swap.query<{ last: number | null }>(
      `SELECT s.last_value AS last
         FROM pg_sequences s WHERE s.schemaname = $1
          AND s.sequencename = (SELECT split_part(pg_get_serial_sequence($2, 'seq'), '.', 2))`,
      [live, `${from}.audit_events`],
    )
  ).rows[0];
  const next = Math.max(liveLast, liveSequence?.last ?? 0);
  if (next >= 1)
    await swap.query(
      `SELECT setval(pg_get_serial_sequence($1, 'seq'),
                     greatest($2::bigint, (SELECT coalesce(max(seq), 0) FROM ${to}.audit_events)), true)`,
      [`${to}.audit_events`, next],
    );
  // The sequencer's removal mark only advances: the live one's rows up to it are in the log.
  await swap.query(`UPDATE ${to}.audit_moved SET seq = $1 WHERE one = 1 AND seq < $1`, [liveMoved]);
  // The live key ring; demotions before the active key, so the one-active-key index holds throughout.
  const { rows: liveKeys } = await swap.query<{
    key_id: string;
    tenant: string;
    purpose: string;
    wrapped: Buffer;
    state: string;
    created_at: string;
    reserved: number;
  }>(
    `SELECT key_id, tenant, purpose, wrapped, state, created_at, reserved FROM ${from}.data_keys
      ORDER BY state = 'active', created_at, key_id`,
  );
  for (const key of liveKeys) {
    if (key.state === 'active')
      await swap.query(
        `UPDATE ${to}.data_keys SET state = 'decrypt-only'
          WHERE tenant = $1 AND purpose = $2 AND state = 'active' AND key_id <> $3`,
        [key.tenant, key.purpose, key.key_id],
      );
    await swap.query(
      `INSERT INTO ${to}.data_keys (key_id, tenant, purpose, wrapped, state, created_at, reserved)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (key_id) DO UPDATE SET wrapped = excluded.wrapped, state = excluded.state,
         reserved = greatest(data_keys.reserved, excluded.reserved)`,
      [key.key_id, key.tenant, key.purpose, key.wrapped, key.state, key.created_at, key.reserved],
    );
  }
  await swap.query(`INSERT INTO ${to}.audit_events (at, tenant, action, event) VALUES ($1, $2, $3, $4)`, [
    event.at,
    event.tenant,
    event.action,
    JSON.stringify(event),
  ]);
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : err instanceof Error ? err.name : 'error';
}
