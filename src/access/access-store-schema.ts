/**
 * The access tables of the control store: staff access grants, each tenant's approval policy, and
 * the attestations of access reviews.
 *
 *   grants          one row per request (or break-glass); what it reaches (collections, access),
 *                   why (reason, ticket), its approvals, and where it is in its life. The request
 *                   itself never changes once written, and the state moves only forward:
 *                     pending → approved → active → expired | revoked
 *                     pending → denied | revoked | expired,  approved → revoked | expired
 *                   (triggers refuse anything else, and refuse DELETE: a grant is evidence)
 *   grant_policies  the tenant's choice: customer (lockbox), four-eyes or automatic; no row means
 *                   the configured default
 *   access_reviews  attestations that a period's grants and staff accesses were reviewed; they
 *                   only grow (triggers refuse UPDATE and DELETE)
 *
 * The triggers stop mistakes, not an attacker with the file: the audit log records every change.
 * Times are ISO 8601 UTC text, booleans 0/1, as in the rest of the control store.
 */
import { type Kysely, type Migration, sql } from 'kysely';
import type { IdentityDB } from '../identity/identity-store-schema.ts';
import type { Role } from '../identity/roles.ts';
import { appendOnly, REFUSE_CHANGE_FUNCTION, refusingTrigger } from '../store/pg/refuse-change.ts';

export type GrantAccess = 'read' | 'read-write';
export type GrantState = 'pending' | 'approved' | 'active' | 'denied' | 'expired' | 'revoked';
export type ApprovalPolicy = 'customer' | 'four-eyes' | 'automatic';

export const GRANT_ACCESSES: readonly GrantAccess[] = ['read', 'read-write'];
export const GRANT_STATES: readonly GrantState[] = [
  'pending',
  'approved',
  'active',
  'denied',
  'expired',
  'revoked',
];
export const APPROVAL_POLICIES: readonly ApprovalPolicy[] = ['customer', 'four-eyes', 'automatic'];

export interface GrantsTable {
  id: string; // grt_<24 hex>
  tenant: string;
  requester: string; // person id
  requester_role: Role;
  collections: string; // JSON: "*" or string[]
  access: GrantAccess;
  reason: string;
  ticket: string;
  duration_ms: number;
  /** The tenant's policy when the request was made: a later change does not alter a running request. */
  policy: ApprovalPolicy;
  state: GrantState;
  break_glass: number; // 0 | 1
  requested_at: string;
  /** A tenant admin's approval (policy customer). */
  customer_approved_by: string | null;
  customer_approved_at: string | null;
  /** An employee's approval (policy four-eyes, and every contractor's request). */
  employee_approved_by: string | null;
  employee_approved_at: string | null;
  /** The decision that made it approved or denied (the last approval, or the denial). */
  decided_at: string | null;
  decided_by: string | null;
  activated_at: string | null;
  expires_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
}

export interface GrantPoliciesTable {
  tenant: string;
  policy: ApprovalPolicy;
  updated_at: string;
  updated_by: string; // audit actor `kind:id`
}

export interface AccessReviewsTable {
  id: string; // rev_<24 hex>
  period_from: string;
  period_to: string;
  /** null: the review covered every tenant. */
  tenant: string | null;
  note: string;
  /** The security officer who attests (a person id). */
  attested_by: string;
  /** Who recorded it, as the audit names it (`staff:psn_…` or `system:cli`). */
  recorded_by: string;
  attested_at: string;
}

export interface WithAccess {
  grants: GrantsTable;
  grant_policies: GrantPoliciesTable;
  access_reviews: AccessReviewsTable;
}

/** The control-store tables access's services use: its own and identity's (people, sessions, tenants). */
export interface AccessDB extends WithAccess, IdentityDB {}

const inList = (values: readonly string[]) => sql.join(values.map((v) => sql.lit(v)));

/** Columns of the request itself, fixed once written. */
const FIXED_COLUMNS = [
  'id',
  'tenant',
  'requester',
  'requester_role',
  'collections',
  'access',
  'reason',
  'ticket',
  'duration_ms',
  'policy',
  'break_glass',
  'requested_at',
] as const;

