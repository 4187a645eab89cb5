/**
 * Where a deployment's data lives, chosen in ONE place from its config: SQLite files in the data
 * folder (the embedded default, `npm start`), or a PostgreSQL database (`database.url`). Everything
 * that opens the control store, the tenant stores or reads the audit log — the server, `tresor
 * init`, `tresor audit verify`, `tresor access`, the scheduled verification — asks this module, so
 * no caller knows which backend it runs on beyond what it is handed:
 *
 *   control         the control store (raw: the sequencer writes the log through it)
 *   tenantStores    one store per tenant (a SQLite file each, or a PostgreSQL schema each)
 *   sequencer       what the audit sequencer needs of the backend: on PostgreSQL the advisory-lock
 *                   lease (one sequencer per database, several server processes) and `$n` parameters;
 *                   on SQLite nothing (one process owns the folder; the worker-thread path applies)
 *   openLog()       one consistent read-only snapshot of the audit log, for the verifier
 *
 * The database URL may carry a password: `location` and every message use its redacted form.
 */
import { sql } from 'kysely';
import { readArchivedEndOfFile, readArchivedEndOfPg } from '../audit/archived-end.ts';
import { type AuditLogSnapshot, openSqliteLogSnapshot } from '../audit/log-reader.ts';
import { openPgLogSnapshot } from '../audit/log-reader-pg.ts';
import { CONTROL_SOURCE } from '../audit/sequencer.ts';
import type { SequencerLease } from '../audit/sequencer-lease.ts';
import { createPgSequencerLease } from '../audit/sequencer-lease-pg.ts';
import { redactDatabaseUrl } from '../config/database-url.ts';
import type { DatabaseConfig } from '../config/server-config.ts';
import { OUTBOX_CHANNEL } from '../store/pg/group-commit.ts';
import { listenPg, type PgListener } from '../store/pg/listener.ts';
import { createPgTenantStores, TENANT_SCHEMA_PREFIX } from '../store/pg/tenant-stores.ts';
import { type HandleBudget, tenantStoreBudget } from '../store/sqlite/handle-budget.ts';
import { createTenantStores, type TenantStores } from '../store/sqlite/tenant-stores.ts';
import type { Store } from '../store/types.ts';
import {
  type TenantDB,
  tenantStoreMigrations,
  tenantStorePgMigrations,
} from '../vault/tenant-store-schema.ts';
import {
  CONTROL_SCHEMA,
  type ControlDB,
  controlStorePath,
  openControlStore,
  openPgControlStore,
} from './control-store.ts';

export interface BackendConfig {
  dataDir: string;
  database: DatabaseConfig;
  /** Client connections the server holds at most: set aside from the file budget of tenant stores. */
  connections?: { max: number };
  /** SQLite: tenant stores kept open at most, instead of the budget derived from the file limit. */
  maxOpenTenantStores?: number;
}

/** What the audit sequencer needs to know of the backend (audit-log.ts passes it on). */
export interface SequencerBackend {
  /** On a database several processes share: the lease that makes one of them the sequencer. */
  lease?: SequencerLease;
  /** Raw statements take `$1, $2…` parameters. */
  numberedParameters?: boolean;
  /** The channel each log write NOTIFYs (PostgreSQL): the other processes follow the log at once. */
  logChannel?: string;
  /** The sequencer's fallback sweeps (the holder's of the outboxes, a standby's of the log), ms. */
  sweepMs?: number;
}

/** What the other server processes on the same database tell this one (PostgreSQL: LISTEN). */
export interface ClusterWakeups {
  /** A process committed audit events to this source's outbox (CONTROL_SOURCE or a tenant id). */
  outbox(source: string): void;
  /** The lease holder's sequencer appended to the log. */
  logAppended(): void;
  /** The listening connection is (back) in place: notifications may have been missed meanwhile. */
  connected(): void;
  /** The listening connection failed (for the log: never the URL). */
  problem(reason: string): void;
  /** Another process changed what this one may hold in a cache: drop it. */
  invalidate(notice: CacheNotice): void;
}

/**
 * What a process tells the others to drop from their caches: a revoked API key's principal,
 * everything of a tenant that is closing or closed (its keys' principals, its data keys), or a
 * tenant's store handle and data keys after its store was restored in place (`tenant-store`).
 */
export type CacheNotice =
  | { kind: 'api-key'; id: string }
  | { kind: 'tenant'; id: string }
  | { kind: 'tenant-store'; id: string };

/** The channel of cache notices (payload: `api-key:<id>`, `tenant:<id>` or `tenant-store:<id>`). */
export const CACHE_CHANNEL = 'tresor_cache';

/** The channel the sequencer's log writes NOTIFY (payload: the log's new size). */
export const LOG_CHANNEL = 'tresor_log';

export interface DataBackend {
  readonly kind: DatabaseConfig['kind'];
  /** For messages: the control store's file, or the database URL with its password redacted. */
  readonly location: string;
  readonly control: Store<ControlDB>;
  readonly tenantStores: TenantStores<TenantDB>;
  /** A fresh sequencer setting (the lease is started and closed by the sequencer that gets it). */
  sequencer(onProblem?: (reason: string) => void): SequencerBackend;
  openLog(): Promise<AuditLogSnapshot>;
  /**
   * PostgreSQL: LISTENs for the other server processes' wake-ups (outbox commits, log appends) on
   * a connection of its own; none on SQLite (one process owns the folder).
   */
  listen?(wakeups: ClusterWakeups): PgListener;
  /** PostgreSQL: tells every server process on the database (this one too) to drop `notice`'s entries. */
  announce?(notice: CacheNotice): Promise<void>;
  /** SQLite: the tenant stores kept open at most, and the file limit it came from (logged at start). */
  handleBudget?: HandleBudget;
}

