/**
 * The identity tables of the control store: console accounts (operator staff and customer users),
 * their second factors, login throttle state, pending two-step logins and server-side sessions.
 *
 *   people          one row per account; side operator|customer, a role of that side (roles.ts), a
 *                   tenant for customer accounts only; e-mail lower-case and unique per side+tenant
 *                   among accounts not removed; password only as an argon2id PHC string; an
 *                   enrolment (or reset) token only as a SHA-256 hash
 *   second_factors  totp (secret sealed with AES-256-GCM under the caller's factor key, AAD bound to
 *                   person and factor; last accepted RFC 6238 step), webauthn (credential id and
 *                   public key from the ceremony in webauthn.ts), recovery (one set of hashed codes)
 *   login_throttle  per subject (`account:<hash>` or `address:<ip>`): consecutive failures, lockout,
 *                   failure times of the last hour (SP 800-63B §5.2.2)
 *   pending_logins  the handle between password and second factor, only as a SHA-256 hash
 *   sessions        token and CSRF token only as SHA-256 hashes; idle and absolute expiry
 *   system_keys     Tresor's own keys, only wrapped by keyd (factor-key.ts)
 *
 * The credential tables (API keys, operator tokens) are in credential-store-schema.ts,
 * WebAuthn's in webauthn-store.ts; IdentityDB below names them all.
 *
 * Times are ISO 8601 UTC text, as in the rest of the control store.
 */
import { type Kysely, type Migration, sql } from 'kysely';
import type { WithAuditEvents } from '../audit/event.ts';
import type { WithTenants } from '../vault/vault-control-schema.ts';
import type { WithCredentials } from './credential-store-schema.ts';
import { ALL_ROLES, type Role, SIDES, type Side } from './roles.ts';
import type { WithWebAuthn } from './webauthn-store.ts';

export type SecondFactorKind = 'totp' | 'webauthn' | 'recovery';
export const SECOND_FACTOR_KINDS: readonly SecondFactorKind[] = ['totp', 'webauthn', 'recovery'];

export interface PeopleTable {
  id: string; // psn_<24 hex>
  side: Side;
  role: Role;
  tenant: string | null; // customer accounts only
  email: string; // lower-case
  name: string | null;
  password_hash: string | null; // argon2id PHC; null until set (or after an admin reset)
  password_set_at: string | null;
  /** SHA-256 (base64url) of the one-time enrolment or password-reset token; null when none is open. */
  enrolment_token_hash: string | null;
  enrolment_expires_at: string | null;
  /** Set once a password and a second factor are both in place; login needs it. */
  enrolled_at: string | null;
  created_at: string;
  updated_at: string;
  disabled_at: string | null;
  removed_at: string | null;
}

