/**
 * Vault's tables in the control store (src/server/control-store.ts): who the tenants are and where
 * they are in their life (provisioning → active → closing → closed), and the signed deletion
 * certificates of closed tenants. Never a customer record: those live in each tenant's own store
 * (tenant-store-schema.ts).
 */
import { type Kysely, type Migration, sql } from 'kysely';
import type { WithAuditEvents } from '../audit/event.ts';
import type { WithIdempotencyKeys } from './idempotency.ts';

export type TenantState = 'provisioning' | 'active' | 'closing' | 'closed';
export const TENANT_STATES: readonly TenantState[] = ['provisioning', 'active', 'closing', 'closed'];

export interface TenantsTable {
  id: string; // ten_<24 hex>
  name: string;
  state: TenantState;
  contract_start: string; // YYYY-MM-DD
  contract_end: string | null; // YYYY-MM-DD, last day of the contract; null = open-ended
  created_at: string;
  updated_at: string;
  closed_at: string | null;
  close_reason: string | null;
  /** 1 while a close asked for a final export that has not been handed over. */
  close_export_pending: number;
  /** Closing progress, each set once its step is durable (so a resumed close skips it). */
  keys_destroyed_at: string | null;
  key_ids_destroyed: string | null; // JSON string[]
  store_destroyed_at: string | null;
}

export interface DeletionCertificatesTable {
  tenant: string;
  /** The signed bytes: RFC 8785 canonical JSON of the certificate. */
  body: string;
  signature: string; // base64 Ed25519 signature over body
  key_name: string; // keyd signing key name, e.g. tresor-keyd/deletion-certificate
  created_at: string;
}

export interface WithTenants {
  tenants: TenantsTable;
}

export interface WithDeletionCertificates {
  deletion_certificates: DeletionCertificatesTable;
}

/** The control-store tables the tenant service uses: its own and the audit outbox. */
/** Vault's tables in the control store; `idempotency_keys` holds the Idempotency-Keys of tenant creates. */
export interface VaultControlDB
  extends WithTenants,
    WithDeletionCertificates,
    WithAuditEvents,
    WithIdempotencyKeys {}

const inList = (values: readonly string[]) => sql.join(values.map((v) => sql.lit(v)));

/**
 * Vault's part of the control store's second migration ('0002-control-tables'), which made the
 * tenant and credential tables in one step: src/server/control-store.ts runs this part first, then
 * identity's (the credentials reference tenants).
 */
export const tenantTablesMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('tenants')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('contract_start', 'text', (c) => c.notNull())
      .addColumn('contract_end', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('closed_at', 'text')
      .addColumn('close_reason', 'text')
      .addColumn('close_export_pending', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('keys_destroyed_at', 'text')
      .addColumn('key_ids_destroyed', 'text')
      .addColumn('store_destroyed_at', 'text')
      .addCheckConstraint('tenants_state', sql`state IN (${inList(TENANT_STATES)})`)
      .execute();
    // A name names one live tenant: a retried create finds the tenant it started, not a twin.
    await db.schema
      .createIndex('tenants_live_name')
      .on('tenants')
      .column('name')
      .unique()
      .where(sql.ref('state'), '<>', 'closed')
      .execute();
    await db.schema.createIndex('tenants_state').on('tenants').column('state').execute();

    await db.schema
      .createTable('deletion_certificates')
      .addColumn('tenant', 'text', (c) => c.primaryKey().references('tenants.id'))
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .addColumn('key_name', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
  },
};

/** PostgreSQL's tenant tables (the control store's PostgreSQL history starts with them whole). */
export const tenantTablesPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      CREATE TABLE tenants (
        id text PRIMARY KEY,
        name text NOT NULL,
        state text NOT NULL,
        contract_start text NOT NULL,
        contract_end text,
        created_at text NOT NULL,
        updated_at text NOT NULL,
        closed_at text,
        close_reason text,
        close_export_pending integer NOT NULL DEFAULT 0,
        keys_destroyed_at text,
        key_ids_destroyed text,
        store_destroyed_at text,
        CONSTRAINT tenants_state CHECK (state IN (${inList(TENANT_STATES)}))
      );
      CREATE UNIQUE INDEX tenants_live_name ON tenants (name) WHERE state <> 'closed';
      CREATE INDEX tenants_state ON tenants (state);
      CREATE TABLE deletion_certificates (
        tenant text PRIMARY KEY REFERENCES tenants (id),
        body text NOT NULL,
        signature text NOT NULL,
        key_name text NOT NULL,
        created_at text NOT NULL
      );`.execute(db);
  },
};