/** Opens (creating and migrating as needed) the control store and the tenant stores' registry. */
export async function openDataBackend(config: BackendConfig): Promise<DataBackend> {
  if (config.database.kind === 'postgres') {
    const { url } = config.database;
    const shown = redactDatabaseUrl(url);
    const control = await openPgControlStore(url);
    let tenantStores: TenantStores<TenantDB>;
    try {
      tenantStores = await createPgTenantStores<TenantDB>({ url, migrations: tenantStorePgMigrations });
    } catch (error) {
      await control.close();
      throw error;
    }
    return {
      kind: 'postgres',
      location: shown,
      control,
      tenantStores,
      sequencer: (onProblem) => ({
        lease: createPgSequencerLease({ url, ...(onProblem ? { onProblem } : {}) }),
        numberedParameters: true,
        logChannel: LOG_CHANNEL,
      }),
      listen: (wakeups) =>
        listenPg({
          url,
          channels: [OUTBOX_CHANNEL, LOG_CHANNEL, CACHE_CHANNEL],
          onNotification(channel, payload) {
            if (channel === LOG_CHANNEL) return wakeups.logAppended();
            if (channel === CACHE_CHANNEL) {
              const notice = parseCacheNotice(payload);
              if (notice !== undefined) wakeups.invalidate(notice);
              return;
            }
            const source = sourceOfSchema(payload);
            if (source !== undefined) wakeups.outbox(source);
          },
          onConnected: () => wakeups.connected(),
          onProblem: (reason) => wakeups.problem(reason),
        }),
      async announce(notice) {
        await sql`SELECT pg_notify(${CACHE_CHANNEL}, ${`${notice.kind}:${notice.id}`})`.execute(control.db);
      },
      openLog: () => openPgLogSnapshot({ url, shown, schema: CONTROL_SCHEMA }),
    };
  }
  const path = controlStorePath(config.dataDir);
  const control = await openControlStore(path);
  const budget = tenantStoreBudget(config.connections?.max ?? 0);
  const maxOpen = config.maxOpenTenantStores ?? budget.maxOpen;
  return {
    kind: 'sqlite',
    location: path,
    control,
    tenantStores: createTenantStores<TenantDB>({
      dir: config.dataDir,
      migrations: tenantStoreMigrations,
      maxOpen,
    }),
    handleBudget: { maxOpen, fileLimit: budget.fileLimit },
    sequencer: () => ({}),
    openLog: async () => openSqliteLogSnapshot(path),
  };
}

/**
 * The control store alone, for commands that work on it beside (or without) a running server;
 * `mustExist`: refuse to create one (a wrong data folder or database must not start a new deployment).
 */
export async function openControlOf(
  config: BackendConfig,
  options: { mustExist?: boolean } = {},
): Promise<Store<ControlDB>> {
  if (config.database.kind === 'postgres') return openPgControlStore(config.database.url);
  return openControlStore(controlStorePath(config.dataDir), { fileMustExist: options.mustExist === true });
}

/** One read-only snapshot of the deployment's audit log (`tresor audit verify`, the verify job). */
export async function openAuditLogOf(config: BackendConfig): Promise<AuditLogSnapshot> {
  if (config.database.kind === 'postgres') {
    const { url } = config.database;
    return openPgLogSnapshot({ url, shown: redactDatabaseUrl(url), schema: CONTROL_SCHEMA });
  }
  return openSqliteLogSnapshot(controlStorePath(config.dataDir));
}

/**
 * The deployment's archived end E (audit/archived-end.ts): entries below it are only in sealed
 * segments. Read on a read-only connection of its own; 0 where the store has no `audit_archived`.
 */
export async function archivedEndOf(config: BackendConfig): Promise<number> {
  if (config.database.kind === 'postgres') {
    const { url } = config.database;
    return readArchivedEndOfPg({ url, shown: redactDatabaseUrl(url), schema: CONTROL_SCHEMA });
  }
  return readArchivedEndOfFile(controlStorePath(config.dataDir));
}

/** Where the deployment's data is, for messages (the URL's password redacted). */
export function backendLocation(config: BackendConfig): string {
  return config.database.kind === 'postgres'
    ? redactDatabaseUrl(config.database.url)
    : controlStorePath(config.dataDir);
}

function parseCacheNotice(payload: string): CacheNotice | undefined {
  const colon = payload.indexOf(':');
  const kind = payload.slice(0, colon);
  const id = payload.slice(colon + 1);
  if (colon < 1 || id === '') return undefined;
  if (kind === 'api-key' || kind === 'tenant' || kind === 'tenant-store') return { kind, id };
  return undefined;
}

/** The audit source whose outbox lives in `schema` (a NOTIFY's payload), or none. */
function sourceOfSchema(schema: string): string | undefined {
  if (schema === CONTROL_SCHEMA) return CONTROL_SOURCE;
  if (schema.startsWith(TENANT_SCHEMA_PREFIX)) return schema.slice(TENANT_SCHEMA_PREFIX.length);
  return undefined;
}
