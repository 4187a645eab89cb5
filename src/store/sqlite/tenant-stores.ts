/**
 * One SQLite store per tenant ("a store per contract"): `<dir>/tenants/<tenantId>.sqlite`, created
 * when the contract starts and wiped when it ends.
 *
 * - Tenant ids are checked against TENANT_ID_PATTERN before any path is built from them, so no id can
 *   name a file outside the tenants folder.
 * - open() hands out a handle that stays valid: the registry keeps at most `maxOpen` stores open and
 *   closes the least recently used idle ones (no read or write in flight); a handle whose store was
 *   closed reopens it on its next read or write. A store is open while a read or write holds it, so
 *   the registry never closes a file under a running query.
 * - Concurrent opens of one tenant share one open; create() and destroy() of one tenant run one at a
 *   time, and open() waits for them.
 * - Closing an idle store to stay within maxOpen (eviction) leaves its files as they are: no
 *   checkpoint, no zeroing, no deletion of the WAL (SqliteStore.closeKeepingWal); the next open reads
 *   the WAL as SQLite reads any. What the WAL may still hold of an earlier page is what the running
 *   store's WAL held too: field values encrypted, never plaintext. Reopening skips the migrator (this
 *   registry migrated the file when it first opened it). The registry's close() at shutdown closes
 *   the ordinary way (checkpoint, WAL zeroed and deleted), as before.
 * - destroy() — the end of the contract — is the only wipe: it closes the store (its close
 *   checkpoints and zeroes the WAL before SQLite deletes it), zeroes the database, -wal and -shm
 *   files in place, unlinks them and fsyncs the folder. Every step tolerates what an interrupted
 *   earlier attempt already did, so running it again completes it.
 * - replace() swaps a prepared file (a restored store, made next to the live one by scratchPath())
 *   in for the live store while the server runs: like destroy() it waits for reads and writes in
 *   flight and holds back new ones (they wait, then use the new file), closes the store, lets the
 *   caller finish the new file against the closed live one (beforeSwap), then renames it over the
 *   live file (rename(2): atomic, so a crash leaves the old store or the new one, never half of
 *   either) and fsyncs the folder. The next use opens the new file with a new handle, so whatever a
 *   cache keyed by the handle holds of the old file is gone with it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  type QueryResult,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type Transaction,
} from 'kysely';
import { TresorError } from '../../errors.ts';
import { assertTenantId } from '../tenant-id.ts';
import type { Migrations, Store, TenantStores, TenantStoresStats } from '../types.ts';
import { openSqliteStore, type SqliteStore } from './store.ts';
import { WalCheckpointer } from './wal-checkpointer.ts';
import type { AroundWalSync } from './wal-sync.ts';
import { syncFolder, wipeFiles } from './wipe.ts';

export const DEFAULT_MAX_OPEN_TENANT_STORES = 256;

export interface TenantStoresOptions {
  /** The data folder; tenant stores live in `<dir>/tenants/`. */
  dir: string;
  migrations: Migrations;
  /** Stores kept open at most, beyond those in use (default 256; the server derives it: handle-budget.ts). */
  maxOpen?: number;
  /** Passed to each store's group commit. */
  maxBatch?: number;
  /** Wraps each store's fdatasync of its WAL (tests: hold, count or fail it; store.ts `ownSync`). */
  aroundWalSync?: AroundWalSync;
}

// Where they were first defined: importers of the SQLite registry keep finding them here.
export { assertTenantId, TENANT_ID_PATTERN } from '../tenant-id.ts';
export type { TenantStores, TenantStoresStats } from '../types.ts';

export function createTenantStores<DB>(options: TenantStoresOptions): TenantStores<DB> {
  return new SqliteTenantStores<DB>(options);
}

interface Lease<DB> {
  readonly store: SqliteStore<DB>;
  release(): void;
}

interface Entry<DB> {
  readonly store: Promise<SqliteStore<DB>>;
  /** The store once its open resolved: its group-commit counts are read synchronously by stats(). */
  opened?: SqliteStore<DB>;
  readonly handle: TenantStoreHandle<DB>;
  /** Reads and writes holding the store open; it is closed only at zero. */
  pins: number;
  idleWaiters: Array<() => void>;
}

