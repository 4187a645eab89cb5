/**
 * SQLite backend of Store, with group commit.
 *
 * With synchronous=FULL every COMMIT waits for an fsync of the WAL; one transaction per request would
 * cap throughput at the disk's fsync rate. So write() only enqueues; one flusher per store takes what
 * is queued (up to `maxBatch` jobs), opens ONE transaction (BEGIN IMMEDIATE) and runs each job in its
 * own SAVEPOINT: a job that throws is rolled back to its savepoint and rejects with its own error,
 * while its batch-mates go on. Successful jobs resolve only after COMMIT returned, i.e. once the batch
 * is durable; if COMMIT fails, every job of the batch rejects. Writes queued meanwhile form the next
 * batch. Jobs run one after another in queue order, so writes are committed in the order they were
 * requested.
 *
 * Rules for a work function (they share a transaction with other callers' work):
 * - use only the `trx` it is given, and only until its promise settles: reads through `store.db`
 *   do not see the batch's uncommitted changes, and awaiting a `write()` on the same store from inside
 *   a work function waits for itself forever (the store then stops committing, and healthy() turns
 *   false). Detecting it would need AsyncLocalStorage, whose promise hooks cost every promise in the
 *   process (measured: 13 % of group-commit throughput), so it is a rule, not a check;
 * - do database work only: awaiting anything slow (a network call, keyd) holds the batch, and with it
 *   every other caller, until it returns — fetch first, then write();
 * - never end the transaction (COMMIT, ROLLBACK, RELEASE of a savepoint it did not create) and do
 *   not rely on deferred constraints: a violation found at COMMIT fails the whole batch.
 *
 * Reads use a second connection: WAL lets them run while a batch is open, and a read started after a
 * write was acknowledged sees it.
 *
 * Own fsync (`ownSync`, the tenant stores): synchronous=FULL would block the event loop for one
 * fsync of the WAL per COMMIT, and over many tenant files (a batch each) writes would serialize on
 * those fsyncs. With `ownSync` the connections run synchronous=NORMAL (a COMMIT is consistent but not
 * fsynced) and the store makes each batch durable itself: after COMMIT it awaits an fdatasync of the
 * WAL in libuv's thread pool (wal-sync.ts) and only then resolves the batch's jobs; the store's next
 * batch starts after that fsync (no pipelining: one batch at most is committed and not yet durable,
 * and writes queued meanwhile join the next batch as they did while FULL's fsync ran). Other stores'
 * batches run meanwhile, so the fsyncs of many files overlap. A commit is visible to readers from
 * COMMIT on, before it is durable; so every read through `db` waits, after its query ran and before
 * its rows are returned, for `durable()` — the fsync in flight, if any (the audit sequencer's reads
 * of the outbox are such reads). A failed fdatasync rejects the batch's jobs and leaves the store
 * unusable (writes, reads and healthy() fail) until it is reopened: after an fsync error the page
 * cache's state is unknown, and a retried fsync may report success for pages that were dropped.
 */
import { AsyncResource } from 'node:async_hooks';
import Database from 'better-sqlite3';
import { type ControlledTransaction, Kysely, Migrator, sql, type Transaction } from 'kysely';
import { TresorError } from '../../errors.ts';
import type { MigrationRenames, Migrations, Store } from '../types.ts';
import { TresorSqliteDialect } from './dialect.ts';
import { openSqlite } from './open.ts';
import type { WalCheckpointer } from './wal-checkpointer.ts';
import { type AroundWalSync, openWalSync, type WalSync } from './wal-sync.ts';
import { zeroFile } from './wipe.ts';

/** Jobs per transaction at most: bounds how long one batch holds the write lock. */
export const DEFAULT_MAX_BATCH = 256;

/** A probe write that has not committed by then means the store cannot take writes. */
const HEALTH_PROBE_TIMEOUT_MS = 5_000;

const SAVEPOINT = 'tresor_write';