/** Allowed (old state, new state) moves; a pending grant stays pending while approvals gather. */
const MOVES: readonly [GrantState, GrantState][] = [
  ['pending', 'pending'],
  ['pending', 'approved'],
  ['pending', 'denied'],
  ['pending', 'revoked'],
  ['pending', 'expired'],
  ['approved', 'active'],
  ['approved', 'revoked'],
  ['approved', 'expired'],
  ['active', 'revoked'],
  ['active', 'expired'],
];

export const accessMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('grants')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('requester', 'text', (c) => c.notNull().references('people.id'))
      .addColumn('requester_role', 'text', (c) => c.notNull())
      .addColumn('collections', 'text', (c) => c.notNull())
      .addColumn('access', 'text', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('ticket', 'text', (c) => c.notNull())
      .addColumn('duration_ms', 'integer', (c) => c.notNull())
      .addColumn('policy', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('break_glass', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('requested_at', 'text', (c) => c.notNull())
      .addColumn('customer_approved_by', 'text')
      .addColumn('customer_approved_at', 'text')
      .addColumn('employee_approved_by', 'text')
      .addColumn('employee_approved_at', 'text')
      .addColumn('decided_at', 'text')
      .addColumn('decided_by', 'text')
      .addColumn('activated_at', 'text')
      .addColumn('expires_at', 'text')
      .addColumn('ended_at', 'text')
      .addColumn('end_reason', 'text')
      .addCheckConstraint('grants_state', sql`state IN (${inList(GRANT_STATES)})`)
      .addCheckConstraint('grants_access', sql`access IN (${inList(GRANT_ACCESSES)})`)
      .addCheckConstraint('grants_policy', sql`policy IN (${inList(APPROVAL_POLICIES)})`)
      .addCheckConstraint('grants_break_glass', sql`break_glass IN (0, 1)`)
      .addCheckConstraint('grants_duration', sql`duration_ms > 0`)
      .addCheckConstraint(
        'grants_active_expires',
        sql`state NOT IN ('active') OR (activated_at IS NOT NULL AND expires_at IS NOT NULL)`,
      )
      .execute();
    // liveGrant reads by primary key; these serve the person's grants, a tenant's and the sweep.
    await db.schema.createIndex('grants_requester').on('grants').columns(['requester', 'state']).execute();
    await db.schema.createIndex('grants_tenant').on('grants').columns(['tenant', 'requested_at']).execute();
    await db.schema.createIndex('grants_state').on('grants').columns(['state', 'expires_at']).execute();

    const fixed = FIXED_COLUMNS.map((c) => `NEW.${c} IS NOT OLD.${c}`).join(' OR ');
    const moves = MOVES.map(([from, to]) => `(OLD.state = '${from}' AND NEW.state = '${to}')`).join(' OR ');
    await sql
      .raw(
        `CREATE TRIGGER grants_request_fixed BEFORE UPDATE ON grants WHEN ${fixed} BEGIN SELECT RAISE(ABORT, 'a grant request does not change'); END`,
      )
      .execute(db);
    await sql
      .raw(
        `CREATE TRIGGER grants_state_forward BEFORE UPDATE ON grants WHEN NOT (${moves}) BEGIN SELECT RAISE(ABORT, 'grant states only move forward'); END`,
      )
      .execute(db);
    await sql`CREATE TRIGGER grants_no_delete BEFORE DELETE ON grants BEGIN SELECT RAISE(ABORT, 'grants are kept'); END`.execute(
      db,
    );

    await db.schema
      .createTable('grant_policies')
      .addColumn('tenant', 'text', (c) => c.primaryKey().references('tenants.id'))
      .addColumn('policy', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('updated_by', 'text', (c) => c.notNull())
      .addCheckConstraint('grant_policies_policy', sql`policy IN (${inList(APPROVAL_POLICIES)})`)
      .execute();

    await db.schema
      .createTable('access_reviews')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('period_from', 'text', (c) => c.notNull())
      .addColumn('period_to', 'text', (c) => c.notNull())
      .addColumn('tenant', 'text', (c) => c.references('tenants.id'))
      .addColumn('note', 'text', (c) => c.notNull())
      .addColumn('attested_by', 'text', (c) => c.notNull().references('people.id'))
      .addColumn('recorded_by', 'text', (c) => c.notNull())
      .addColumn('attested_at', 'text', (c) => c.notNull())
      .addCheckConstraint('access_reviews_period', sql`period_from < period_to`)
      .execute();
    await db.schema
      .createIndex('access_reviews_period')
      .on('access_reviews')
      .columns(['period_from', 'period_to'])
      .execute();
    await sql`CREATE TRIGGER access_reviews_no_update BEFORE UPDATE ON access_reviews BEGIN SELECT RAISE(ABORT, 'access reviews are append-only'); END`.execute(
      db,
    );
    await sql`CREATE TRIGGER access_reviews_no_delete BEFORE DELETE ON access_reviews BEGIN SELECT RAISE(ABORT, 'access reviews are append-only'); END`.execute(
      db,
    );
  },
};

/**
 * PostgreSQL's access tables: the same columns, constraints and triggers (plpgsql; `IS DISTINCT FROM`
 * is SQLite's `IS NOT`), and TRUNCATE refused where DELETE is.
 */
export const accessPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    const fixed = FIXED_COLUMNS.map((c) => `NEW.${c} IS DISTINCT FROM OLD.${c}`).join(' OR ');
    const moves = MOVES.map(([from, to]) => `(OLD.state = '${from}' AND NEW.state = '${to}')`).join(' OR ');
    await sql`
      CREATE TABLE grants (
        id text PRIMARY KEY,
        tenant text NOT NULL REFERENCES tenants (id),
        requester text NOT NULL REFERENCES people (id),
        requester_role text NOT NULL,
        collections text NOT NULL,
        access text NOT NULL,
        reason text NOT NULL,
        ticket text NOT NULL,
        duration_ms bigint NOT NULL,
        policy text NOT NULL,
        state text NOT NULL,
        break_glass integer NOT NULL DEFAULT 0,
        requested_at text NOT NULL,
        customer_approved_by text,
        customer_approved_at text,
        employee_approved_by text,
        employee_approved_at text,
        decided_at text,
        decided_by text,
        activated_at text,
        expires_at text,
        ended_at text,
        end_reason text,
        CONSTRAINT grants_state CHECK (state IN (${inList(GRANT_STATES)})),
        CONSTRAINT grants_access CHECK (access IN (${inList(GRANT_ACCESSES)})),
        CONSTRAINT grants_policy CHECK (policy IN (${inList(APPROVAL_POLICIES)})),
        CONSTRAINT grants_break_glass CHECK (break_glass IN (0, 1)),
        CONSTRAINT grants_duration CHECK (duration_ms > 0),
        CONSTRAINT grants_active_expires CHECK (state NOT IN ('active') OR (activated_at IS NOT NULL AND expires_at IS NOT NULL))
      );
      CREATE INDEX grants_requester ON grants (requester, state);
      CREATE INDEX grants_tenant ON grants (tenant, requested_at);
      CREATE INDEX grants_state ON grants (state, expires_at);
      CREATE TABLE grant_policies (
        tenant text PRIMARY KEY REFERENCES tenants (id),
        policy text NOT NULL,
        updated_at text NOT NULL,
        updated_by text NOT NULL,
        CONSTRAINT grant_policies_policy CHECK (policy IN (${inList(APPROVAL_POLICIES)}))
      );
      CREATE TABLE access_reviews (
        id text PRIMARY KEY,
        period_from text NOT NULL,
        period_to text NOT NULL,
        tenant text REFERENCES tenants (id),
        note text NOT NULL,
        attested_by text NOT NULL REFERENCES people (id),
        recorded_by text NOT NULL,
        attested_at text NOT NULL,
        CONSTRAINT access_reviews_period CHECK (period_from < period_to)
      );
      CREATE INDEX access_reviews_period ON access_reviews (period_from, period_to);
      ${sql.raw(REFUSE_CHANGE_FUNCTION)}
      ${sql.raw(refusingTrigger('grants_request_fixed', 'grants', 'UPDATE', 'a grant request does not change', fixed))}
      ${sql.raw(refusingTrigger('grants_state_forward', 'grants', 'UPDATE', 'grant states only move forward', `NOT (${moves})`))}
      ${sql.raw(refusingTrigger('grants_no_delete', 'grants', 'DELETE', 'grants are kept'))}
      CREATE TRIGGER grants_no_truncate BEFORE TRUNCATE ON grants FOR EACH STATEMENT EXECUTE FUNCTION tresor_refuse_change('grants are kept');
      ${sql.raw(appendOnly('access_reviews', 'access reviews are append-only'))}`.execute(db);
  },
};