export interface SecondFactorsTable {
  id: string; // fac_<24 hex>
  person: string;
  kind: SecondFactorKind;
  label: string | null;
  /** totp: `v1.<nonce>.<ciphertext>.<tag>` (base64url), AES-256-GCM under the factor key. */
  secret_sealed: string | null;
  /** totp: the RFC 6238 step of the last accepted code (replays refused). */
  last_step: number | null;
  /** webauthn: base64url credential id. */
  credential_id: string | null;
  /** webauthn: the COSE public key, base64url, as the ceremony stored it. */
  public_key: string | null;
  sign_count: number | null;
  /** recovery: JSON (string | null)[]: the hashes of recovery-codes.ts, null for a used slot. */
  recovery_hashes: string | null;
  created_at: string;
  /** null while an enrolment is not confirmed (a pending TOTP). */
  confirmed_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface LoginThrottleTable {
  subject: string; // account:<sha-256 hex> | address:<ip>
  consecutive_failures: number;
  last_failure_at: string | null;
  locked_until: string | null;
  /** JSON number[]: epoch ms of the failures in the last hour, oldest first. */
  recent_failures: string;
  updated_at: string;
}

export interface PendingLoginsTable {
  handle_hash: string;
  /** null when the password step failed: completing it fails like any other wrong answer. */
  person: string | null;
  account_subject: string;
  address: string;
  created_at: string;
  expires_at: string;
  failures: number;
  used_at: string | null;
}

export interface SessionsTable {
  id: string; // ses_<24 hex>, public: listing and revoking
  token_hash: string; // SHA-256 of the cookie value, base64url
  person: string;
  side: Side;
  tenant: string | null;
  created_at: string;
  last_seen_at: string;
  idle_expires_at: string;
  absolute_expires_at: string;
  revoked_at: string | null;
  revoke_reason: string | null;
  csrf_hash: string; // SHA-256 of the CSRF token, base64url
  factors: string; // JSON: e.g. ["password","totp"]
  fresh_2fa_at: string | null;
  address: string | null;
  user_agent: string | null;
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

export interface WithIdentity {
  people: PeopleTable;
  second_factors: SecondFactorsTable;
  login_throttle: LoginThrottleTable;
  pending_logins: PendingLoginsTable;
  sessions: SessionsTable;
}

export interface WithSystemKeys {
  system_keys: SystemKeysTable;
}

/**
 * The control-store tables identity's services use: its own, the tenants that keys and customer
 * accounts belong to, and the audit outbox.
 */
export interface IdentityDB
  extends WithIdentity,
    WithCredentials,
    WithWebAuthn,
    WithSystemKeys,
    WithTenants,
    WithAuditEvents {}

const inList = (values: readonly string[]) => sql.join(values.map((v) => sql.lit(v)));

export const identityMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('people')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('side', 'text', (c) => c.notNull())
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('tenant', 'text', (c) => c.references('tenants.id'))
      .addColumn('email', 'text', (c) => c.notNull())
      .addColumn('name', 'text')
      .addColumn('password_hash', 'text')
      .addColumn('password_set_at', 'text')
      .addColumn('enrolment_token_hash', 'text', (c) => c.unique())
      .addColumn('enrolment_expires_at', 'text')
      .addColumn('enrolled_at', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('disabled_at', 'text')
      .addColumn('removed_at', 'text')
      .addCheckConstraint('people_side', sql`side IN (${inList(SIDES)})`)
      .addCheckConstraint('people_role', sql`role IN (${inList(ALL_ROLES)})`)
      .addCheckConstraint(
        'people_tenant',
        sql`(side = 'operator' AND tenant IS NULL) OR (side = 'customer' AND tenant IS NOT NULL)`,
      )
      .addCheckConstraint('people_email_lower', sql`email = lower(email)`)
      .execute();
    // One live account per e-mail per side and tenant; a removed account frees its address.
    await sql`CREATE UNIQUE INDEX people_login ON people (side, coalesce(tenant, ''), email) WHERE removed_at IS NULL`.execute(
      db,
    );
    await db.schema.createIndex('people_tenant').on('people').column('tenant').execute();

    await db.schema
      .createTable('second_factors')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('person', 'text', (c) => c.notNull().references('people.id'))
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('label', 'text')
      .addColumn('secret_sealed', 'text')
      .addColumn('last_step', 'integer')
      .addColumn('credential_id', 'text', (c) => c.unique())
      .addColumn('public_key', 'text')
      .addColumn('sign_count', 'integer')
      .addColumn('recovery_hashes', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('confirmed_at', 'text')
      .addColumn('last_used_at', 'text')
      .addColumn('revoked_at', 'text')
      .addCheckConstraint('second_factors_kind', sql`kind IN (${inList(SECOND_FACTOR_KINDS)})`)
      .addCheckConstraint('second_factors_totp_sealed', sql`kind <> 'totp' OR secret_sealed IS NOT NULL`)
      .execute();
    await db.schema.createIndex('second_factors_person').on('second_factors').column('person').execute();

    await db.schema
      .createTable('login_throttle')
      .addColumn('subject', 'text', (c) => c.primaryKey())
      .addColumn('consecutive_failures', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('last_failure_at', 'text')
      .addColumn('locked_until', 'text')
      .addColumn('recent_failures', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('pending_logins')
      .addColumn('handle_hash', 'text', (c) => c.primaryKey())
      .addColumn('person', 'text', (c) => c.references('people.id'))
      .addColumn('account_subject', 'text', (c) => c.notNull())
      .addColumn('address', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('failures', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('used_at', 'text')
      .execute();
    await db.schema.createIndex('pending_logins_expires').on('pending_logins').column('expires_at').execute();

    await db.schema
      .createTable('sessions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('token_hash', 'text', (c) => c.notNull().unique())
      .addColumn('person', 'text', (c) => c.notNull().references('people.id'))
      .addColumn('side', 'text', (c) => c.notNull())
      .addColumn('tenant', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('last_seen_at', 'text', (c) => c.notNull())
      .addColumn('idle_expires_at', 'text', (c) => c.notNull())
      .addColumn('absolute_expires_at', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .addColumn('revoke_reason', 'text')
      .addColumn('csrf_hash', 'text', (c) => c.notNull())
      .addColumn('factors', 'text', (c) => c.notNull())
      .addColumn('fresh_2fa_at', 'text')
      .addColumn('address', 'text')
      .addColumn('user_agent', 'text')
      .execute();
    await db.schema.createIndex('sessions_person').on('sessions').column('person').execute();
  },
};

export const systemKeysMigration: Migration = {
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

/**
 * PostgreSQL's identity tables: the same columns and constraints; counters and RFC 6238 steps are
 * bigint. system_keys is here too (a separate migration on SQLite only because it came later).
 */
export const identityPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      CREATE TABLE people (
        id text PRIMARY KEY,
        side text NOT NULL,
        role text NOT NULL,
        tenant text REFERENCES tenants (id),
        email text NOT NULL,
        name text,
        password_hash text,
        password_set_at text,
        enrolment_token_hash text UNIQUE,
        enrolment_expires_at text,
        enrolled_at text,
        created_at text NOT NULL,
        updated_at text NOT NULL,
        disabled_at text,
        removed_at text,
        CONSTRAINT people_side CHECK (side IN (${inList(SIDES)})),
        CONSTRAINT people_role CHECK (role IN (${inList(ALL_ROLES)})),
        CONSTRAINT people_tenant CHECK ((side = 'operator' AND tenant IS NULL) OR (side = 'customer' AND tenant IS NOT NULL)),
        CONSTRAINT people_email_lower CHECK (email = lower(email))
      );
      CREATE UNIQUE INDEX people_login ON people (side, coalesce(tenant, ''), email) WHERE removed_at IS NULL;
      CREATE INDEX people_tenant ON people (tenant);
      CREATE TABLE second_factors (
        id text PRIMARY KEY,
        person text NOT NULL REFERENCES people (id),
        kind text NOT NULL,
        label text,
        secret_sealed text,
        last_step bigint,
        credential_id text UNIQUE,
        public_key text,
        sign_count bigint,
        recovery_hashes text,
        created_at text NOT NULL,
        confirmed_at text,
        last_used_at text,
        revoked_at text,
        CONSTRAINT second_factors_kind CHECK (kind IN (${inList(SECOND_FACTOR_KINDS)})),
        CONSTRAINT second_factors_totp_sealed CHECK (kind <> 'totp' OR secret_sealed IS NOT NULL)
      );
      CREATE INDEX second_factors_person ON second_factors (person);
      CREATE TABLE login_throttle (
        subject text PRIMARY KEY,
        consecutive_failures integer NOT NULL DEFAULT 0,
        last_failure_at text,
        locked_until text,
        recent_failures text NOT NULL DEFAULT '[]',
        updated_at text NOT NULL
      );
      CREATE TABLE pending_logins (
        handle_hash text PRIMARY KEY,
        person text REFERENCES people (id),
        account_subject text NOT NULL,
        address text NOT NULL,
        created_at text NOT NULL,
        expires_at text NOT NULL,
        failures integer NOT NULL DEFAULT 0,
        used_at text
      );
      CREATE INDEX pending_logins_expires ON pending_logins (expires_at);
      CREATE TABLE sessions (
        id text PRIMARY KEY,
        token_hash text NOT NULL UNIQUE,
        person text NOT NULL REFERENCES people (id),
        side text NOT NULL,
        tenant text,
        created_at text NOT NULL,
        last_seen_at text NOT NULL,
        idle_expires_at text NOT NULL,
        absolute_expires_at text NOT NULL,
        revoked_at text,
        revoke_reason text,
        csrf_hash text NOT NULL,
        factors text NOT NULL,
        fresh_2fa_at text,
        address text,
        user_agent text
      );
      CREATE INDEX sessions_person ON sessions (person);
      CREATE TABLE system_keys (
        name text PRIMARY KEY,
        key_id text NOT NULL,
        keyd_tenant text NOT NULL,
        wrapped text NOT NULL,
        created_at text NOT NULL
      );`.execute(db);
  },
};
