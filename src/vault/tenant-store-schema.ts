/**
 * The tenant store: one store per tenant (docs/architecture.md, "a store per contract"), holding that tenant's
 * collections, encrypted records, blind indexes, wrapped data keys and audit events — so closing a
 * tenant destroys exactly one store, and a query can never reach another tenant's rows.
 *
 * Layout (why each table looks the way it does):
 *   collections  the declared schema as JSON (names, types, classifications — metadata, never a
 *                customer value) and the blind-index key id pinned when the collection was made.
 *   records      ONE ROW PER RECORD: `fields` is a compact binary map field → AES-256-GCM envelope
 *                (src/vault/field-envelopes.ts). One row means one INSERT/UPDATE and one indexed read per
 *                record operation, which is what thousands of writes per second need; a row per
 *                field would multiply rows, index entries and statements by the field count while
 *                each envelope is already bound to its own field by its AAD. `seq` is the creation
 *                order (cursor pagination); timestamps are epoch milliseconds so retention is a plain
 *                integer comparison on every SQL backend.
 *   blind_index  HMAC rows (collection, field, mac, record_id) for searchable fields: equality search
 *                is an index lookup, never a decryption of every record.
 *   data_keys    wrapped data keys beside the data they protect (same shape as
 *                src/vault/data-key-store.ts); a plaintext key has no column to go to.
 *   audit_events the change and its event commit in one transaction (src/audit/event.ts).
 */
import { type Generated, type Kysely, type Migration, sql } from 'kysely';
import {
  auditEventsMigration,
  auditEventsPgMigration,
  auditMovedMigration,
  auditMovedPgMigration,
  type WithAuditEvents,
} from '../audit/event.ts';
import type { Migrations } from '../store/types.ts';
import { idempotencyKeysMigration, type WithIdempotencyKeys } from './idempotency.ts';

export interface CollectionsTable {
  name: string;
  schema_version: number;
  /** JSON of the stored schema (src/vault/schema.ts StoredSchema). */
  schema: string;
  /** The tenant blind-index data key pinned for this collection (stable: rotating it breaks search). */
  blind_index_key_id: string;
  retention_days: number | null;
  created_at: number;
  updated_at: number;
}

export interface RecordsTable {
  seq: Generated<number>;
  id: string;
  collection: string;
  version: number;
  created_at: number;
  updated_at: number;
  expires_at: number | null;
  /** Encoded field → envelope map (src/vault/field-envelopes.ts encodeFieldEnvelopes). */
  fields: Uint8Array;
}

export interface BlindIndexTable {
  collection: string;
  field: string;
  mac: Uint8Array;
  record_id: string;
}

export interface DataKeysTable {
  key_id: string;
  tenant: string;
  purpose: string;
  wrapped: Uint8Array;
  state: string;
  created_at: string;
  reserved: number;
}

export interface TenantDB extends WithAuditEvents, WithIdempotencyKeys {
  collections: CollectionsTable;
  records: RecordsTable;
  blind_index: BlindIndexTable;
  data_keys: DataKeysTable;
}

