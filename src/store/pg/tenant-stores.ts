/**
 * One PostgreSQL schema per tenant ("a store per contract"): `tenant_<id>` in the data database,
 * created when the contract starts (CREATE SCHEMA, then the tenant migrations in it) and dropped
 * when it ends (DROP SCHEMA … CASCADE: the tables and their ciphertext go with it; crypto-shredding
 * destroys the keys first, as on SQLite).
 *
 * Isolation: domain queries name tables without a schema, so a tenant's connection must never
 * resolve a name in another schema.
 * - Reads borrow a pool connection whose search_path is set to the tenant's schema (and nothing
 *   else) before the first query of each use (pool.ts sessionPool): builders and raw `sql` alike
 *   resolve unqualified names there. One mechanism for both is why withSchema() is not used: it
 *   would qualify only the builders, and a raw query would still go by the search_path.
 * - Writes of every tenant share one group-commit writer (one connection for all tenants, so one
 *   WAL flush commits many tenants' writes, and an open tenant costs no connection of its own); each
 *   job sets `SET LOCAL search_path` to its tenant inside its own savepoint before its work runs,
 *   and the writer connection's own search_path is empty.
 * What this does not stop: a query that names another schema explicitly (`tenant_x.records`).
 * Tresor's code never qualifies a tenant table; closing that too needs a role per tenant.
 *
 * Tenant ids are checked against TENANT_ID_PATTERN and quoted as identifiers; an id longer than 56
 * characters is refused (PostgreSQL cuts names at 63 bytes, which would make two ids one schema).
 *
 * destroy() waits for the tenant's reads and writes in flight and refuses new ones meanwhile, then
 * drops the schema; it is idempotent (DROP SCHEMA IF EXISTS).
 *
 * replace() swaps a restored schema in for the live one (src/backup/tenant-restore-pg.ts prepares
 * it under a scratchPath() name, `tresor_restore_<random>`: no tenant id makes a schema of that
 * name, since every tenant schema begins `tenant_`). Like destroy() it waits for the tenant's reads
 * and writes in flight; new ones wait too (they are not refused) and then use the new schema. Then,
 * in ONE transaction: every table of the live schema locked ACCESS EXCLUSIVE (another process's
 * transactions on them finish first, its new ones wait: nothing is written to the live schema after
 * the caller's beforeSwap has read it), beforeSwap (the caller makes the scratch continue the live
 * store), `DROP SCHEMA tenant_<id> CASCADE`, `ALTER SCHEMA <scratch> RENAME TO tenant_<id>`, COMMIT.
 * Either all of it commits or none: a failure or a crash leaves the live schema as it was. Queries
 * of other processes that waited on the locks find the renamed schema's tables by name afterwards
 * (PostgreSQL looks a name up again once it holds the lock). The tenant's handle is forgotten, so
 * the next use makes a new one (caches keyed by it start empty); other processes are told by the
 * caller (a `tenant-store` cache notice: forgetHandle()).
 *
 * A scratch schema is held by its preparer's session advisory lock (scratchLockSql): removeScratch()
 * at start drops only those no live session holds, so a node starting beside another node's running
 * restore leaves its scratch alone, and one left by a process killed mid-restore goes.
 */
import { randomBytes } from 'node:crypto';
import { Kysely, sql, type Transaction } from 'kysely';
import type pg from 'pg';
import { TresorError } from '../../errors.ts';
import { assertTenantId } from '../tenant-id.ts';
import type { Migrations, Store, SwapTransaction, TenantStores, TenantStoresStats } from '../types.ts';
import { DEFAULT_MAX_BATCH, PgGroupCommit } from './group-commit.ts';
import { OneSchemaPostgresDialect } from './one-schema-dialect.ts';
import { describeLocation, quoteIdent, sessionPool } from './pool.ts';
import { checkDatabase, migrate, poolOf } from './store.ts';