/**
 * Batches between two checkpoints asked of the `checkpointer`: a write to a tenant written now and
 * then is a batch of its own and appends 8–10 pages, so its WAL stays within about 160 pages
 * (650 KB) instead of SQLite's 1,000 (4 MB). Each checkpoint costs the worker thread an open of the
 * file, its schema read and two fsyncs: fewer, larger ones cost less CPU on a busy machine.
 */
export const CHECKPOINT_EVERY_BATCHES = 16;

/**
 * A checkpoint that found at least this many frames in the WAL (1 MB: more than the batches between
 * two checkpoints of a store written now and then append) means the store's commits keep landing
 * while its checkpoints run, so the WAL does not restart: the next one runs between batches, its
 * writes waiting for it (wal-checkpointer.ts).
 */
export const HOLD_WRITES_AT_FRAMES = 256;

export interface SqliteStoreStats {
  /** Transactions the flusher has begun (each costs one fsync when it commits a change). */
  batches: number;
  /** Work functions run, successful or not. */
  jobs: number;
  /** Most jobs in one batch so far. */
  maxBatch: number;
  /** Batches whose BEGIN or COMMIT failed, or whose transaction a job ended. */
  failedBatches: number;
  /** The SQLite error code of the last failed batch, cleared by the next commit (for metrics). */
  lastFailure: string | null;
  /** Jobs waiting for the next batch now. */
  queued: number;
  /** Reads whose rows wait now for the fsync of a commit they may have seen (`ownSync`). */
  readsWaitingForSync: number;
}

export interface SqliteStore<DB> extends Store<DB> {
  stats(): SqliteStoreStats;
  /**
   * Runs `outside` while this store's writer holds no transaction, in queue order with write()s, and
   * starts no batch until it settles: another connection (the audit sequencer's worker thread) can then
   * write the same file without waiting for the write lock, and the writes queued meanwhile wait for it
   * as they would for a batch, asynchronously, instead of blocking the thread in SQLite's busy handler.
   */
  whileIdle<T>(outside: () => Promise<T>): Promise<T>;
  /**
   * Like close(), but leaves the WAL as it is: no checkpoint, no zeroing, no deletion. The next open
   * reads it as SQLite reads any WAL. For a registry that closes idle stores to stay within its file
   * budget (tenant-stores.ts): only the end of a store's life (destroy) wipes its files.
   */
  closeKeepingWal(): Promise<void>;
  /**
   * Resolves once every commit visible now is durable: at once unless a batch's fsync is in flight
   * (`ownSync`), then with it; rejects if that fsync failed. Reads through `db` await it already.
   */
  durable(): Promise<void>;
}

export interface SqliteStoreOptions {
  /** Jobs per transaction at most (default 256). */
  maxBatch?: number;
  /** Refuse to create the file if it does not exist (tenant stores are created explicitly). */
  fileMustExist?: boolean;
  /** false for a scratch copy that is read and removed: no fsync (openSqlite's `durable`). */
  durable?: boolean;
  /** Recorded migration names to rewrite before migrating (see MigrationRenames). */
  renamedMigrations?: MigrationRenames;
  /**
   * The caller migrated this very file before (in this process, and nothing replaced it since): the
   * migrator is not run again. A registry reopening a store it closed sets it.
   */
  migrated?: boolean;
  /**
   * The store fsyncs each batch's commit itself, off the event loop, instead of SQLite inside
   * COMMIT (synchronous=NORMAL plus an fdatasync of the WAL per batch; see the top of this file).
   * Ignored when `durable` is false.
   */
  ownSync?: boolean;
  /** With `ownSync`: wraps each fdatasync of the WAL (tests hold, count or fail it). */
  aroundWalSync?: AroundWalSync;
  /**
   * With `ownSync`: checkpoints the WAL off the event loop every CHECKPOINT_EVERY_BATCHES batches
   * (wal-checkpointer.ts), so it restarts small instead of growing to SQLite's 1,000 pages.
   */
  checkpointer?: WalCheckpointer;
}