export const dataKeysMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('data_keys')
      .addColumn('key_id', 'text', (c) => c.primaryKey())
      .addColumn('tenant', 'text', (c) => c.notNull())
      .addColumn('purpose', 'text', (c) => c.notNull())
      .addColumn('wrapped', 'blob', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state IN ('active', 'decrypt-only')`))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('reserved', 'integer', (c) => c.notNull().check(sql`reserved >= 0`))
      .execute();
    // At most one active key per tenant and purpose, enforced by the store itself.
    await db.schema
      .createIndex('data_keys_one_active')
      .on('data_keys')
      .columns(['tenant', 'purpose'])
      .unique()
      .where(sql.ref('state'), '=', 'active')
      .execute();
  },
};

export const vaultMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('collections')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('schema_version', 'integer', (c) => c.notNull())
      .addColumn('schema', 'text', (c) => c.notNull())
      .addColumn('blind_index_key_id', 'text', (c) => c.notNull())
      .addColumn('retention_days', 'integer')
      .addColumn('created_at', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'integer', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('records')
      .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('id', 'text', (c) => c.notNull().unique())
      .addColumn('collection', 'text', (c) => c.notNull().references('collections.name'))
      .addColumn('version', 'integer', (c) => c.notNull().check(sql`version >= 1`))
      .addColumn('created_at', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'integer', (c) => c.notNull())
      .addColumn('expires_at', 'integer')
      .addColumn('fields', 'blob', (c) => c.notNull())
      .execute();
    // Listing walks one collection in creation order; retention finds what has expired.
    await db.schema
      .createIndex('records_by_collection')
      .on('records')
      .columns(['collection', 'seq'])
      .execute();
    await db.schema
      .createIndex('records_by_expiry')
      .on('records')
      .column('expires_at')
      .where(sql.ref('expires_at'), 'is not', null)
      .execute();
    await db.schema
      .createTable('blind_index')
      .addColumn('collection', 'text', (c) => c.notNull())
      .addColumn('field', 'text', (c) => c.notNull())
      .addColumn('mac', 'blob', (c) => c.notNull())
      .addColumn('record_id', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('blind_index_pk', ['collection', 'field', 'mac', 'record_id'])
      .execute();
    await db.schema.createIndex('blind_index_by_record').on('blind_index').column('record_id').execute();
  },
};

/**
 * PostgreSQL's tenant tables, in the tenant's own schema (src/store/pg/tenant-stores.ts): the same
 * columns, constraints and indexes; epoch-millisecond times, sequence numbers and the data-key
 * reservation counter are bigint, envelopes and MACs bytea.
 */
export const tenantTablesPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      CREATE TABLE data_keys (
        key_id text PRIMARY KEY,
        tenant text NOT NULL,
        purpose text NOT NULL,
        wrapped bytea NOT NULL,
        state text NOT NULL CHECK (state IN ('active', 'decrypt-only')),
        created_at text NOT NULL,
        reserved bigint NOT NULL CHECK (reserved >= 0)
      );
      CREATE UNIQUE INDEX data_keys_one_active ON data_keys (tenant, purpose) WHERE state = 'active';
      CREATE TABLE collections (
        name text PRIMARY KEY,
        schema_version integer NOT NULL,
        schema text NOT NULL,
        blind_index_key_id text NOT NULL,
        retention_days integer,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
      );
      CREATE TABLE records (
        seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        collection text NOT NULL REFERENCES collections (name),
        version bigint NOT NULL CHECK (version >= 1),
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        expires_at bigint,
        fields bytea NOT NULL
      );
      CREATE INDEX records_by_collection ON records (collection, seq);
      CREATE INDEX records_by_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
      CREATE TABLE blind_index (
        collection text NOT NULL,
        field text NOT NULL,
        mac bytea NOT NULL,
        record_id text NOT NULL,
        CONSTRAINT blind_index_pk PRIMARY KEY (collection, field, mac, record_id)
      );
      CREATE INDEX blind_index_by_record ON blind_index (record_id);`.execute(db);
  },
};

/** Applied in name order when a tenant store opens (openSqliteStore<TenantDB>(path, tenantStoreMigrations)). */
export const tenantStoreMigrations: Migrations = {
  '0001-audit-events': auditEventsMigration,
  '0002-data-keys': dataKeysMigration,
  '0003-vault': vaultMigration,
  // Idempotency-Key of record creates (src/vault/idempotency.ts), kept beside the records.
  '0004-idempotency': idempotencyKeysMigration,
  // Outbox rows already in the log are removed (src/audit/outbox-removal.ts).
  '0005-audit-moved': auditMovedMigration,
};

/**
 * The tenant store's PostgreSQL history (its own numbering: nothing of SQLite's is replayed),
 * applied in name order in the tenant's schema when its store is created.
 */
export const tenantStorePgMigrations: Migrations = {
  '0001-audit-events': auditEventsPgMigration,
  '0002-tenant-tables': tenantTablesPgMigration,
  // Kysely's schema builder writes this one alike on both backends (text, integer, bigint).
  '0003-idempotency': idempotencyKeysMigration,
  '0004-audit-moved': auditMovedPgMigration,
};