class SqliteTenantStores<DB> implements TenantStores<DB> {
  readonly #folder: string;
  readonly #migrations: Migrations;
  readonly #maxOpen: number;
  readonly #maxBatch: number | undefined;
  readonly #aroundWalSync: AroundWalSync | undefined;
  /** The stores' WAL checkpoints, off the event loop (its worker starts at the first). */
  readonly #checkpointer = new WalCheckpointer();
  /** Open stores in LRU order (Map keeps insertion order; a use moves the tenant to the end). */
  readonly #entries = new Map<string, Entry<DB>>();
  /** Stores closing now; a reopen of the tenant waits for it. */
  readonly #closing = new Map<string, Promise<void>>();
  /** create()/destroy() in progress per tenant, settled either way. */
  readonly #lifecycle = new Map<string, Promise<void>>();
  readonly #destroying = new Set<string>();
  readonly #counts = { opened: 0, closed: 0, evicted: 0, wiped: 0 };
  /** Group-commit counts of the stores closed so far (an open store's are read from it). */
  readonly #closedCommits = { batches: 0, jobs: 0 };
  /** Tenants whose file this registry migrated (create or first open) and nothing replaced since. */
  readonly #migrated = new Set<string>();
  #closed: Promise<void> | undefined;

  constructor(options: TenantStoresOptions) {
    const maxOpen = options.maxOpen ?? DEFAULT_MAX_OPEN_TENANT_STORES;
    if (!Number.isSafeInteger(maxOpen) || maxOpen < 1)
      throw new RangeError('maxOpen must be a positive integer');
    this.#folder = join(options.dir, 'tenants');
    this.#migrations = options.migrations;
    this.#maxOpen = maxOpen;
    this.#maxBatch = options.maxBatch;
    this.#aroundWalSync = options.aroundWalSync;
  }