export async function openSqliteStore<DB>(
  path: string,
  migrations: Migrations,
  options: SqliteStoreOptions = {},
): Promise<SqliteStore<DB>> {
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  if (!Number.isSafeInteger(maxBatch) || maxBatch < 1)
    throw new RangeError('maxBatch must be a positive integer');
  const ownSync = options.ownSync === true && options.durable !== false;
  const writerDb = openSqlite(path, { ...options, ownSync });
  const writer = new Kysely<DB>({ dialect: new TresorSqliteDialect(writerDb, { beginImmediate: true }) });
  const finish = async (): Promise<SqliteStore<DB>> => {
    let wal: WalSync | undefined;
    if (ownSync) {
      // A read opens (and if need be creates) the WAL file before its descriptor is taken.
      writerDb.prepare('SELECT count(*) FROM sqlite_master').get();
      wal = await openWalSync(path, options.aroundWalSync);
    }
    try {
      const reader = openSqlite(path, { ...options, ownSync });
      return new GroupCommitStore<DB>(path, writerDb, writer, reader, maxBatch, {
        wal,
        checkpointer: wal === undefined ? undefined : options.checkpointer,
      });
    } catch (error) {
      await wal?.close();
      throw error;
    }
  };
  if (options.migrated) {
    try {
      return await finish();
    } catch (error) {
      await writer.destroy();
      throw error;
    }
  }
  try {
    if (options.renamedMigrations) renameRecordedMigrations(writerDb, options.renamedMigrations);
    const migrator = new Migrator({
      db: writer as Kysely<unknown>,
      provider: { getMigrations: async () => migrations },
    });
    // Kysely's SQLite adapter takes no migration lock and runs each migration on its own, so two
    // processes opening a new store at once (`tresor init` beside a first server start) would both
    // apply the same migration. One IMMEDIATE transaction around the whole run takes the write lock
    // first (waiting busy_timeout for another opener): the second then sees the first's migrations
    // applied, and a failing migration leaves the store as it was. SQLite's DDL is transactional.
    writerDb.exec('BEGIN IMMEDIATE');
    let error: unknown;
    try {
      ({ error } = await migrator.migrateToLatest());
    } catch (thrown) {
      error = thrown ?? new Error('migration failed');
    }
    if (writerDb.inTransaction) writerDb.exec(error === undefined ? 'COMMIT' : 'ROLLBACK');
    if (error !== undefined) throw error;
    return await finish();
  } catch (error) {
    await writer.destroy();
    throw error;
  }
}

/** Kysely's default table of applied migrations. */
const MIGRATION_TABLE = 'kysely_migration';

/**
 * Rewrites the names an older version recorded for migrations since renamed, in one transaction,
 * before the migrator reads them: it would otherwise refuse the store, its recorded migrations
 * missing from the list. A store that never recorded the old names is left as it is.
 */
function renameRecordedMigrations(db: Database.Database, renames: MigrationRenames): void {
  const table = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
    .get(MIGRATION_TABLE);
  if (table === undefined || renames.length === 0) return;
  const rename = db.prepare(`UPDATE ${MIGRATION_TABLE} SET name = ? WHERE name = ?`);
  db.transaction(() => {
    for (const [from, to] of renames) rename.run(to, from);
  }).immediate();
}

