/**
 * The storage interface the domains use: async and dialect-neutral (Kysely), with two backends
 * behind it: SQLite (one file per store, src/store/sqlite/) and PostgreSQL (one schema per store,
 * src/store/pg/; docs/architecture.md, "Backends").
 *
 * Writes go through `write()`: group commit. Concurrent callers' work runs inside ONE durable
 * transaction (each in its own savepoint, so one failure does not undo the others), and every
 * caller's promise resolves only after that transaction's COMMIT is on disk (SQLite synchronous=FULL,
 * PostgreSQL synchronous_commit=on with fsync on).
 * A change and its audit event written in the same `write()` commit together or not at all.
 */
import type { Kysely, Migration, Transaction } from 'kysely';

export interface Store<DB> {
  /** Where the store lives (a file path for SQLite). */
  readonly location: string;
  /** Reads outside any write transaction (SQLite: a separate WAL reader connection). */
  readonly db: Kysely<DB>;
  /**
   * Runs `work` in the next group-committed transaction; resolves after the commit is durable.
   * `work` shares that transaction with other callers: it must use only `trx` (and only until it
   * settles), do database work only (fetch keys or call keyd before, not inside), never end the
   * transaction, and never await a write() on the same store.
   */
  write<T>(work: (trx: Transaction<DB>) => Promise<T>): Promise<T>;
  /** Whether the store can take writes now (for /readyz). */
  healthy(): Promise<boolean>;
  /** Finishes queued writes, then closes every connection. */
  close(): Promise<void>;
}

/** Named migrations, applied in name order when a store opens. */
export type Migrations = Record<string, Migration>;

/**
 * Migrations renamed since stores recorded them, as [recorded name, current name] pairs applied in
 * order (a name freed by one pair may be taken by a later one).
 */
export type MigrationRenames = readonly (readonly [from: string, to: string])[];

export interface TenantStoresStats {
  /** Stores open now (or opening). */
  open: number;
  /** Stores opened (or created) since the registry was made. */
  opened: number;
  /** Stores closed (or closing) since (LRU, destroy, close). */
  closed: number;
  /** Of those, closed by the LRU to stay within maxOpen: no checkpoint, no wipe (SQLite). */
  evicted: number;
  /** Stores wiped and removed by destroy() since (the only way a store's files are wiped). */
  wiped: number;
  /** Stores kept open at most beyond those in use (SQLite: from the file budget, handle-budget.ts). */
  maxOpen: number;
  /**
   * The tenant stores' group commits since the registry was made: transactions begun (each costs
   * one fsync, or one WAL flush on PostgreSQL, when it commits a change) and writes run in them.
   * SQLite: every tenant file has its own, summed here (closed stores' counts kept); PostgreSQL: the
   * one writer all tenants share.
   */
  commitBatches: number;
  commitJobs: number;
  /**
   * SQLite: the tenant WALs' checkpoints run off the event loop (wal-checkpointer.ts) — run, of
   * those complete (every frame copied: the next commit restarts the WAL), and failed.
   */
  walCheckpoints?: { checkpoints: number; complete: number; failed: number };
}

/** The statements of a swap's transaction (PostgreSQL's replace()): `$n` parameters, rows as read. */
export interface SwapTransaction {
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    text: string,
    params?: unknown[],
  ): Promise<{ rows: R[] }>;
}

/** The registry of tenant stores, one per tenant (a SQLite file or a PostgreSQL schema). */
export interface TenantStores<DB> {
  /** Creates the tenant's store (migrations applied) and returns it; refuses if it exists. */
  create(tenant: string): Promise<Store<DB>>;
  /** The tenant's store; TRESOR_ERR_NOT_FOUND if it was never created or was destroyed. */
  open(tenant: string): Promise<Store<DB>>;
  exists(tenant: string): Promise<boolean>;
  /** Wipes and removes the tenant's store; waits for reads and writes in flight; idempotent. */
  destroy(tenant: string): Promise<void>;
  /**
   * A fresh name for a restored store to be prepared under, never a store's name: on SQLite a path
   * beside the tenant's file (same folder, so a rename can swap it in); on PostgreSQL a schema name
   * (`tresor_restore_<random>`), which the caller creates and fills.
   */
  scratchPath(tenant: string): Promise<string>;
  /**
   * Swaps the prepared store `scratch` in for the tenant's live store (see each backend's header):
   * waits for reads and writes in flight and holds new ones back (they wait, then use the new
   * store), runs `beforeSwap(live, swap)`, then swaps. SQLite: `live` is the live file's path, the
   * store is closed and no connection of this registry is open on it, `swap` is undefined, the
   * swap is a rename. PostgreSQL: `live` is the live schema's name, `swap` the transaction that
   * then drops the live schema and renames `scratch` to it (its tables locked first). TRESOR_ERR_NOT_FOUND
   * if the live store does not exist (never created, or destroyed meanwhile): the scratch is then
   * left for the caller to remove.
   */
  replace(
    tenant: string,
    scratch: string,
    beforeSwap: (live: string, swap: SwapTransaction | undefined) => Promise<void>,
  ): Promise<void>;
  /** Removes scratch stores a stopped process left behind (at start, before any replace). */
  removeScratch(): Promise<number>;
  /**
   * PostgreSQL: forgets the tenant's handle (the next use makes a new one, so caches keyed by the
   * handle, the collections', start empty): another process swapped the tenant's schema.
   */
  forgetHandle?(tenant: string): void;
  /** Tenants whose store is open now, least recently used first. */
  openTenants(): string[];
  stats(): TenantStoresStats;
  /** Finishes queued writes and closes every store; the registry refuses work afterwards. */
  close(): Promise<void>;
}
