/**
 * PostgreSQL for one tenant schema: Kysely's dialect, with an introspector that looks at that schema
 * alone. Kysely's Migrator asks the introspector, at every migrateToLatest(), whether the schema and
 * its migration tables exist; the stock PostgreSQL introspector answers by reading every column of
 * every table of every schema in the database, so each tenant made read all the others' catalogs —
 * at 1,307 tenants 33,584 relations and 179,530 columns per tenant, making tenants quadratic in
 * their number (docs/performance.md j). Tables (the stock introspector's kinds: tables, partitioned
 * tables, views) come without their columns: what reads them here is the Migrator, which needs their
 * names.
 *
 * The schema's relations are found through `pg_depend`, not by filtering `pg_class` on its namespace:
 * `pg_class` has no index on `relnamespace`, so that filter scans every relation of every tenant (at
 * 7,200 tenants 290,000 rows, 413 ms a call, and the Migrator calls it two to four times per tenant made —
 * quadratic again, with a smaller constant). Every relation made in a schema other than a pinned
 * system one records a normal dependency on its namespace, which `pg_depend_reference_index` finds
 * directly (1.4 ms there).
 *
 * The Migrator's lock is the schema's own: Kysely's PostgreSQL adapter takes one fixed advisory lock
 * for every migration in the database, so tenants being made waited for each other's DDL (sampled
 * while making 10,000: 45 of 70 active statements waiting on it). Two migrations of one schema still
 * exclude each other; the control store's migration keeps the stock lock.
 */
import {
  type DatabaseIntrospector,
  type DatabaseMetadata,
  type DialectAdapter,
  type Kysely,
  PostgresAdapter,
  PostgresDialect,
  type PostgresDialectConfig,
  type SchemaMetadata,
  sql,
  type TableMetadata,
} from 'kysely';

/** Advisory-lock class of a tenant schema's migration lock; the key is `hashtext(schema)`. */
export const SCHEMA_MIGRATION_LOCK_CLASS = 0x54736d67;
/** As Kysely's own: a migration waits at most an hour for the lock. */
const LOCK_TIMEOUT_MS = 60 * 60_000;

export class OneSchemaPostgresDialect extends PostgresDialect {
  readonly #schema: string;

  constructor(schema: string, config: PostgresDialectConfig) {
    super(config);
    this.#schema = schema;
  }

  // biome-ignore lint/suspicious/noExplicitAny: Kysely's own signature
  override createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new OneSchemaIntrospector(db, this.#schema);
  }

  override createAdapter(): DialectAdapter {
    return new OneSchemaAdapter(this.#schema);
  }
}

/** Kysely's PostgreSQL adapter with a session-level migration lock per schema. */
class OneSchemaAdapter extends PostgresAdapter {
  readonly #schema: string;

  constructor(schema: string) {
    super();
    this.#schema = schema;
  }

  // biome-ignore lint/suspicious/noExplicitAny: Kysely's own signature
  override async acquireMigrationLock(db: Kysely<any>): Promise<void> {
    await sql`
      WITH set_timeout AS (SELECT set_config('lock_timeout', ${String(LOCK_TIMEOUT_MS)}, true) AS config_val)
      SELECT pg_advisory_lock(${SCHEMA_MIGRATION_LOCK_CLASS}::int, hashtext(${this.#schema})) FROM set_timeout`.execute(
      db,
    );
  }

  // biome-ignore lint/suspicious/noExplicitAny: Kysely's own signature
  override async releaseMigrationLock(db: Kysely<any>): Promise<void> {
    await sql`SELECT pg_advisory_unlock(${SCHEMA_MIGRATION_LOCK_CLASS}::int, hashtext(${this.#schema}))`.execute(
      db,
    );
  }
}

class OneSchemaIntrospector implements DatabaseIntrospector {
  readonly #db: Kysely<unknown>;
  readonly #schema: string;

  constructor(db: Kysely<unknown>, schema: string) {
    this.#db = db;
    this.#schema = schema;
  }

  async getSchemas(): Promise<SchemaMetadata[]> {
    const { rows } = await sql<SchemaMetadata>`
      SELECT nspname AS name FROM pg_catalog.pg_namespace WHERE nspname = ${this.#schema}`.execute(this.#db);
    return rows;
  }

  async getTables(): Promise<TableMetadata[]> {
    const { rows } = await sql<{ name: string; kind: string }>`
      SELECT c.relname AS name, c.relkind AS kind
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
      WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass
        AND d.refobjid = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ${this.#schema})
        AND d.refobjsubid = 0
        AND d.classid = 'pg_catalog.pg_class'::regclass
        AND c.relnamespace = d.refobjid
        AND c.relkind IN ('r', 'p', 'v')
      ORDER BY c.relname`.execute(this.#db);
    return rows.map((row) => ({
      name: row.name,
      isView: row.kind === 'v',
      columns: [],
      schema: this.#schema,
    }));
  }

  async getMetadata(): Promise<DatabaseMetadata> {
    return { tables: await this.getTables() };
  }
}