interface Job<DB> {
  run(trx: Transaction<DB>): Promise<unknown>;
  /** Set for whileIdle(): runs between batches, with no transaction open. */
  outside?: () => Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

interface WalCheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

type JobOutcome =
  | { kind: 'done'; value: unknown }
  | { kind: 'failed'; error: unknown }
  | { kind: 'lost'; error: unknown };

class GroupCommitStore<DB> implements SqliteStore<DB> {
  readonly location: string;
  readonly db: Kysely<DB>;
  readonly #writerDb: Database.Database;
  readonly #readerDb: Database.Database;
  readonly #writer: Kysely<DB>;
  readonly #maxBatch: number;
  readonly #queue: Job<DB>[] = [];
  readonly #stats = {
    batches: 0,
    jobs: 0,
    maxBatch: 0,
    failedBatches: 0,
    lastFailure: null as string | null,
  };
  #flushing = false;
  #drainWaiters: Array<() => void> = [];
  #readsInFlight = 0;
  #readWaiters: Array<() => void> = [];
  #closing = false;
  #closed: Promise<void> | undefined;
  #probe: Promise<boolean> | undefined;
  readonly #wal: WalSync | undefined;
  /** Set from just before a batch's COMMIT until its fsync completed (`ownSync`). */
  #syncing: Promise<void> | undefined;
  /** The failed fdatasync that made this store unusable until it is reopened. */
  #syncFailure: unknown;
  #readsWaitingForSync = 0;
  readonly #checkpointer: WalCheckpointer | undefined;
  /** Batches committed since the last checkpoint was asked for. */
  #batchesSinceCheckpoint = 0;
  /** The checkpoint asked for and not answered yet; close() waits for it. */
  #checkpointing: Promise<unknown> | undefined;
  /** Frames the last checkpoint found in the WAL. */
  #walFrames = 0;

