/**
 * The credential tables of the control store: tenant API keys, operators and operator tokens —
 * secrets only as hashes (api-keys.ts, operators.ts). A key belongs to a tenant (vault's table).
 */
import type { Kysely, Migration } from 'kysely';

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

export interface WithCredentials {
  api_keys: ApiKeysTable;
  operators: OperatorsTable;
  operator_tokens: OperatorTokensTable;
}

/**
 * Identity's part of the control store's second migration ('0002-control-tables'), which made the
 * tenant and credential tables in one step: src/server/control-store.ts runs vault's part first.
 */
export const credentialTablesMigration: Migration = {
  async up(db: Kysely<unknown>) {
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
  },
};
