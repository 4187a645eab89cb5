/**
 * The control store: Tresor's own bookkeeping, apart from every tenant's data store. It holds who
 * the tenants are and where they are in their life (vault), the credentials and console accounts
 * that reach the API (identity — secrets only as hashes), staff access grants (access), the signed
 * deletion certificates of closed tenants, the backups taken and where they are (backup), the alerts raised and their deliveries (alerts), and the audit events and log of all this (audit).
 * It never holds a customer record: that is what lets operator admins manage tenants here without
 * ever reaching a tenant's data (docs/architecture.md, invariant 7).
 *
 * Each domain defines its own tables and migrations; only this file, at the top, composes them.
 * Times are ISO 8601 UTC text and contract dates `YYYY-MM-DD`, so SQLite and PostgreSQL store
 * and compare them alike. Booleans are integers 0/1 for the same reason.
 */
import { join } from 'node:path';
import type { Migration } from 'kysely';
import type pg from 'pg';
import { type AccessDB, accessMigration, accessPgMigration } from '../access/access-store-schema.ts';
import { type AlertsDB, alertsMigration, alertsPgMigration } from '../alerts/alert-store-schema.ts';
import {
  auditArchivedMigration,
  auditArchivedPgMigration,
  type WithAuditArchived,
} from '../audit/archived-cursor.ts';
import {
  auditEventsMigration,
  auditEventsPgMigration,
  auditMovedMigration,
  auditMovedPgMigration,
  type WithAuditEvents,
} from '../audit/event.ts';
import { auditLeafBlocksMigration, auditLeafBlocksPgMigration } from '../audit/leaf-blocks-migration.ts';
import {
  auditLogIdentityMigration,
  auditLogIdentityPgMigration,
  type WithAuditLogIdentity,
} from '../audit/log-identity.ts';
import {
  auditLogMigration,
  auditLogPgMigration,
  auditNodesLevelsMigration,
  auditNodesLevelsPgMigration,
  type WithAuditLog,
} from '../audit/log-schema.ts';
import {
  pendingSourcesMigration,
  pendingSourcesPgMigration,
  type WithPendingSources,
} from '../audit/pending-sources.ts';
import {
  auditSinkCursorsMigration,
  auditSinkCursorsPgMigration,
  type WithAuditSinkCursors,
} from '../audit/sinks/cursors.ts';
import { type BackupDB, backupRunsMigration, backupRunsPgMigration } from '../backup/backup-store-schema.ts';
import {
  credentialTablesMigration,
  credentialTablesPgMigration,
  operatorTokensMigration,
} from '../identity/credential-store-schema.ts';
import {
  type IdentityDB,
  identityMigration,
  identityPgMigration,
  systemKeysMigration,
} from '../identity/identity-store-schema.ts';
import { webAuthnMigration, webAuthnPgMigration } from '../identity/webauthn-store.ts';
import { type ProbeDB, probeResultsMigration, probeResultsPgMigration } from '../probe/probe-results.ts';
import { openPgStore, type PgStore } from '../store/pg/store.ts';
import { openSqliteStore, type SqliteStore } from '../store/sqlite/store.ts';
import type { MigrationRenames, Migrations } from '../store/types.ts';
import { idempotencyKeysMigration } from '../vault/idempotency.ts';
import { retentionDueMigration, type WithRetentionDue } from '../vault/retention-due.ts';
import {
  tenantTablesMigration,
  tenantTablesPgMigration,
  type VaultControlDB,
} from '../vault/vault-control-schema.ts';

/** Every table of the control store. */
export interface ControlDB
  extends AccessDB,
    AlertsDB,
    BackupDB,
    IdentityDB,
    VaultControlDB,
    WithAuditArchived,
    WithAuditEvents,
    ProbeDB,
    WithAuditLog,
    WithAuditLogIdentity,
    WithAuditSinkCursors,
    WithPendingSources,
    WithRetentionDue {}

/** The control store's file in a data folder. */
export const CONTROL_STORE_FILE = 'control.sqlite';

/** The control store of a data folder. */
export function controlStorePath(dataDir: string): string {
  return join(dataDir, CONTROL_STORE_FILE);
}

/**
 * The tenant and credential tables came in one migration before each domain defined its own
 * tables; it keeps its name (stores record it) and runs vault's part, then identity's.
 */
const controlTablesMigration: Migration = {
  async up(db) {
    await tenantTablesMigration.up(db);
    await credentialTablesMigration.up(db);
  },
};