/** The schema of tenant `x` is `tenant_x`. */
export const TENANT_SCHEMA_PREFIX = 'tenant_';

/** PostgreSQL's identifier limit (NAMEDATALEN - 1) less the `tenant_` prefix. */
const MAX_PG_TENANT_ID = 63 - TENANT_SCHEMA_PREFIX.length;

/**
 * Tenants whose handle is remembered. A handle holds no connection (the pool's are shared); what a
 * forgotten tenant costs on its next use is a round trip to check its schema exists. At 256, uniform
 * reads over 1,000 tenants re-checked 178 schemas a second and ran at 0.62× the one-tenant rate
 * (docs/performance.md, section j). A handle is about 6.5 KB of heap (a Kysely with the schema
 * plugin, measured with 16,384 of them), so this many take about 107 MB at most.
 */
export const DEFAULT_REMEMBERED_TENANTS = 16_384;

/** Scratch schemas of in-place restores (scratchPath()); never a tenant's (those begin `tenant_`). */
export const SCRATCH_SCHEMA_PATTERN = /^tresor_restore_[0-9a-f]{16}$/;

/**
 * The session advisory lock a scratch schema's preparer holds while it exists (`$1`: the schema's
 * name): `pg_advisory_lock`, `pg_try_advisory_lock` or `pg_advisory_unlock`.
 */
export function scratchLockSql(
  fn: 'pg_advisory_lock' | 'pg_try_advisory_lock' | 'pg_advisory_unlock',
): string {
  return `SELECT ${fn}(hashtextextended($1, 0)) AS locked`;
}

export interface PgTenantStoresOptions {
  url?: string;
  /** A pool from createPgPool, shared with the control store (its owner ends it). */
  pool?: pg.Pool;
  migrations: Migrations;
  /** Passed to the shared writer's group commit. */
  maxBatch?: number;
  /** Tenants whose handle is kept (a Kysely each), least recently used forgotten first (default 16,384). */
  maxOpen?: number;
}

/** The schema of a tenant's store. */
export function tenantSchema(tenant: string): string {
  assertTenantId(tenant);
  if (tenant.length > MAX_PG_TENANT_ID)
    throw new TresorError(
      'TRESOR_ERR_BAD_REQUEST',
      `a tenant id is at most ${MAX_PG_TENANT_ID} characters on PostgreSQL`,
    );
  return `${TENANT_SCHEMA_PREFIX}${tenant}`;
}

export async function createPgTenantStores<DB>(options: PgTenantStoresOptions): Promise<TenantStores<DB>> {
  const { pool, owned } = poolOf(options);
  const writer = new PgGroupCommit(pool, "''", options.maxBatch ?? DEFAULT_MAX_BATCH);
  try {
    await checkDatabase(writer.kysely());
  } catch (error) {
    await writer.close();
    if (owned) await pool.end();
    throw error;
  }
  return new PgTenantStores<DB>(pool, owned, writer, options);
}

interface Entry<DB> {
  readonly handle: PgTenantStore<DB>;
  /** Reads and writes in flight; destroy() waits for zero. */
  pins: number;
  idleWaiters: Array<() => void>;
}

class PgTenantStores<DB> implements TenantStores<DB> {
  readonly #pool: pg.Pool;
  readonly #ownedPool: boolean;
  readonly #writer: PgGroupCommit;
  readonly #migrations: Migrations;
  readonly #maxOpen: number;
  /** Known tenants in LRU order (Map keeps insertion order; a use moves the tenant to the end). */
  readonly #entries = new Map<string, Entry<DB>>();
  readonly #lifecycle = new Map<string, Promise<void>>();
  readonly #destroying = new Set<string>();
  readonly #counts = { opened: 0, closed: 0, evicted: 0, wiped: 0 };
  #closed: Promise<void> | undefined;

