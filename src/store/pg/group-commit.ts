/**
 * Group commit on PostgreSQL: the same contract as the SQLite store's (src/store/sqlite/store.ts
 * header), on one dedicated connection.
 *
 * With synchronous_commit on, every COMMIT waits for its WAL flush; one transaction per request
 * would cap throughput at the disk's flush rate. So write() only enqueues; the writer takes what is
 * queued (up to `maxBatch` jobs), opens ONE transaction and runs each job in its own SAVEPOINT: a job
 * that throws is rolled back to its savepoint and rejects with its own error while its batch-mates go
 * on. Successful jobs resolve only after COMMIT returned, i.e. once the batch is durable; if COMMIT
 * fails (a deferred constraint, a lost connection) every job of the batch rejects. Jobs run one after
 * another in queue order.
 *
 * One writer may serve several schemas (every tenant's, src/store/pg/tenant-stores.ts): a job then
 * carries its schema, set with SET LOCAL search_path inside its own savepoint before its work runs,
 * so its unqualified table names reach its schema and no other. The writer connection's own
 * search_path is empty: a job without a schema reaches no table at all.
 *
 * The connection is held for the writer's life. If it breaks (a server restart), the batch on it
 * fails and the next batch takes a fresh connection from the pool.
 *
 * Several server processes on one database (outbox order): every store's `audit_events.seq` is
 * taken at INSERT, but transactions commit in their own order, and the audit sequencer reads each
 * outbox `WHERE seq > cursor`. With two writers on one outbox (two nodes' batches on the control
 * store, or on one tenant), seq 6 could commit while seq 5 is still in flight, the sequencer move 6
 * and set its cursor past 5, and event 5 would never reach the log. So each batch first takes a
 * transaction-scoped advisory lock per schema it writes (`outboxLockSql`), in one fixed order (by key,
 * so two batches never wait on each other in a cycle) and before any row lock: a batch that writes
 * an outbox holds its lock from before its first INSERT until its COMMIT is visible (PostgreSQL
 * releases locks after the commit is marked done), so a later seq is always assigned after every
 * earlier one committed or aborted: seq order is commit order, and `seq > cursor` loses nothing.
 * On one server process the lock is uncontended (the writer runs one batch at a time) and travels in
 * the first job's round trip; across processes it serialises the batches of one outbox (group commit
 * keeps them large: one WAL flush for up to `maxBatch` writes). The other way — an xid column and a
 * sequencer that moves only rows older than the snapshot's xmin, with an (xid, seq) cursor — needs
 * no lock on the write path but stalls the whole log behind any long transaction on the server (of
 * any database), and changes the cursor's meaning: the lock was chosen.
 * A batch whose commit is part of a cluster also NOTIFYs `OUTBOX_CHANNEL` with each schema it wrote,
 * at its commit (PostgreSQL delivers notifications only of committed transactions), so the
 * sequencer of whichever process holds the lease moves the events at once.
 */
import { AsyncResource } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import {
  CompiledQuery,
  type ControlledTransaction,
  Kysely,
  PostgresDialect,
  type PostgresPool,
  type PostgresPoolClient,
  type Transaction,
} from 'kysely';
import type pg from 'pg';
import { TresorError } from '../../errors.ts';
import { applySession, quoteIdent } from './pool.ts';

/** Jobs per transaction at most: bounds how long one batch holds its row locks. */
export const DEFAULT_MAX_BATCH = 256;

/** A probe write that has not committed by then means the store cannot take writes. */
const HEALTH_PROBE_TIMEOUT_MS = 5_000;

const SAVEPOINT = 'tresor_write';

/** The first key of every outbox lock: 'Trso' (the sequencer's lease is 'Trsr'). */
export const OUTBOX_LOCK_CLASS = 0x5472736f;
/** Where a committed write batch announces the schemas it wrote (payload: the schema's name). */
export const OUTBOX_CHANNEL = 'tresor_outbox';

/** The outbox lock's second key for `schema`: 32 bits of its SHA-256 (a collision only serialises more). */
export function outboxLockKey(schema: string): number {
  return createHash('sha256').update(schema).digest().readInt32BE(0);
}