  constructor(
    location: string,
    writerDb: Database.Database,
    writer: Kysely<DB>,
    readerDb: Database.Database,
    maxBatch: number,
    own: { wal?: WalSync | undefined; checkpointer?: WalCheckpointer | undefined } = {},
  ) {
    const { wal } = own;
    this.location = location;
    this.#wal = wal;
    this.#checkpointer = own.checkpointer;
    this.#writerDb = writerDb;
    this.#readerDb = readerDb;
    this.#writer = writer;
    this.#maxBatch = maxBatch;
    this.db = new Kysely<DB>({
      dialect: new TresorSqliteDialect(readerDb, {
        onAcquire: () => {
          this.#readsInFlight++;
        },
        onRelease: () => {
          this.#readsInFlight--;
          if (this.#readsInFlight === 0) for (const wake of this.#readWaiters.splice(0)) wake();
        },
        ...(wal === undefined ? {} : { settled: () => this.#readSettled() }),
      }),
    });
  }

  write<T>(work: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
    if (this.#closing)
      return Promise.reject(new TresorError('TRESOR_ERR_UNAVAILABLE', 'the store is closed'));
    if (this.#syncFailure !== undefined) return Promise.reject(notDurable(this.#syncFailure));
    return new Promise<T>((resolve, reject) => {
      // Run the work in its caller's async context (request-scoped logging, tracing), not the flusher's.
      const context = new AsyncResource('TresorStoreWrite');
      const run = (trx: Transaction<DB>) => context.runInAsyncScope(work, undefined, trx);
      this.#queue.push({ run, resolve: resolve as (value: unknown) => void, reject });
      this.#scheduleFlush();
    });
  }

  whileIdle<T>(outside: () => Promise<T>): Promise<T> {
    if (this.#closing)
      return Promise.reject(new TresorError('TRESOR_ERR_UNAVAILABLE', 'the store is closed'));
    return new Promise<T>((resolve, reject) => {
      const run = () => Promise.reject(new Error('a whileIdle job runs outside a transaction'));
      this.#queue.push({ run, outside, resolve: resolve as (value: unknown) => void, reject });
      this.#scheduleFlush();
    });
  }

  stats(): SqliteStoreStats {
    return { ...this.#stats, queued: this.#queue.length, readsWaitingForSync: this.#readsWaitingForSync };
  }

  /**
   * True only if a write commits now: a probe rewrites the header's user_version with its own value,
   * which appends a WAL frame and fsyncs like any commit (a full disk, a read-only or failing device
   * all show). It joins the current batch, so under load it costs no extra fsync.
   */
  durable(): Promise<void> {
    if (this.#syncFailure !== undefined) return Promise.reject(notDurable(this.#syncFailure));
    return this.#syncing ?? Promise.resolve();
  }

  async #readSettled(): Promise<void> {
    if (this.#syncing === undefined) return this.durable();
    this.#readsWaitingForSync++;
    try {
      await this.durable();
    } finally {
      this.#readsWaitingForSync--;
    }
  }

  healthy(): Promise<boolean> {
    if (this.#closing || this.#syncFailure !== undefined) return Promise.resolve(false);
    this.#probe ??= this.#runProbe().finally(() => {
      this.#probe = undefined;
    });
    return this.#probe;
  }

  close(): Promise<void> {
    this.#closed ??= this.#shutdown();
    return this.#closed;
  }

  closeKeepingWal(): Promise<void> {
    this.#closed ??= this.#shutdownKeepingWal();
    return this.#closed;
  }

  async #quiesce(): Promise<void> {
    this.#closing = true;
    if (this.#flushing) await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    if (this.#readsInFlight > 0) await new Promise<void>((resolve) => this.#readWaiters.push(resolve));
    // The checkpoint's connection must be gone before ours close (the last one zeroes the WAL).
    await this.#checkpointing;
  }

  /**
   * SQLite checkpoints and deletes the WAL when the file's last connection closes, if that connection
   * can take the database file's EXCLUSIVE lock (sqlite3WalClose). better-sqlite3 offers neither
   * SQLITE_FCNTL_PERSIST_WAL nor SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, so an anchor does it: a read-only
   * connection that read the file holds a SHARED lock while the writer and the reader close (neither
   * is then the last one), and closes last itself — its file descriptor is read-only, so it cannot
   * take the EXCLUSIVE lock and leaves the WAL alone. If the anchor cannot be opened, the store
   * closes the ordinary way (checkpoint and zeroing): slower, never less safe. The anchor reads the
   * header's user_version, which takes the lock as any read does without parsing the schema (a
   * read of sqlite_master parsed all of it, about 100 µs of each eviction).
   */
  async #shutdownKeepingWal(): Promise<void> {
    await this.#quiesce();
    let anchor: Database.Database | undefined;
    try {
      anchor = new Database(this.location, { readonly: true, fileMustExist: true });
      anchor.pragma('user_version', { simple: true });
    } catch {
      anchor?.close();
      anchor = undefined;
    }
    if (anchor === undefined) return this.#closeConnections(true);
    try {
      await this.#closeConnections(false);
    } finally {
      anchor.close();
    }
  }

  async #shutdown(): Promise<void> {
    await this.#quiesce();
    await this.#closeConnections(true);
  }

  async #closeConnections(zeroWal: boolean): Promise<void> {
    // The reader first: zeroing the WAL needs this process's writer to be the file's only connection.
    await this.db.destroy();
    // Kysely closes a connection only if it was ever used; a reader that never read is still open.
    if (this.#readerDb.open) this.#readerDb.close();
    if (zeroWal) await this.#zeroCheckpointedWal();
    await this.#writer.destroy();
    if (this.#writerDb.open) this.#writerDb.close();
    await this.#wal?.close().catch(() => undefined);
  }

  /**
   * When the last connection closes, SQLite deletes the WAL without overwriting it, which would hand
   * blocks holding recent pages back to the filesystem. So first: checkpoint(RESTART) copies every
   * frame into the database (synced) and waits until no reader uses the WAL any more — from then on
   * SQLite never reads those frames again — and only then are the WAL's bytes zeroed in place.
   *
   * Only while this connection holds the file's EXCLUSIVE lock: another process with the store open
   * (the server beside a `tresor access attest`, or the other way round) may write new frames into
   * the WAL the moment the checkpoint has reset it, and zeroing those would corrupt the database. So
   * the connection first switches to EXCLUSIVE locking and takes the write lock without waiting;
   * while any other connection has the file open that fails, and the WAL is left as it is (the last
   * process to close zeroes it). Other processes opening the store meanwhile wait (busy timeout).
   */
  async #zeroCheckpointedWal(): Promise<void> {
    try {
      const db = this.#writerDb;
      db.pragma('busy_timeout = 0');
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN IMMEDIATE');
      db.exec('COMMIT');
      const [result] = db.pragma('wal_checkpoint(RESTART)') as WalCheckpointResult[];
      if (result === undefined || result.busy !== 0 || result.log !== result.checkpointed) return;
      await zeroFile(`${this.location}-wal`);
    } catch {
      // Closing goes on: the frames stay until SQLite reuses or deletes the file.
    }
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    // setImmediate, not now: every write() requested in this turn of the event loop joins the batch.
    setImmediate(() => void this.#flush());
  }

  /**
   * Commits one batch (or runs one whileIdle job), then hands the event loop a turn before the next.
   * better-sqlite3 is synchronous, so a batch settles in microtasks alone; callers that queue their
   * next write as soon as the last resolves (a bulk import, the kill -9 test's writer) would keep a
   * `while (queued)` loop going forever, and timers (the health probe's deadline), sockets and pipes
   * would never run. Writes requested meanwhile still join the next batch: the turn costs no fsync.
   */
  async #flush(): Promise<void> {
    try {
      const head = this.#queue[0];
      if (head?.outside) {
        this.#queue.shift();
        await head.outside().then(head.resolve, head.reject);
      } else if (head) {
        // A batch ends before the next whileIdle() job.
        const next = this.#queue.findIndex((job) => job.outside !== undefined);
        const size = next === -1 ? this.#maxBatch : Math.min(next, this.#maxBatch);
        await this.#runBatch(this.#queue.splice(0, size));
      }
    } finally {
      if (this.#queue.length > 0) {
        setImmediate(() => void this.#flush());
      } else {
        this.#flushing = false;
        for (const wake of this.#drainWaiters.splice(0)) wake();
      }
    }
  }

  async #runBatch(batch: Job<DB>[]): Promise<void> {
    this.#stats.batches++;
    this.#stats.maxBatch = Math.max(this.#stats.maxBatch, batch.length);
    let trx: ControlledTransaction<DB>;
    try {
      trx = await this.#writer.startTransaction().execute();
    } catch (error) {
      this.#noteFailure(error);
      for (const job of batch) job.reject(notCommitted(error));
      return;
    }
    const done: Array<{ job: Job<DB>; value: unknown }> = [];
    const [only] = batch;
    if (batch.length === 1 && only !== undefined) {
      // One job, the usual batch of a store written now and then (a write to each of many tenants):
      // the transaction is the job's own, so it needs no savepoint, and a job that fails rolls it
      // back whole instead of committing (and syncing) an empty transaction.
      this.#stats.jobs++;
      try {
        done.push({ job: only, value: await only.run(trx) });
      } catch (error) {
        const lost = !this.#writerDb.inTransaction;
        await abandon(trx);
        if (lost) this.#noteFailure(error);
        only.reject(error);
        return;
      }
    }
    for (const [i, job] of (batch.length === 1 ? [] : batch).entries()) {
      this.#stats.jobs++;
      const outcome = await this.#runJob(trx, job);
      if (outcome.kind === 'done') {
        done.push({ job, value: outcome.value });
      } else if (outcome.kind === 'failed') {
        job.reject(outcome.error);
      } else {
        // The job ended the shared transaction (or SQLite rolled it back): what ran before it is gone.
        // Later jobs have not run; they go first into the next batch.
        await abandon(trx);
        this.#noteFailure(outcome.error);
        job.reject(outcome.error);
        for (const d of done) d.job.reject(notCommitted(outcome.error));
        this.#queue.unshift(...batch.slice(i + 1));
        return;
      }
    }
    // Readers see the commit from COMMIT on: durable() must cover it before COMMIT runs.
    const synced = this.#wal === undefined ? undefined : deferred();
    if (synced) this.#syncing = synced.promise;
    try {
      await trx.commit().execute();
    } catch (error) {
      // A failed COMMIT leaves nothing of the batch visible: nothing to wait for.
      this.#syncing = undefined;
      synced?.resolve();
      await abandon(trx);
      this.#noteFailure(error);
      for (const d of done) d.job.reject(notCommitted(error));
      return;
    }
    if (this.#wal && synced) {
      try {
        await this.#wal.sync();
      } catch (error) {
        // fsyncgate: the pages may be gone from the cache and a retried fsync may still succeed.
        this.#syncFailure = error;
        this.#syncing = undefined;
        synced.promise.catch(() => undefined);
        synced.reject(notDurable(error));
        this.#noteFailure(error);
        for (const d of done) d.job.reject(notDurable(error));
        return;
      }
      this.#syncing = undefined;
      synced.resolve();
    }
    this.#stats.lastFailure = null;
    for (const d of done) d.job.resolve(d.value);
    this.#askCheckpoint();
  }

  #askCheckpoint(): void {
    const checkpointer = this.#checkpointer;
    if (checkpointer === undefined) return;
    this.#batchesSinceCheckpoint++;
    if (this.#checkpointing !== undefined || this.#closing) return;
    if (this.#batchesSinceCheckpoint < CHECKPOINT_EVERY_BATCHES) return;
    this.#batchesSinceCheckpoint = 0;
    const checkpoint = () => checkpointer.checkpoint(this.location);
    const done = this.#walFrames >= HOLD_WRITES_AT_FRAMES ? this.whileIdle(checkpoint) : checkpoint();
    this.#checkpointing = done
      .then(
        (outcome) => {
          this.#walFrames = outcome?.frames ?? 0;
        },
        () => undefined, // whileIdle refuses once the store closes
      )
      .finally(() => {
        this.#checkpointing = undefined;
      });
  }

  async #runJob(trx: ControlledTransaction<DB>, job: Job<DB>): Promise<JobOutcome> {
    let savepoint: ControlledTransaction<DB, [typeof SAVEPOINT]>;
    try {
      savepoint = await trx.savepoint(SAVEPOINT).execute();
    } catch (error) {
      return { kind: 'lost', error };
    }
    try {
      const value = await job.run(trx);
      await savepoint.releaseSavepoint(SAVEPOINT).execute();
      return { kind: 'done', value };
    } catch (error) {
      if (!this.#writerDb.inTransaction) return { kind: 'lost', error };
      try {
        await savepoint.rollbackToSavepoint(SAVEPOINT).execute();
        await savepoint.releaseSavepoint(SAVEPOINT).execute();
        return { kind: 'failed', error };
      } catch {
        return { kind: 'lost', error };
      }
    }
  }

  async #runProbe(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), HEALTH_PROBE_TIMEOUT_MS).unref();
    });
    const probe = this.write(rewriteUserVersion).then(
      () => true,
      () => false,
    );
    try {
      return await Promise.race([probe, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  #noteFailure(error: unknown): void {
    this.#stats.failedBatches++;
    this.#stats.lastFailure = sqliteCode(error) ?? 'UNKNOWN';
  }
}

async function rewriteUserVersion<DB>(trx: Transaction<DB>): Promise<void> {
  const { rows } = await sql<{ user_version: number }>`PRAGMA user_version`.execute(trx);
  const version = rows[0]?.user_version;
  if (!Number.isSafeInteger(version)) throw new Error('PRAGMA user_version returned no integer');
  // PRAGMA takes no bound parameters; the value is an integer read just above.
  await sql.raw(`PRAGMA user_version = ${version}`).execute(trx);
}

/** Rolls back what is left of a batch's transaction and frees the connection; errors are moot. */
async function abandon<DB>(trx: ControlledTransaction<DB>): Promise<void> {
  try {
    await trx.rollback().execute();
  } catch {
    // SQLite may have rolled it back already; rollback() frees the connection either way.
  }
}

function notCommitted(cause: unknown): TresorError {
  const error = new TresorError(
    'TRESOR_ERR_UNAVAILABLE',
    'the store could not commit the transaction this write was part of; nothing of it was saved',
  );
  error.cause = cause;
  return error;
}

function notDurable(cause: unknown): TresorError {
  const error = new TresorError(
    'TRESOR_ERR_UNAVAILABLE',
    'the store could not make its writes durable; it takes no reads or writes until it is reopened',
  );
  error.cause = cause;
  return error;
}

function deferred(): { promise: Promise<void>; resolve(): void; reject(error: unknown): void } {
  let resolve: () => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function sqliteCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return undefined;
}