/** The control store's SQLite migrations, applied in name order by openSqliteStore. */
export const controlStoreMigrations: Migrations = {
  '0001-audit-events': auditEventsMigration,
  '0002-control-tables': controlTablesMigration,
  '0003-audit-log': auditLogMigration,
  '0004-identity': identityMigration,
  '0005-webauthn': webAuthnMigration,
  '0006-access': accessMigration,
  '0007-system-keys': systemKeysMigration,
  '0008-audit-log-identity': auditLogIdentityMigration,
  // Drops the old all-powerful operator tokens (they stop working): see the migration's comment.
  '0009-operator-tokens': operatorTokensMigration,
  '0010-backup-runs': backupRunsMigration,
  '0011-probe-results': probeResultsMigration,
  '0012-alerts': alertsMigration,
  // Idempotency-Key on tenant creates (vault/tenant-provision.ts): the same table as a tenant store's.
  '0013-idempotency-keys': idempotencyKeysMigration,
  '0014-audit-sink-cursors': auditSinkCursorsMigration,
  // Outbox rows already in the log are removed (src/audit/outbox-removal.ts).
  '0015-audit-moved': auditMovedMigration,
  // Tree nodes of levels 1–3 are recomputed, no longer stored (src/audit/log-schema.ts).
  '0016-audit-nodes-levels': auditNodesLevelsMigration,
  // Which tenants' outboxes may hold unmoved events: the sequencer's start opens only those.
  '0017-audit-pending-sources': pendingSourcesMigration,
  // When each tenant's retention is next due: the retention job opens only those tenants.
  '0018-vault-retention-due': retentionDueMigration,
  // The leaves move into compressed blocks, existing rows converted (src/audit/leaf-blocks-migration.ts).
  '0019-audit-leaf-blocks': auditLeafBlocksMigration,
  // The archived cursor: the live log may drop what sealed segments hold below it (src/audit/archived-cursor.ts).
  '0020-audit-archived': auditArchivedMigration,
};

/**
 * Names that stores made before the migrations were numbered without gaps recorded (then 0005 was
 * missing and 0007 was used twice): renamed in place, in this order, before migrating, so such a
 * store finds its migrations applied instead of missing.
 */
export const renamedControlStoreMigrations: MigrationRenames = [
  ['0006-webauthn', '0005-webauthn'],
  ['0007-access', '0006-access'],
];

/** Opens (creating it if needed, unless `fileMustExist`) and migrates a control store. */
export function openControlStore(
  path: string,
  options: { fileMustExist?: boolean; durable?: boolean } = {},
): Promise<SqliteStore<ControlDB>> {
  return openSqliteStore<ControlDB>(path, controlStoreMigrations, {
    ...options,
    renamedMigrations: renamedControlStoreMigrations,
  });
}

/** The PostgreSQL schema of the control store's tables (tenants have a schema each: tenant_<id>). */
export const CONTROL_SCHEMA = 'tresor';

/**
 * The control store's PostgreSQL history: its own numbering, each domain's tables whole as they
 * stand on SQLite after 0001–0012 (nothing of SQLite's history is replayed). In dependency order:
 * tenants before what references them, people before operator tokens.
 */
export const controlStorePgMigrations: Migrations = {
  '0001-audit-events': auditEventsPgMigration,
  '0002-tenants': tenantTablesPgMigration,
  '0003-identity': identityPgMigration,
  '0004-credentials': credentialTablesPgMigration,
  '0005-webauthn': webAuthnPgMigration,
  '0006-access': accessPgMigration,
  '0007-audit-log': auditLogPgMigration,
  '0008-audit-log-identity': auditLogIdentityPgMigration,
  '0009-backup-runs': backupRunsPgMigration,
  '0010-probe-results': probeResultsPgMigration,
  '0011-alerts': alertsPgMigration,
  '0012-idempotency-keys': idempotencyKeysMigration,
  '0013-audit-sink-cursors': auditSinkCursorsPgMigration,
  '0014-audit-moved': auditMovedPgMigration,
  '0015-audit-nodes-levels': auditNodesLevelsPgMigration,
  '0016-audit-pending-sources': pendingSourcesPgMigration,
  '0017-vault-retention-due': retentionDueMigration,
  '0018-audit-leaf-blocks': auditLeafBlocksPgMigration,
  '0019-audit-archived': auditArchivedPgMigration,
};

/**
 * Opens and migrates the control store in schema `tresor` of a PostgreSQL database, given its URL
 * (the store makes and ends its pool) or a pool from createPgPool shared with the tenant stores.
 */
export function openPgControlStore(
  connection: string | pg.Pool,
  options: { maxBatch?: number } = {},
): Promise<PgStore<ControlDB>> {
  return openPgStore<ControlDB>({
    ...(typeof connection === 'string' ? { url: connection } : { pool: connection }),
    schema: CONTROL_SCHEMA,
    migrations: controlStorePgMigrations,
    ...options,
  });
}