  async create(tenant: string): Promise<Store<DB>> {
    const path = this.#pathOf(tenant);
    this.#assertOpen();
    await this.#exclusive(tenant, async () => {
      this.#assertOpen();
      await mkdir(this.#folder, { recursive: true, mode: 0o700 });
      try {
        // 'wx' creates the file or fails if it exists: the check and the creation are one step.
        await (await open(path, 'wx', 0o600)).close();
      } catch (error) {
        if (errorCode(error) === 'EEXIST')
          throw new TresorError('TRESOR_ERR_CONFLICT', 'the tenant store exists');
        throw error;
      }
      await syncFolder(this.#folder);
      let store: SqliteStore<DB>;
      try {
        store = await this.#openStore(tenant, path);
      } catch (error) {
        await wipeFiles(storeFiles(path), this.#folder);
        throw error;
      }
      this.#entries.set(tenant, this.#newEntry(tenant, Promise.resolve(store)));
      this.#counts.opened++;
      this.#closeIdle();
    });
    return this.#entries.get(tenant)?.handle ?? new TenantStoreHandle(path, () => this.#lease(tenant));
  }

  async open(tenant: string): Promise<Store<DB>> {
    this.#pathOf(tenant);
    const lease = await this.#lease(tenant);
    lease.release();
    return (
      this.#entries.get(tenant)?.handle ??
      new TenantStoreHandle(lease.store.location, () => this.#lease(tenant))
    );
  }

  async exists(tenant: string): Promise<boolean> {
    const path = this.#pathOf(tenant);
    if (this.#destroying.has(tenant)) return false;
    try {
      return (await stat(path)).isFile();
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return false;
      throw error;
    }
  }

  async destroy(tenant: string): Promise<void> {
    const path = this.#pathOf(tenant);
    this.#assertOpen();
    await this.#exclusive(tenant, async () => {
      this.#destroying.add(tenant);
      try {
        const entry = this.#entries.get(tenant);
        if (entry) {
          while (entry.pins > 0) await new Promise<void>((resolve) => entry.idleWaiters.push(resolve));
          this.#entries.delete(tenant);
          this.#closeEntry(tenant, entry, 'zero-wal');
        }
        await this.#closing.get(tenant);
        this.#migrated.delete(tenant);
        await wipeFiles(storeFiles(path), this.#folder);
        this.#counts.wiped++;
      } finally {
        this.#destroying.delete(tenant);
      }
    });
  }

  async scratchPath(tenant: string): Promise<string> {
    this.#pathOf(tenant);
    await mkdir(this.#folder, { recursive: true, mode: 0o700 });
    // A leading dot and no `.sqlite` ending: no tenant id can name it (TENANT_ID_PATTERN has no dot).
    return join(this.#folder, `.${tenant}.restore-${randomBytes(6).toString('hex')}`);
  }

  async replace(
    tenant: string,
    scratch: string,
    beforeSwap: (livePath: string, swap: undefined) => Promise<void>,
  ): Promise<void> {
    const path = this.#pathOf(tenant);
    if (dirname(scratch) !== this.#folder || !basename(scratch).startsWith(`.${tenant}.restore-`))
      throw new RangeError('the scratch file must come from scratchPath() of the same tenant');
    this.#assertOpen();
    await this.#exclusive(tenant, async () => {
      if (this.#destroying.has(tenant) || !(await fileExists(path)))
        throw new TresorError('TRESOR_ERR_NOT_FOUND', 'the tenant store does not exist');
      const entry = this.#entries.get(tenant);
      if (entry) {
        while (entry.pins > 0) await new Promise<void>((resolve) => entry.idleWaiters.push(resolve));
        this.#entries.delete(tenant);
        this.#closeEntry(tenant, entry, 'zero-wal');
      }
      await this.#closing.get(tenant);
      // An evicted store left its WAL: checkpoint and zero it as the close before a swap does, so
      // beforeSwap's own connection to the live file does not delete it unzeroed.
      if (!entry && (await fileExists(`${path}-wal`))) await (await this.#openStore(tenant, path)).close();
      // The new file is migrated by its first open.
      this.#migrated.delete(tenant);
      await beforeSwap(path, undefined);
      // A -wal or -shm left by the old file must never meet the new one (SQLite would apply it).
      // A clean close removed them; if one is still there, it is the old file's: wipe it first.
      await wipeFiles([`${path}-wal`, `${path}-shm`, `${path}-journal`], this.#folder);
      await rename(scratch, path);
      await syncFolder(this.#folder);
    });
  }

  async removeScratch(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.#folder);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return 0;
      throw error;
    }
    const scratch = names.filter((n) =>
      /^\.[A-Za-z0-9_-]{1,64}\.restore-[0-9a-f]{12}(?:-wal|-shm|-journal)?$/.test(n),
    );
    for (const name of scratch) await rm(join(this.#folder, name), { force: true });
    if (scratch.length > 0) await syncFolder(this.#folder);
    return scratch.length;
  }

  openTenants(): string[] {
    return [...this.#entries.keys()];
  }

  stats(): TenantStoresStats {
    let { batches, jobs } = this.#closedCommits;
    for (const entry of this.#entries.values()) {
      const commits = entry.opened?.stats();
      batches += commits?.batches ?? 0;
      jobs += commits?.jobs ?? 0;
    }
    return {
      open: this.#entries.size,
      maxOpen: this.#maxOpen,
      ...this.#counts,
      commitBatches: batches,
      commitJobs: jobs,
      walCheckpoints: this.#checkpointer.stats(),
    };
  }

  close(): Promise<void> {
    this.#closed ??= this.#closeAll();
    return this.#closed;
  }

  async #closeAll(): Promise<void> {
    await Promise.all(this.#lifecycle.values());
    const closing: Promise<void>[] = [];
    for (const [tenant, entry] of this.#entries) {
      this.#entries.delete(tenant);
      closing.push(
        (async () => {
          while (entry.pins > 0) await new Promise<void>((resolve) => entry.idleWaiters.push(resolve));
          await this.#closeEntry(tenant, entry, 'zero-wal');
        })(),
      );
    }
    await Promise.all([...closing, ...this.#closing.values()]);
    await this.#checkpointer.close();
  }

  /** Holds the tenant's store open (opening it if needed) until release(). */
  async #lease(tenant: string): Promise<Lease<DB>> {
    this.#assertOpen();
    const pending = this.#lifecycle.get(tenant);
    if (pending) await pending;
    this.#assertOpen();
    if (this.#destroying.has(tenant))
      throw new TresorError('TRESOR_ERR_GONE', 'the tenant store is being destroyed');
    let entry = this.#entries.get(tenant);
    if (entry) {
      this.#entries.delete(tenant);
      this.#entries.set(tenant, entry);
    } else {
      const opening = this.#reopen(tenant);
      const fresh = this.#newEntry(tenant, opening);
      // A failed open leaves no entry behind, so the next open tries again.
      opening.catch(() => {
        if (this.#entries.get(tenant) === fresh) this.#entries.delete(tenant);
      });
      this.#entries.set(tenant, fresh);
      entry = fresh;
    }
    const held = entry;
    held.pins++;
    let store: SqliteStore<DB>;
    try {
      store = await held.store;
    } catch (error) {
      this.#unpin(held);
      throw error;
    }
    this.#closeIdle();
    let released = false;
    return {
      store,
      release: () => {
        if (released) return;
        released = true;
        this.#unpin(held);
      },
    };
  }

  async #reopen(tenant: string): Promise<SqliteStore<DB>> {
    const path = this.#pathOf(tenant);
    await this.#closing.get(tenant);
    // fileMustExist below keeps a store from being created by open(); this gives the clear error.
    if (!(await fileExists(path)))
      throw new TresorError('TRESOR_ERR_NOT_FOUND', 'the tenant store does not exist');
    const store = await this.#openStore(tenant, path);
    this.#counts.opened++;
    return store;
  }

  async #openStore(tenant: string, path: string): Promise<SqliteStore<DB>> {
    const store = await openSqliteStore<DB>(path, this.#migrations, {
      fileMustExist: true,
      migrated: this.#migrated.has(tenant),
      // Many files: each fsyncs its batches itself, off the event loop, in parallel with the others.
      ownSync: true,
      checkpointer: this.#checkpointer,
      ...(this.#aroundWalSync === undefined ? {} : { aroundWalSync: this.#aroundWalSync }),
      ...(this.#maxBatch === undefined ? {} : { maxBatch: this.#maxBatch }),
    });
    this.#migrated.add(tenant);
    return store;
  }

  #newEntry(tenant: string, store: Promise<SqliteStore<DB>>): Entry<DB> {
    const entry: Entry<DB> = {
      store,
      handle: new TenantStoreHandle(this.#pathOf(tenant), () => this.#lease(tenant)),
      pins: 0,
      idleWaiters: [],
    };
    store.then(
      (opened) => {
        entry.opened = opened;
      },
      () => undefined, // a failed open is handled where it is awaited
    );
    return entry;
  }

  #unpin(entry: Entry<DB>): void {
    entry.pins--;
    if (entry.pins > 0) return;
    for (const wake of entry.idleWaiters.splice(0)) wake();
    this.#closeIdle();
  }

  /** Closes least recently used stores nobody holds until at most maxOpen are open. */
  #closeIdle(): void {
    let excess = this.#entries.size - this.#maxOpen;
    for (const [tenant, entry] of this.#entries) {
      if (excess <= 0) return;
      if (entry.pins > 0) continue;
      this.#entries.delete(tenant);
      this.#closeEntry(tenant, entry, 'keep-wal');
      this.#counts.evicted++;
      excess--;
    }
  }

  /** 'keep-wal': eviction (no checkpoint, no zeroing); 'zero-wal': shutdown, and before a wipe or a swap. */
  #closeEntry(tenant: string, entry: Entry<DB>, how: 'keep-wal' | 'zero-wal'): Promise<void> {
    this.#counts.closed++;
    // Nothing holds the store (pins 0), so its counts are final: kept from the moment it leaves
    // #entries, so the sums stats() reports never go down.
    const keepCommits = (store: SqliteStore<DB>) => {
      const commits = store.stats();
      this.#closedCommits.batches += commits.batches;
      this.#closedCommits.jobs += commits.jobs;
    };
    const openedBefore = entry.opened;
    if (openedBefore) keepCommits(openedBefore);
    const closing = entry.store
      .then(
        (store) => {
          if (!openedBefore) keepCommits(store);
          return how === 'keep-wal' ? store.closeKeepingWal() : store.close();
        },
        () => undefined, // never opened: nothing to close
      )
      .catch(() => undefined) // a failed close has nothing left to hold open; the next open starts afresh
      .finally(() => {
        if (this.#closing.get(tenant) === closing) this.#closing.delete(tenant);
      });
    this.#closing.set(tenant, closing);
    return closing;
  }

  /** Runs create/destroy steps of one tenant one at a time; open() waits for them. */
  async #exclusive(tenant: string, step: () => Promise<void>): Promise<void> {
    const previous = this.#lifecycle.get(tenant);
    const run = (previous ?? Promise.resolve()).then(step);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#lifecycle.set(tenant, settled);
    try {
      await run;
    } finally {
      if (this.#lifecycle.get(tenant) === settled) this.#lifecycle.delete(tenant);
    }
  }

  #pathOf(tenant: string): string {
    assertTenantId(tenant);
    return join(this.#folder, `${tenant}.sqlite`);
  }

  #assertOpen(): void {
    if (this.#closed) throw new TresorError('TRESOR_ERR_UNAVAILABLE', 'the tenant stores are closed');
  }
}

/**
 * What open() returns: a Store whose reads and writes each lease the tenant's SQLite store from the
 * registry (reopening it if the LRU closed it) for exactly as long as they run.
 */
class TenantStoreHandle<DB> implements Store<DB> {
  readonly location: string;
  readonly db: Kysely<DB>;
  readonly #lease: () => Promise<Lease<DB>>;

  constructor(location: string, lease: () => Promise<Lease<DB>>) {
    this.location = location;
    this.#lease = lease;
    this.db = new Kysely<DB>({
      dialect: {
        createAdapter: () => new SqliteAdapter(),
        createDriver: () => new LeasedReadDriver(lease),
        createQueryCompiler: () => new SqliteQueryCompiler(),
        createIntrospector: (db) => new SqliteIntrospector(db),
      },
    });
  }

  async write<T>(work: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
    const lease = await this.#lease();
    try {
      return await lease.store.write(work);
    } finally {
      lease.release();
    }
  }

  async healthy(): Promise<boolean> {
    let lease: Lease<DB>;
    try {
      lease = await this.#lease();
    } catch {
      return false;
    }
    try {
      return await lease.store.healthy();
    } finally {
      lease.release();
    }
  }

  /** The registry owns the connections (TenantStores.close()); a handle has nothing to close. */
  async close(): Promise<void> {}
}

/** A reader connection borrowed from the tenant's store for one query or read transaction. */
interface BorrowedConnection extends DatabaseConnection {
  giveBack(): Promise<void>;
}

class LeasedReadDriver<DB> implements Driver {
  readonly #lease: () => Promise<Lease<DB>>;

  constructor(lease: () => Promise<Lease<DB>>) {
    this.#lease = lease;
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const lease = await this.#lease();
    try {
      return await borrowConnection(lease.store.db, lease.release);
    } catch (error) {
      lease.release();
      throw error;
    }
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    await (connection as BorrowedConnection).giveBack();
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin'));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'));
  }

  async destroy(): Promise<void> {}
}

/** Holds one of `db`'s connections (through its public connection() API) until giveBack(). */
function borrowConnection<DB>(db: Kysely<DB>, onReturned: () => void): Promise<BorrowedConnection> {
  return new Promise<BorrowedConnection>((resolve, reject) => {
    let giveBack: () => void = () => {};
    const returned = new Promise<void>((r) => {
      giveBack = r;
    });
    let lent = false;
    const held: Promise<void> = db
      .connection()
      .execute(async (connection) => {
        lent = true;
        resolve({
          executeQuery: <R>(query: CompiledQuery): Promise<QueryResult<R>> =>
            connection.executeQuery(query as CompiledQuery<R>),
          streamQuery: <R>(query: CompiledQuery, chunkSize?: number) =>
            connection.getExecutor().stream<R>(query as CompiledQuery<R>, chunkSize ?? 1),
          giveBack: async () => {
            giveBack();
            await held;
          },
        });
        await returned;
      })
      .finally(onReturned);
    held.catch((error: unknown) => {
      if (!lent) reject(error);
    });
  });
}

function storeFiles(path: string): string[] {
  return [path, `${path}-wal`, `${path}-shm`, `${path}-journal`];
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return undefined;
}