  constructor(pool: pg.Pool, ownedPool: boolean, writer: PgGroupCommit, options: PgTenantStoresOptions) {
    const maxOpen = options.maxOpen ?? DEFAULT_REMEMBERED_TENANTS;
    if (!Number.isSafeInteger(maxOpen) || maxOpen < 1)
      throw new RangeError('maxOpen must be a positive integer');
    this.#pool = pool;
    this.#ownedPool = ownedPool;
    this.#writer = writer;
    this.#migrations = options.migrations;
    this.#maxOpen = maxOpen;
  }

  async create(tenant: string): Promise<Store<DB>> {
    const schema = tenantSchema(tenant);
    this.#assertOpen();
    await this.#exclusive(tenant, async () => {
      this.#assertOpen();
      const db = this.#kyselyFor<unknown>(schema);
      try {
        try {
          await sql.raw(`CREATE SCHEMA ${quoteIdent(schema)}`).execute(db);
        } catch (error) {
          if (sqlState(error) === '42P06')
            throw new TresorError('TRESOR_ERR_CONFLICT', 'the tenant store exists');
          throw error;
        }
        try {
          await migrate(db, schema, this.#migrations);
        } catch (error) {
          await sql.raw(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`).execute(db);
          throw error;
        }
      } finally {
        await db.destroy();
      }
      this.#remember(tenant);
    });
    return this.#remember(tenant).handle;
  }

  async open(tenant: string): Promise<Store<DB>> {
    tenantSchema(tenant);
    this.#assertOpen();
    const pending = this.#lifecycle.get(tenant);
    if (pending) await pending;
    if (this.#destroying.has(tenant))
      throw new TresorError('TRESOR_ERR_GONE', 'the tenant store is being destroyed');
    const known = this.#entries.get(tenant);
    if (known) return this.#remember(tenant).handle;
    if (!(await this.#schemaExists(tenant)))
      throw new TresorError('TRESOR_ERR_NOT_FOUND', 'the tenant store does not exist');
    return this.#remember(tenant).handle;
  }

  async exists(tenant: string): Promise<boolean> {
    tenantSchema(tenant);
    if (this.#destroying.has(tenant)) return false;
    return this.#schemaExists(tenant);
  }

  async destroy(tenant: string): Promise<void> {
    const schema = tenantSchema(tenant);
    this.#assertOpen();
    await this.#exclusive(tenant, async () => {
      this.#destroying.add(tenant);
      try {
        const entry = this.#entries.get(tenant);
        if (entry) {
          while (entry.pins > 0) await new Promise<void>((resolve) => entry.idleWaiters.push(resolve));
          this.#forget(tenant, entry);
        }
        const client = await this.#pool.connect();
        try {
          await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
          this.#counts.wiped++;
        } finally {
          client.release();
        }
      } finally {
        this.#destroying.delete(tenant);
      }
    });
  }

  async scratchPath(tenant: string): Promise<string> {
    tenantSchema(tenant);
    return `tresor_restore_${randomBytes(8).toString('hex')}`;
  }

  async replace(
    tenant: string,
    scratch: string,
    beforeSwap: (live: string, swap: SwapTransaction) => Promise<void>,
  ): Promise<void> {
    const schema = tenantSchema(tenant);
    if (!SCRATCH_SCHEMA_PATTERN.test(scratch))
      throw new RangeError('the scratch schema must come from scratchPath()');
    this.#assertOpen();
    await this.#exclusive(tenant, async () => {
      if (this.#destroying.has(tenant) || !(await this.#schemaExists(tenant)))
        throw new TresorError('TRESOR_ERR_NOT_FOUND', 'the tenant store does not exist');
      const entry = this.#entries.get(tenant);
      if (entry) {
        while (entry.pins > 0) await new Promise<void>((resolve) => entry.idleWaiters.push(resolve));
        this.#forget(tenant, entry);
      }
      const client = await this.#pool.connect();
      let clean = false;
      try {
        await client.query('BEGIN');
        const { rows } = await client.query<{ table: string }>(
          `SELECT c.relname AS table FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname`,
          [schema],
        );
        if (rows.length > 0)
          await client.query(
            `LOCK TABLE ${rows.map((r) => `${quoteIdent(schema)}.${quoteIdent(r.table)}`).join(', ')} IN ACCESS EXCLUSIVE MODE`,
          );
        await beforeSwap(schema, {
          query: async <R extends Record<string, unknown>>(text: string, params?: unknown[]) => {
            const result = await client.query<R>(text, params);
            return { rows: result.rows };
          },
        });
        await client.query(`DROP SCHEMA ${quoteIdent(schema)} CASCADE`);
        await client.query(`ALTER SCHEMA ${quoteIdent(scratch)} RENAME TO ${quoteIdent(schema)}`);
        await client.query('COMMIT');
        clean = true;
      } finally {
        if (!clean) await client.query('ROLLBACK').catch(() => undefined);
        client.release(clean ? undefined : true);
      }
      // Requests that waited make a new handle: nothing cached of the old schema is kept.
      const again = this.#entries.get(tenant);
      if (again) this.#forget(tenant, again);
    });
  }

  /** Drops scratch schemas no session holds (a restore killed half-way); another process's running restore holds its own. */
  async removeScratch(): Promise<number> {
    const { rows } = await this.#pool.query<{ schema: string }>(
      "SELECT nspname AS schema FROM pg_namespace WHERE nspname LIKE 'tresor\\_restore\\_%'",
    );
    let removed = 0;
    for (const { schema } of rows) {
      if (!SCRATCH_SCHEMA_PATTERN.test(schema)) continue;
      const client = await this.#pool.connect();
      try {
        const locked = await client.query<{ locked: boolean }>(scratchLockSql('pg_try_advisory_lock'), [
          schema,
        ]);
        if (locked.rows[0]?.locked !== true) continue;
        try {
          await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
          removed++;
        } finally {
          await client.query(scratchLockSql('pg_advisory_unlock'), [schema]);
        }
      } finally {
        client.release();
      }
    }
    return removed;
  }

  forgetHandle(tenant: string): void {
    const entry = this.#entries.get(tenant);
    if (entry && entry.pins === 0) this.#forget(tenant, entry);
  }

  openTenants(): string[] {
    return [...this.#entries.keys()];
  }

  stats(): TenantStoresStats {
    const commits = this.#writer.stats();
    return {
      open: this.#entries.size,
      maxOpen: this.#maxOpen,
      ...this.#counts,
      commitBatches: commits.batches,
      commitJobs: commits.jobs,
    };
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      await Promise.all(this.#lifecycle.values());
      const entries = [...this.#entries];
      await Promise.all(
        entries.map(async ([tenant, entry]) => {
          while (entry.pins > 0) await new Promise<void>((resolve) => entry.idleWaiters.push(resolve));
          this.#forget(tenant, entry);
        }),
      );
      await this.#writer.close();
      if (this.#ownedPool) await this.#pool.end();
    })();
    return this.#closed;
  }

  async #schemaExists(tenant: string): Promise<boolean> {
    const { rows } = await this.#pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
      tenantSchema(tenant),
    ]);
    return rows.length > 0;
  }

  /** The tenant's entry, made if new, moved to the LRU's end; forgets the oldest idle ones past maxOpen. */
  #remember(tenant: string): Entry<DB> {
    let entry = this.#entries.get(tenant);
    if (entry) {
      this.#entries.delete(tenant);
    } else {
      entry = { handle: new PgTenantStore<DB>(this, tenant), pins: 0, idleWaiters: [] };
      this.#counts.opened++;
    }
    this.#entries.set(tenant, entry);
    let excess = this.#entries.size - this.#maxOpen;
    for (const [other, e] of this.#entries) {
      if (excess <= 0) break;
      if (e.pins > 0 || other === tenant) continue;
      this.#forget(other, e);
      this.#counts.evicted++;
      excess--;
    }
    return entry;
  }

  #forget(tenant: string, entry: Entry<DB>): void {
    if (this.#entries.get(tenant) !== entry) return;
    // The handle's Kysely holds no connection of its own (they are the pool's): a caller that kept
    // the handle goes on using it, and the registry makes a new entry for it on its next use.
    this.#entries.delete(tenant);
    this.#counts.closed++;
  }

  /** Holds the tenant for one read or write; refuses while it is being destroyed. */
  pin(tenant: string): () => void {
    this.#assertOpen();
    if (this.#destroying.has(tenant))
      throw new TresorError('TRESOR_ERR_GONE', 'the tenant store is being destroyed');
    const entry = this.#entries.get(tenant) ?? this.#remember(tenant);
    entry.pins++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.pins--;
      if (entry.pins === 0) for (const wake of entry.idleWaiters.splice(0)) wake();
    };
  }

  /** A Kysely whose every connection has the tenant's schema as its whole search_path. */
  #kyselyFor<T>(schema: string, hold?: () => (() => void) | Promise<() => void>): Kysely<T> {
    return new Kysely<T>({
      // Its introspector reads this schema alone: Kysely's Migrator asks it at every tenant made.
      dialect: new OneSchemaPostgresDialect(schema, {
        pool: sessionPool(this.#pool, quoteIdent(schema), hold),
      }),
    });
  }

  /**
   * Reads of the tenant: a borrowed connection holds the tenant until given back (destroy and
   * replace wait); a read that comes while the tenant's store is being replaced (or created) waits
   * for it, as a write does.
   */
  readerFor(tenant: string): Kysely<DB> {
    return this.#kyselyFor<DB>(tenantSchema(tenant), async () => {
      const pending = this.#lifecycle.get(tenant);
      if (pending && !this.#destroying.has(tenant)) await pending;
      return this.pin(tenant);
    });
  }

  async write<T>(tenant: string, work: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
    const pending = this.#lifecycle.get(tenant);
    if (pending && !this.#destroying.has(tenant)) await pending;
    const release = this.pin(tenant);
    try {
      return await this.#writer.write(tenantSchema(tenant), work);
    } finally {
      release();
    }
  }

  async healthy(tenant: string): Promise<boolean> {
    if (this.#closed || this.#destroying.has(tenant)) return false;
    try {
      return (await this.#schemaExists(tenant)) && (await this.#writer.healthy());
    } catch {
      return false;
    }
  }

  locationOf(tenant: string): string {
    return describeLocation(this.#pool, tenantSchema(tenant));
  }

  /** Runs create/destroy steps of one tenant one at a time; open() waits for them. */
  async #exclusive(tenant: string, step: () => Promise<void>): Promise<void> {
    const previous = this.#lifecycle.get(tenant);
    const run = (previous ?? Promise.resolve()).then(step);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#lifecycle.set(tenant, settled);
    try {
      await run;
    } finally {
      if (this.#lifecycle.get(tenant) === settled) this.#lifecycle.delete(tenant);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new TresorError('TRESOR_ERR_UNAVAILABLE', 'the tenant stores are closed');
  }
}

/** What open() and create() return: reads and writes of one tenant's schema through the registry. */
class PgTenantStore<DB> implements Store<DB> {
  readonly location: string;
  readonly db: Kysely<DB>;
  readonly #registry: PgTenantStores<DB>;
  readonly #tenant: string;

  constructor(registry: PgTenantStores<DB>, tenant: string) {
    this.#registry = registry;
    this.#tenant = tenant;
    this.location = registry.locationOf(tenant);
    this.db = registry.readerFor(tenant);
  }

  write<T>(work: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
    return this.#registry.write(this.#tenant, work);
  }

  healthy(): Promise<boolean> {
    return this.#registry.healthy(this.#tenant);
  }

  /** The registry owns the connections (TenantStores.close()); a handle has nothing to close. */
  async close(): Promise<void> {}
}

function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return undefined;
}
