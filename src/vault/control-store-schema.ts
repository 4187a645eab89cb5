/**
 * The control store: Tresor's own bookkeeping, apart from every tenant's data store. It holds who
 * the tenants are and where they are in their life (provisioning → active → closing → closed),
 * the credentials that reach the API (API keys, operators, operator tokens — secrets only as
 * hashes), the signed deletion certificates of closed tenants, and the audit events of all this.
 * It never holds a customer record: that is what lets operator admins manage tenants here without
 * ever reaching a tenant's data (DESIGN.md invariant 7).
 *
 * Times are ISO 8601 UTC text and contract dates `YYYY-MM-DD`, so SQLite and PostgreSQL store
 * and compare them alike. Booleans are integers 0/1 for the same reason.
 */
import { type Kysely, type Migration, sql } from 'kysely';
import { accessMigration, type WithAccess } from '../access/access-store-schema.ts';
import { auditEventsMigration, type WithAuditEvents } from '../audit/event.ts';
import { auditLogMigration, type WithAuditLog } from '../audit/log-schema.ts';
import { identityMigration, type WithIdentity } from '../identity/identity-store-schema.ts';
import { type WithWebAuthn, webAuthnMigration } from '../identity/webauthn-store.ts';
import type { Migrations } from '../store/types.ts';

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

export interface ApiKeysTable {
  id: string; // ak_<24 hex>, also the public half of the token
  tenant: string;
  /** SHA-256 of the secret half (see src/identity/api-keys.ts), base64url. */
  secret_hash: string;
  collections: string; // JSON: "*" or string[]
  access: string; // JSON: subset of ["read","write","admin"]
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  label: string | null;
}

export interface OperatorsTable {
  id: string; // opr_<24 hex>
  email: string; // lower-case
  /** argon2id PHC string. */
  password_hash: string;
  created_at: string;
  disabled_at: string | null;
}

export interface OperatorTokensTable {
  id: string; // op_<24 hex>
  operator: string;
  secret_hash: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

export interface DeletionCertificatesTable {
  tenant: string;
  /** The signed bytes: RFC 8785 canonical JSON of the certificate. */
  body: string;
  signature: string; // base64 Ed25519 signature over body
  key_name: string; // keyd signing key name, e.g. tresor-keyd/deletion-certificate
  created_at: string;
}

/**
 * Keys of Tresor's own (not a tenant's), stored only wrapped by keyd under a reserved keyd tenant
 * id; unwrapped into memory at start (e.g. the identity factor key: src/identity/factor-key.ts).
 */
export interface SystemKeysTable {
  name: string;
  /** keyd's data key id and the keyd tenant that wraps it. */
  key_id: string;
  keyd_tenant: string;
  /** base64 of the wrapped data key. */
  wrapped: string;
  created_at: string;
}

export interface ControlDB extends WithAuditEvents, WithAuditLog, WithIdentity, WithWebAuthn, WithAccess {
  system_keys: SystemKeysTable;
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  operators: OperatorsTable;
  operator_tokens: OperatorTokensTable;
  deletion_certificates: DeletionCertificatesTable;
}

const inList = (values: readonly string[]) => sql.join(values.map((v) => sql.lit(v)));

const controlTablesMigration: Migration = {
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
      .createTable('api_keys')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('secret_hash', 'text', (c) => c.notNull())
      .addColumn('collections', 'text', (c) => c.notNull())
      .addColumn('access', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text')
      .addColumn('revoked_at', 'text')
      .addColumn('last_used_at', 'text')
      .addColumn('label', 'text')
      .execute();
    await db.schema.createIndex('api_keys_tenant').on('api_keys').column('tenant').execute();

    await db.schema
      .createTable('operators')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('email', 'text', (c) => c.notNull().unique())
      .addColumn('password_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('disabled_at', 'text')
      .execute();

    await db.schema
      .createTable('operator_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('operator', 'text', (c) => c.notNull().references('operators.id'))
      .addColumn('secret_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text')
      .addColumn('revoked_at', 'text')
      .addColumn('last_used_at', 'text')
      .execute();
    await db.schema
      .createIndex('operator_tokens_operator')
      .on('operator_tokens')
      .column('operator')
      .execute();

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

const systemKeysMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('system_keys')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('keyd_tenant', 'text', (c) => c.notNull())
      .addColumn('wrapped', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
  },
};

/** The control store's migrations, applied in name order by openSqliteStore. */
export const controlStoreMigrations: Migrations = {
  '0001-audit-events': auditEventsMigration,
  '0002-control-tables': controlTablesMigration,
  '0003-audit-log': auditLogMigration,
  '0004-identity': identityMigration,
  '0006-webauthn': webAuthnMigration,
  '0007-access': accessMigration,
  '0007-system-keys': systemKeysMigration,
};