/** The statements that take the outbox locks of `schemas`, in key order (no wait cycle between batches). */
export function outboxLockSql(schemas: Iterable<string>): string[] {
  const keys = [...new Set([...schemas].map(outboxLockKey))].sort((a, b) => a - b);
  return keys.map((key) => `SELECT pg_advisory_xact_lock(${OUTBOX_LOCK_CLASS}, ${key})`);
}

/** NOTIFY of each schema a batch wrote, sent just before its COMMIT. */
function notifySql(schemas: Iterable<string>): string[] {
  return [...new Set(schemas)].map(
    (schema) => `SELECT pg_notify('${OUTBOX_CHANNEL}', ${quoteLiteral(schema)})`,
  );
}

function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
const UNDO = CompiledQuery.raw(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}; RELEASE SAVEPOINT ${SAVEPOINT}`);

export interface PgStoreStats {
  /** Transactions the writer has begun (each costs one WAL flush when it commits a change). */
  batches: number;
  /** Work functions run, successful or not. */
  jobs: number;
  /** Most jobs in one batch so far. */
  maxBatch: number;
  /** Batches whose BEGIN or COMMIT failed, or whose transaction a job ended. */
  failedBatches: number;
  /** The SQLSTATE (or Node error code) of the last failed batch, cleared by the next commit. */
  lastFailure: string | null;
  /** Jobs waiting for the next batch now. */
  queued: number;
}

interface Job {
  /** The schema the job's unqualified names reach (SET LOCAL search_path), or none. */
  schema: string | undefined;
  run(trx: Transaction<unknown>): Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

type JobOutcome =
  | { kind: 'done'; value: unknown }
  | { kind: 'failed'; error: unknown }
  /** The job ran and the shared transaction is gone (it ended it, or the connection broke). */
  | { kind: 'lost'; error: unknown }
  /**
   * The job could not start: its savepoint (or the release of the previous job's, sent with it)
   * failed, so the transaction was gone before it ran.
   */
  | { kind: 'unstarted'; error: unknown };

export class PgGroupCommit {
  readonly #connection: DedicatedConnection;
  readonly #kysely: Kysely<unknown>;
  readonly #maxBatch: number;
  readonly #queue: Job[] = [];
  readonly #stats = {
    batches: 0,
    jobs: 0,
    maxBatch: 0,
    failedBatches: 0,
    lastFailure: null as string | null,
  };
  #flushing = false;
  #drainWaiters: Array<() => void> = [];
  #closing = false;
  #closed: Promise<void> | undefined;
  #probe: Promise<boolean> | undefined;
  /** The schema of a job that names none (the store's own), for its outbox lock; none on a shared writer. */
  readonly #ownSchema: string | undefined;

  /**
   * `searchPath`: the writer connection's session search_path ('' when every job names its schema);
   * `ownSchema`: the schema it names, unquoted (the outbox a job without a schema writes).
   */
  constructor(pool: pg.Pool, searchPath: string, maxBatch = DEFAULT_MAX_BATCH, ownSchema?: string) {
    if (!Number.isSafeInteger(maxBatch) || maxBatch < 1)
      throw new RangeError('maxBatch must be a positive integer');
    this.#maxBatch = maxBatch;
    this.#ownSchema = ownSchema;
    this.#connection = new DedicatedConnection(pool, searchPath);
    this.#kysely = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: this.#connection }) });
  }

  /** A Kysely on the writer's connection, for work before the first batch (migrations, checks). */
  kysely<DB>(): Kysely<DB> {
    return this.#kysely as Kysely<DB>;
  }

  write<DB, T>(schema: string | undefined, work: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
    if (this.#closing)
      return Promise.reject(new TresorError('TRESOR_ERR_UNAVAILABLE', 'the store is closed'));
    if (schema !== undefined) quoteIdent(schema);
    return new Promise<T>((resolve, reject) => {
      // Run the work in its caller's async context (request-scoped logging, tracing), not the writer's.
      const context = new AsyncResource('TresorStoreWrite');
      const run = (trx: Transaction<unknown>) =>
        context.runInAsyncScope(work, undefined, trx as Transaction<DB>);
      this.#queue.push({ schema, run, resolve: resolve as (value: unknown) => void, reject });
      this.#scheduleFlush();
    });
  }

  stats(): PgStoreStats {
    return { ...this.#stats, queued: this.#queue.length };
  }

  /**
   * True only if a write commits now: the probe takes a transaction id, so its COMMIT writes and
   * flushes a WAL record like any write. It joins the current batch, so under load it costs nothing.
   */
  healthy(): Promise<boolean> {
    if (this.#closing) return Promise.resolve(false);
    this.#probe ??= this.#runProbe().finally(() => {
      this.#probe = undefined;
    });
    return this.#probe;
  }

  close(): Promise<void> {
    this.#closed ??= this.#shutdown();
    return this.#closed;
  }

  async #shutdown(): Promise<void> {
    this.#closing = true;
    if (this.#flushing) await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    this.#connection.drop();
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    // setImmediate, not now: every write() requested in this turn of the event loop joins the batch.
    setImmediate(() => void this.#flush());
  }

  async #flush(): Promise<void> {
    try {
      if (this.#queue.length > 0) await this.#runBatch(this.#queue.splice(0, this.#maxBatch));
    } finally {
      if (this.#queue.length > 0) {
        setImmediate(() => void this.#flush());
      } else {
        this.#flushing = false;
        for (const wake of this.#drainWaiters.splice(0)) wake();
      }
    }
  }

  async #runBatch(batch: Job[]): Promise<void> {
    this.#stats.batches++;
    this.#stats.maxBatch = Math.max(this.#stats.maxBatch, batch.length);
    let trx: ControlledTransaction<unknown>;
    try {
      trx = await this.#kysely.startTransaction().execute();
    } catch (error) {
      this.#noteFailure(error);
      for (const job of batch) job.reject(notCommitted(error));
      return;
    }
    const done: Array<{ job: Job; value: unknown }> = [];
    const schemas = new Set<string>();
    for (const job of batch) {
      const schema = job.schema ?? this.#ownSchema;
      if (schema !== undefined) schemas.add(schema);
    }
    // The outbox locks travel with the first job's SAVEPOINT, outside it (a job rolled back to its
    // savepoint must not give them up).
    let lead = outboxLockSql(schemas);
    // A successful job's RELEASE travels with the next job's SAVEPOINT (one round trip less per job).
    let releasePending = false;
    for (const [i, job] of batch.entries()) {
      const releasedPrevious = releasePending;
      const outcome = await runJob(trx, job, releasedPrevious, lead);
      lead = [];
      if (outcome.kind !== 'unstarted') this.#stats.jobs++;
      if (outcome.kind === 'done') {
        done.push({ job, value: outcome.value });
        releasePending = true;
        continue;
      }
      releasePending = false;
      if (outcome.kind === 'failed') {
        job.reject(outcome.error);
        continue;
      }
      // The shared transaction is gone (a job ended it, or the connection broke): what ran before
      // is gone with it. Jobs that have not run go first into the next batch.
      await abandon(trx);
      this.#noteFailure(outcome.error);
      for (const d of done) d.job.reject(notCommitted(outcome.error));
      // A job that could not start because the job before it ended the transaction goes on to the
      // next batch; one that could not start on its own (a broken connection) fails, so the queue
      // always moves.
      const retry = outcome.kind === 'unstarted' && releasedPrevious;
      if (!retry) job.reject(outcome.error);
      this.#queue.unshift(...batch.slice(retry ? i : i + 1));
      return;
    }
    try {
      // The last job's release is sent on its own (COMMIT would not notice a transaction it ended),
      // with the batch's wake-up for the sequencer of whichever process holds the lease.
      const beforeCommit = done.length > 0 ? notifySql(schemas) : [];
      if (releasePending) beforeCommit.unshift(`RELEASE SAVEPOINT ${SAVEPOINT}`);
      if (beforeCommit.length > 0) await trx.executeQuery(CompiledQuery.raw(beforeCommit.join('; ')));
      await trx.commit().execute();
    } catch (error) {
      await abandon(trx);
      this.#noteFailure(error);
      for (const d of done) d.job.reject(notCommitted(error));
      return;
    }
    this.#stats.lastFailure = null;
    for (const d of done) d.job.resolve(d.value);
  }

  async #runProbe(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), HEALTH_PROBE_TIMEOUT_MS).unref();
    });
    const probe = this.write(undefined, async (trx) => {
      await trx.executeQuery(CompiledQuery.raw('SELECT pg_current_xact_id()'));
    }).then(
      () => true,
      () => false,
    );
    try {
      return await Promise.race([probe, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** After a failed batch the connection may be broken or in a state we did not make: take a new one. */
  #noteFailure(error: unknown): void {
    this.#connection.drop(true);
    this.#stats.failedBatches++;
    this.#stats.lastFailure = errorCode(error) ?? 'UNKNOWN';
  }
}

async function runJob(
  trx: ControlledTransaction<unknown>,
  job: Job,
  releasePrevious: boolean,
  lead: readonly string[],
): Promise<JobOutcome> {
  try {
    // One round trip: the batch's locks (first job), the previous job's release, this job's
    // savepoint, then (inside it) its schema.
    const steps = [...lead];
    if (releasePrevious) steps.push(`RELEASE SAVEPOINT ${SAVEPOINT}`);
    steps.push(`SAVEPOINT ${SAVEPOINT}`);
    if (job.schema !== undefined) steps.push(`SET LOCAL search_path TO ${quoteIdent(job.schema)}`);
    await trx.executeQuery(CompiledQuery.raw(steps.join('; ')));
  } catch (error) {
    return { kind: 'unstarted', error };
  }
  let value: unknown;
  try {
    value = await job.run(trx);
  } catch (error) {
    try {
      await trx.executeQuery(UNDO);
      return { kind: 'failed', error };
    } catch {
      return { kind: 'lost', error };
    }
  }
  return { kind: 'done', value };
}

/** Rolls back what is left of a batch's transaction; errors are moot (it may be gone already). */
async function abandon(trx: ControlledTransaction<unknown>): Promise<void> {
  try {
    await trx.rollback().execute();
  } catch {
    // The connection is dropped below if it broke; a rollback outside a transaction only warns.
  }
}

function notCommitted(cause: unknown): TresorError {
  const error = new TresorError(
    'TRESOR_ERR_UNAVAILABLE',
    'the store could not commit the transaction this write was part of; its outcome is not confirmed',
  );
  error.cause = cause;
  return error;
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return undefined;
}

/**
 * One connection of the pool held for the writer's life, as a Kysely pool that always hands out
 * that connection. A broken one (its 'error' event, or Kysely discarding it after a failed rollback)
 * is given back to be destroyed, and the next batch takes a fresh one.
 */
class DedicatedConnection implements PostgresPool {
  readonly #pool: pg.Pool;
  readonly #searchPath: string;
  #client: pg.PoolClient | undefined;
  #broken = false;

  constructor(pool: pg.Pool, searchPath: string) {
    this.#pool = pool;
    this.#searchPath = searchPath;
  }

  async connect(): Promise<PostgresPoolClient> {
    if (this.#client !== undefined && this.#broken) this.drop(true);
    if (this.#client === undefined) {
      const client = await this.#pool.connect();
      client.on('error', () => {
        if (this.#client === client) this.#broken = true;
      });
      try {
        await applySession(client, this.#searchPath);
      } catch (error) {
        client.release(true);
        throw error;
      }
      this.#client = client;
      this.#broken = false;
    }
    const client = this.#client;
    return {
      query: client.query.bind(client) as PostgresPoolClient['query'],
      release: (destroy?: boolean) => {
        if (destroy && this.#client === client) this.#broken = true;
      },
    };
  }

  /** Gives the connection back to the pool (destroying it if broken). */
  drop(destroy = this.#broken): void {
    const client = this.#client;
    this.#client = undefined;
    this.#broken = false;
    client?.release(destroy);
  }

  async end(): Promise<void> {}
}
