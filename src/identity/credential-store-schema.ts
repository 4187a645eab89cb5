/**
 * The credential tables of the control store: tenant API keys and operator tokens — secrets only
 * as hashes (api-keys.ts, operator-tokens.ts). A key belongs to a tenant (vault's table), an
 * operator token to an operator-admin person (identity's `people`).
 */
import { type Kysely, type Migration, sql } from 'kysely';
import type { OperatorScope } from './operator-scopes.ts';

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

export interface OperatorTokensTable {
  id: string; // op_<24 hex>, also the public half of the token
  /** The operator-admin person who created (or last rotated) it: people.id. */
  owner: string;
  scope: OperatorScope;
  /** A label, 1–64 printable characters. */
  name: string;
  /** SHA-256 of the secret half (see src/identity/api-keys.ts), base64url. */
  secret_hash: string;
  created_at: string;
  /** Mandatory: no operator token lives for ever. */
  expires_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
}

export interface WithCredentials {
  api_keys: ApiKeysTable;
  operator_tokens: OperatorTokensTable;
}

/**
 * Identity's part of the control store's second migration ('0002-control-tables'), which made the
 * tenant and credential tables in one step: src/server/control-store.ts runs vault's part first.
 * Its `operators` and `operator_tokens` tables are history: operatorTokensMigration replaces them.
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

/**
 * The control store's '0009-operator-tokens': operator tokens owned by operator-admin persons, one
 * scope each, with a mandatory expiry.
 *
 * It DROPS the tables of the old model — `operators` (a separate operator account with a password)
 * and its `operator_tokens` (all-powerful, no scope, often no expiry). Those tokens had no scope
 * and no owner person to answer for them, so none can be carried over: every old operator token
 * stops working with this migration, and the old operator password logins with it. Operator admins
 * are console accounts (`people`, role operator-admin) and make new, scoped tokens after signing
 * in with a second factor (docs/identity.md).
 */
export const operatorTokensMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.dropTable('operator_tokens').execute();
    await db.schema.dropTable('operators').execute();
    await db.schema
      .createTable('operator_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('owner', 'text', (c) => c.notNull().references('people.id'))
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('secret_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .addColumn('last_used_at', 'text')
      .execute();
    await db.schema.createIndex('operator_tokens_owner').on('operator_tokens').column('owner').execute();
  },
};

/**
 * PostgreSQL's credential tables, as they stand after '0009-operator-tokens' (the old operators
 * and their unscoped tokens never existed on PostgreSQL). Runs after identity's (people).
 */
export const credentialTablesPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      CREATE TABLE api_keys (
        id text PRIMARY KEY,
        tenant text NOT NULL REFERENCES tenants (id),
        secret_hash text NOT NULL,
        collections text NOT NULL,
        access text NOT NULL,
        created_at text NOT NULL,
        expires_at text,
        revoked_at text,
        last_used_at text,
        label text
      );
      CREATE INDEX api_keys_tenant ON api_keys (tenant);
      CREATE TABLE operator_tokens (
        id text PRIMARY KEY,
        owner text NOT NULL REFERENCES people (id),
        scope text NOT NULL,
        name text NOT NULL,
        secret_hash text NOT NULL,
        created_at text NOT NULL,
        expires_at text NOT NULL,
        revoked_at text,
        last_used_at text
      );
      CREATE INDEX operator_tokens_owner ON operator_tokens (owner);`.execute(db);
  },
};
