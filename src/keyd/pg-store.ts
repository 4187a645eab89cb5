/**
 * keyd's store on PostgreSQL (`keyd.database.url`, TRESOR_KEYD_DATABASE_URL): the same interface
 * and semantics as the SQLite store (store.ts), in a database of its own, apart from the data's
 * and reached with a role of its own, and shared by every keyd instance of a deployment.
 *
 * - Wrapped keys and metadata only, in schema `keyd`; its own migration history (`keyd.schema_version`),
 *   applied in one transaction under an advisory lock, so instances starting together migrate once.
 * - Durability: `synchronous_commit = on` on every connection (startup option, checked), and the
 *   store refuses to open if the server runs with `fsync = off`. It also refuses a database that
 *   holds Tresor's data (schema `tresor` or `tenant_*`): keys and data never share a database.
 * - One hash chain for every instance: each write transaction first takes the transaction-scoped
 *   advisory lock OPS_CHAIN_LOCK, then reads the committed head (`ORDER BY seq DESC LIMIT 1`) and
 *   chains on it. The lock is held until COMMIT, so the next writer, in any instance, sees the head
 *   this one committed: appends are serialised, the chain never forks.
 * - Every multi-row change is one transaction with its ops-log entry; a change runs in a savepoint,
 *   so a refused change rolls back alone and the entries queued with it still commit.
 * - Group commit: data-path entries (appendOps) are queued and written together by one writer, one
 *   transaction (one WAL flush) per batch; each entry's promise resolves only once its COMMIT
 *   returned, with its encryption count in the same transaction.
 * - The last checkpoint tree signed is one row changed under the chain lock by compare-and-set:
 *   of two instances extending the same tree, the second finds it changed (TRESOR_ERR_CHECKPOINT_STALE).
 * - Encryption budget: claimEncryptions is a compare-and-set on `reserved`, never past the limit.
 * - Erasure: PostgreSQL keeps a row's old version in the table's file until VACUUM, so after a
 *   retire or destroy (wrapped forms set to NULL) the store runs VACUUM FULL on tenant_keys: the
 *   table is rewritten without the dead versions (docs/keyd.md, "Erasure on PostgreSQL").
 */

import pg from 'pg';
import { KeydError } from './errors.ts';
import type { OpsLogEntry } from './operations.ts';
import {
  type ChainedOpsLogEntry,
  clampDetail,
  GENESIS_HASH,
  type OpsLogDraft,
  type OpsLogVerification,
  opsLogHash,
  verifyOpsChain,
} from './ops-log.ts';
import {
  type BackupKeyRecord,
  type CheckpointTreeRecord,
  claimSize,
  type EncryptionCount,
  type KeyStore,
  type Rewrapped,
  type RootWrappedRow,
  type SigningKeyRecord,
  type TenantKeyRecord,
  type TenantRecord,
} from './store.ts';

/** The advisory lock every write transaction takes first ('Tkyd', 1): one ops-log chain. */
const OPS_CHAIN_LOCK = 'SELECT pg_advisory_xact_lock(1416329572, 1)';
/** The lock migrations run under ('Tkyd', 2). */
const MIGRATION_LOCK = 'SELECT pg_advisory_xact_lock(1416329572, 2)';
/** Entries per write transaction at most: bounds how long one batch holds the chain lock. */
const MAX_BATCH = 512;
/** Ops-log rows per page when verifying. */
const VERIFY_PAGE = 5000;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

function parseExactNumber(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value))
    throw new RangeError('a PostgreSQL integer is beyond 2^53 and cannot be read exactly');
  return value;
}

const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (format !== 'binary' && (oid === INT8_OID || oid === NUMERIC_OID)) return parseExactNumber;
    return pg.types.getTypeParser(oid, format ?? 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

const MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE keyd.tenants (
        id text PRIMARY KEY,
        state text NOT NULL CHECK (state IN ('active', 'pending-destroy', 'destroyed')),
        created_at text NOT NULL,
        destroy_after text,
        destroyed_at text
      );
      CREATE TABLE keyd.tenant_keys (
        tenant text NOT NULL REFERENCES keyd.tenants (id),
        version integer NOT NULL CHECK (version >= 1),
        key_id text NOT NULL UNIQUE,
        state text NOT NULL CHECK (state IN ('active', 'decrypt-only', 'retired', 'destroyed')),
        root_version integer,
        wrapped bytea,
        created_at text NOT NULL,
        rotate_after text,
        encryptions bigint NOT NULL DEFAULT 0 CHECK (encryptions >= 0),
        reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
        PRIMARY KEY (tenant, version),
        CHECK ((wrapped IS NULL) = (state IN ('retired', 'destroyed'))),
        CHECK ((root_version IS NULL) = (wrapped IS NULL))
      );
      CREATE UNIQUE INDEX tenant_keys_one_active ON keyd.tenant_keys (tenant) WHERE state = 'active';
      CREATE INDEX tenant_keys_root_version ON keyd.tenant_keys (root_version);
      CREATE TABLE keyd.signing_keys (
        purpose text PRIMARY KEY,
        key_id text NOT NULL UNIQUE,
        root_version integer NOT NULL,
        wrapped bytea NOT NULL,
        public_key bytea NOT NULL,
        created_at text NOT NULL
      );
      CREATE TABLE keyd.backup_keys (
        version integer PRIMARY KEY CHECK (version >= 1),
        key_id text NOT NULL UNIQUE,
        root_version integer NOT NULL,
        wrapped bytea NOT NULL,
        created_at text NOT NULL
      );
      CREATE TABLE keyd.checkpoint_tree (
        id integer PRIMARY KEY CHECK (id = 1),
        origin text NOT NULL,
        size bigint NOT NULL CHECK (size >= 0),
        root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
        signed_at text NOT NULL
      );
      CREATE TABLE keyd.ops_log (
        seq bigint PRIMARY KEY CHECK (seq >= 1),
        at text NOT NULL,
        caller text NOT NULL,
        op text NOT NULL,
        tenant text,
        key_id text,
        outcome text NOT NULL CHECK (outcome IN ('ok', 'error')),
        detail text,
        prev_hash text NOT NULL,
        hash text NOT NULL
      );
      CREATE FUNCTION keyd.ops_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ops_log is append-only'; END $$;
      CREATE TRIGGER ops_log_no_update BEFORE UPDATE OR DELETE ON keyd.ops_log
        FOR EACH ROW EXECUTE FUNCTION keyd.ops_log_append_only();
      CREATE TRIGGER ops_log_no_truncate BEFORE TRUNCATE ON keyd.ops_log
        FOR EACH STATEMENT EXECUTE FUNCTION keyd.ops_log_append_only();
    `,
  },
  {
    // Requests keyd does at most once (src/keyd/repeated-requests.ts), as in the SQLite store.
    // seq names the ops-log entry; no foreign key, which would pre-empt the append-only refusal of
    // TRUNCATE with its own.
    version: 2,
    sql: `
      CREATE TABLE keyd.requests (
        request_id text PRIMARY KEY,
        seq bigint NOT NULL UNIQUE
      );
    `,
  },
];

const KEY_COLUMNS = `tenant, version, key_id AS "keyId", state, root_version AS "rootVersion", wrapped,
  created_at AS "createdAt", rotate_after AS "rotateAfter", encryptions, reserved`;
const BACKUP_KEY_COLUMNS = `version, key_id AS "keyId", root_version AS "rootVersion", wrapped, created_at AS "createdAt"`;
const OPS_COLUMNS = `seq, at, caller, op, tenant, key_id AS "keyId", outcome, detail, prev_hash AS "prevHash", hash`;

type Query = <R extends pg.QueryResultRow = Record<string, unknown>>(
  text: string,
  params?: unknown[],
) => Promise<pg.QueryResult<R>>;

type Job =
  | {
      kind: 'entry';
      draft: OpsLogDraft;
      encryptions: EncryptionCount | undefined;
      resolve: (entry: OpsLogEntry) => void;
      reject: (err: unknown) => void;
    }
  | {
      kind: 'change';
      mutation: (q: Query) => Promise<unknown>;
      log: OpsLogDraft | ((result: unknown) => OpsLogDraft);
      resolve: (value: unknown) => void;
      reject: (err: unknown) => void;
    };

function storeWriteError(err: unknown): KeydError {
  if (err instanceof KeydError) return err;
  const code = (err as { code?: unknown }).code;
  const detail = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : '';
  return new KeydError('TRESOR_ERR_INTERNAL', `the key store could not be written${detail}`);
}

function conflict(message: string): KeydError {
  return new KeydError('TRESOR_ERR_INTERNAL', `key store conflict: ${message}`);
}

/** A change another instance made first (a unique key taken meanwhile) is a conflict, not a fault. */
function changeError(err: unknown): KeydError {
  if ((err as { code?: unknown }).code === '23505') return conflict('another keyd instance made it first');
  return storeWriteError(err);
}

export interface PgKeyStoreOptions {
  /** Connections at most (default 4): the writer takes one per batch, reads the others. */
  maxConnections?: number;
}

/**
 * Opens keyd's store in the PostgreSQL database at `url`: checks the server's durability settings
 * and that the database is keyd's alone, then migrates. Several keyd processes may open one.
 */
export async function openPgKeyStore(url: string, options: PgKeyStoreOptions = {}): Promise<PgKeyStore> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 4,
    connectionTimeoutMillis: 10_000,
    types: TYPES,
    options: '-c synchronous_commit=on -c search_path=keyd',
  });
  // An idle connection that breaks (a server restart) emits 'error' on the pool; the pool drops it.
  pool.on('error', () => {});
  try {
    await checkDatabase(pool);
    await migrate(pool);
  } catch (err) {
    await pool.end().catch(() => undefined);
    if (err instanceof KeydError) throw err;
    const code = (err as { code?: unknown }).code;
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      `keyd.database.url: the key store database could not be opened${typeof code === 'string' ? ` (${code})` : ''}`,
    );
  }
  return new PgKeyStore(pool);
}

async function checkDatabase(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ fsync: string; sc: string; data: boolean }>(
    `SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc,
       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'tresor' OR nspname LIKE 'tenant\\_%') AS data`,
  );
  const facts = rows[0];
  if (!facts)
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'keyd.database.url: no answer from PostgreSQL');
  if (facts.fsync !== 'on') {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      `PostgreSQL runs with fsync = ${facts.fsync}: keyd's acknowledged writes would not survive a power cut; set fsync = on`,
    );
  }
  if (facts.sc !== 'on') {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      `keyd's PostgreSQL connection runs with synchronous_commit = ${facts.sc}, not on: acknowledged writes could be lost`,
    );
  }
  if (facts.data) {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      "keyd.database.url names a database that holds Tresor's data (schema tresor or tenant_*): keyd's keys need a database (and role) of their own",
    );
  }
}

async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(MIGRATION_LOCK);
    await client.query('CREATE SCHEMA IF NOT EXISTS keyd');
    await client.query(
      'CREATE TABLE IF NOT EXISTS keyd.schema_version (version integer PRIMARY KEY, applied_at text NOT NULL)',
    );
    const { rows } = await client.query<{ v: number | null }>(
      'SELECT max(version) AS v FROM keyd.schema_version',
    );
    const current = rows[0]?.v ?? 0;
    const latest = MIGRATIONS.at(-1)?.version ?? 0;
    if (current > latest) {
      throw new KeydError(
        'TRESOR_ERR_STORE_CORRUPT',
        `key store schema version ${current} is newer than this keyd understands (${latest})`,
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO keyd.schema_version (version, applied_at) VALUES ($1, $2)', [
        m.version,
        new Date().toISOString(),
      ]);
    }
    await client.query('COMMIT');
    client.release();
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release(true);
    throw err;
  }
}

export class PgKeyStore implements KeyStore {
  readonly #pool: pg.Pool;
  readonly #queue: Job[] = [];
  #writing = false;
  #drained: Array<() => void> = [];
  #closed = false;
  /** Transactions the writer committed (group commit: one per batch), for tests. */
  batches = 0;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  #open(): void {
    if (this.#closed) throw new KeydError('TRESOR_ERR_INTERNAL', 'the key store is closed');
  }

  #read: Query = async (text, params) => {
    this.#open();
    try {
      return await this.#pool.query(text, params);
    } catch (err) {
      throw new KeydError('TRESOR_ERR_INTERNAL', `the key store could not be read${sqlState(err)}`);
    }
  };

  // --- the writer ---------------------------------------------------------------------------------

  #enqueue(job: Job): void {
    this.#queue.push(job);
    if (this.#writing) return;
    this.#writing = true;
    // Every write requested in this turn of the event loop joins the batch.
    setImmediate(() => void this.#drain());
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) await this.#runBatch(this.#queue.splice(0, MAX_BATCH));
    } finally {
      this.#writing = false;
      for (const wake of this.#drained.splice(0)) wake();
    }
  }

  async #runBatch(batch: Job[]): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      for (const job of batch) job.reject(storeWriteError(err));
      return;
    }
    const q: Query = (text, params) => client.query(text, params);
    const settled: Array<{ job: Job; value: unknown }> = [];
    let broken = false;
    try {
      await q('BEGIN');
      await q(OPS_CHAIN_LOCK);
      const head = await q<{ seq: number; hash: string }>(
        'SELECT seq, hash FROM ops_log ORDER BY seq DESC LIMIT 1',
      );
      let chain = head.rows[0] ?? { seq: 0, hash: GENESIS_HASH };
      // Encryption counts of the batch's entries, summed per version, in the same transaction.
      const counts = new Map<string, EncryptionCount>();
      for (const job of batch) {
        if (job.kind !== 'entry' || !job.encryptions) continue;
        const e = job.encryptions;
        const k = `${e.tenant}\u0000${e.version}`;
        const sum = counts.get(k);
        if (sum) sum.count += e.count;
        else counts.set(k, { ...e });
      }
      for (const c of counts.values()) {
        await q('UPDATE tenant_keys SET encryptions = encryptions + $1 WHERE tenant = $2 AND version = $3', [
          c.count,
          c.tenant,
          c.version,
        ]);
      }
      let pending: ChainedOpsLogEntry[] = [];
      const pendingJobs: Job[] = [];
      const flushEntries = async () => {
        if (pending.length === 0) return;
        await insertEntries(q, pending);
        pendingJobs.forEach((job, i) => {
          settled.push({ job, value: pending[i] });
        });
        pending = [];
        pendingJobs.length = 0;
      };
      for (const job of batch) {
        if (job.kind === 'entry') {
          const entry = chainEntry(chain, job.draft);
          chain = { seq: entry.seq, hash: entry.hash };
          pending.push(entry);
          pendingJobs.push(job);
          continue;
        }
        await flushEntries();
        await q('SAVEPOINT keyd_change');
        let value: unknown;
        let entry: ChainedOpsLogEntry;
        try {
          value = await job.mutation(q);
          const draft = typeof job.log === 'function' ? job.log(value) : job.log;
          entry = chainEntry(chain, draft);
          await insertEntries(q, [entry]);
          // A request id another instance recorded meanwhile fails here: the change rolls back alone.
          if (draft.requestId !== undefined)
            await q('INSERT INTO requests (request_id, seq) VALUES ($1, $2)', [draft.requestId, entry.seq]);
        } catch (err) {
          await q('ROLLBACK TO SAVEPOINT keyd_change; RELEASE SAVEPOINT keyd_change');
          job.reject(changeError(err));
          continue;
        }
        await q('RELEASE SAVEPOINT keyd_change');
        chain = { seq: entry.seq, hash: entry.hash };
        settled.push({ job, value });
      }
      await flushEntries();
      await q('COMMIT');
      this.batches += 1;
    } catch (err) {
      broken = true;
      await client.query('ROLLBACK').catch(() => undefined);
      const rejected = new Set<Job>();
      for (const { job } of settled) {
        rejected.add(job);
        job.reject(storeWriteError(err));
      }
      // Jobs that had not run yet (and any refused one already rejected stays rejected).
      for (const job of batch) if (!rejected.has(job)) job.reject(storeWriteError(err));
      return;
    } finally {
      client.release(broken);
    }
    for (const { job, value } of settled) {
      if (job.kind === 'entry') job.resolve(stripPrev(value as ChainedOpsLogEntry));
      else job.resolve(value);
    }
  }

  /** Runs `mutation` with its entry in the next write transaction, in its own savepoint. */
  #change<T>(
    mutation: (q: Query) => Promise<T>,
    log: OpsLogDraft | ((result: T) => OpsLogDraft),
  ): Promise<T> {
    this.#open();
    return new Promise<T>((resolve, reject) => {
      this.#enqueue({
        kind: 'change',
        mutation,
        log: log as OpsLogDraft | ((result: unknown) => OpsLogDraft),
        resolve: resolve as (value: unknown) => void,
        reject,
      });
    });
  }

  async appendOps(draft: OpsLogDraft, encryptions?: EncryptionCount): Promise<OpsLogEntry> {
    this.#open();
    return new Promise<OpsLogEntry>((resolve, reject) => {
      this.#enqueue({ kind: 'entry', draft, encryptions, resolve, reject });
    });
  }

  async readOpsLog(from: number, limit: number): Promise<OpsLogEntry[]> {
    const { rows } = await this.#read<ChainedOpsLogEntry>(
      `SELECT ${OPS_COLUMNS} FROM ops_log WHERE seq >= $1 ORDER BY seq LIMIT $2`,
      [from, limit],
    );
    return rows.map(stripPrev);
  }

  async findRequest(requestId: string): Promise<OpsLogEntry | undefined> {
    const { rows } = await this.#read<ChainedOpsLogEntry>(
      `SELECT ${OPS_COLUMNS} FROM ops_log WHERE seq = (SELECT seq FROM requests WHERE request_id = $1)`,
      [requestId],
    );
    const found = rows[0];
    return found === undefined ? undefined : stripPrev(found);
  }

  async verifyOpsLog(): Promise<OpsLogVerification> {
    const read = this.#read;
    async function* pages(): AsyncGenerator<ChainedOpsLogEntry> {
      let after = 0;
      for (;;) {
        const { rows } = await read<ChainedOpsLogEntry>(
          `SELECT ${OPS_COLUMNS} FROM ops_log WHERE seq > $1 ORDER BY seq LIMIT $2`,
          [after, VERIFY_PAGE],
        );
        yield* rows;
        const last = rows.at(-1);
        if (rows.length < VERIFY_PAGE || last === undefined) return;
        after = last.seq;
      }
    }
    return verifyOpsChain(pages());
  }

  // --- tenant keys ---------------------------------------------------------------------------------

  async getTenant(tenant: string): Promise<{ tenant: TenantRecord; keys: TenantKeyRecord[] } | undefined> {
    // One statement, one snapshot: the tenant's state and its versions as of the same moment, even
    // while another instance changes them.
    const { rows } = await this.#read<Record<string, unknown>>(
      `SELECT t.id AS "t_id", t.state AS "t_state", t.created_at AS "t_createdAt",
              t.destroy_after AS "t_destroyAfter", t.destroyed_at AS "t_destroyedAt", k.*
         FROM tenants t
         LEFT JOIN (SELECT ${KEY_COLUMNS} FROM tenant_keys) k ON k.tenant = t.id
         WHERE t.id = $1 ORDER BY k.version`,
      [tenant],
    );
    const first = rows[0];
    if (!first) return undefined;
    const record: TenantRecord = {
      id: first.t_id as string,
      state: first.t_state as TenantRecord['state'],
      createdAt: first.t_createdAt as string,
      destroyAfter: first.t_destroyAfter as string | null,
      destroyedAt: first.t_destroyedAt as string | null,
    };
    const keys = rows
      .filter((r) => r.keyId !== null && r.keyId !== undefined)
      .map(
        (r): TenantKeyRecord => ({
          tenant: r.tenant as string,
          version: r.version as number,
          keyId: r.keyId as string,
          state: r.state as TenantKeyRecord['state'],
          rootVersion: r.rootVersion as number | null,
          wrapped: r.wrapped as Buffer | null,
          createdAt: r.createdAt as string,
          rotateAfter: r.rotateAfter as string | null,
          encryptions: r.encryptions as number,
          reserved: r.reserved as number,
        }),
      );
    return { tenant: record, keys };
  }

  async createTenant(tenant: TenantRecord, key: TenantKeyRecord, log: OpsLogDraft): Promise<void> {
    await this.#change(async (q) => {
      await q(
        'INSERT INTO tenants (id, state, created_at, destroy_after, destroyed_at) VALUES ($1, $2, $3, $4, $5)',
        [tenant.id, tenant.state, tenant.createdAt, tenant.destroyAfter, tenant.destroyedAt],
      );
      await insertKey(q, key);
    }, log);
  }

  async addTenantKeyVersion(key: TenantKeyRecord, log: OpsLogDraft): Promise<void> {
    await this.#change(async (q) => {
      // The tenant's rows are locked: a rotation by another instance waits, then finds its version taken.
      const { rows } = await q<{ version: number }>(
        'SELECT version FROM tenant_keys WHERE tenant = $1 ORDER BY version FOR UPDATE',
        [key.tenant],
      );
      const max = rows.at(-1)?.version ?? 0;
      if (key.version !== max + 1)
        throw conflict(`tenant key version ${key.version} is not the next version`);
      await q(`UPDATE tenant_keys SET state = 'decrypt-only' WHERE tenant = $1 AND state = 'active'`, [
        key.tenant,
      ]);
      await insertKey(q, key);
    }, log);
  }

  async retireTenantKeyVersion(tenant: string, version: number, log: OpsLogDraft): Promise<void> {
    await this.#change(async (q) => {
      const { rowCount } = await q(
        `UPDATE tenant_keys SET wrapped = NULL, root_version = NULL, state = 'retired'
           WHERE tenant = $1 AND version = $2 AND state = 'decrypt-only'`,
        [tenant, version],
      );
      if (rowCount !== 1) throw conflict(`tenant key version ${version} is not decrypt-only`);
    }, log);
    await this.#vacuumTenantKeys();
  }

  async scheduleTenantDestroy(tenant: string, destroyAfter: string, log: OpsLogDraft): Promise<void> {
    await this.#change(async (q) => {
      const { rowCount } = await q(
        `UPDATE tenants SET state = 'pending-destroy', destroy_after = $1 WHERE id = $2 AND state = 'active'`,
        [destroyAfter, tenant],
      );
      if (rowCount !== 1) throw conflict('tenant is not active');
    }, log);
  }

  async cancelTenantDestroy(tenant: string, log: OpsLogDraft): Promise<void> {
    await this.#change(async (q) => {
      const { rowCount } = await q(
        `UPDATE tenants SET state = 'active', destroy_after = NULL WHERE id = $1 AND state = 'pending-destroy'`,
        [tenant],
      );
      if (rowCount !== 1) throw conflict('tenant is not pending destruction');
    }, log);
  }

  async destroyTenant(tenant: string, destroyedAt: string, log: OpsLogDraft): Promise<string[]> {
    const keyIds = await this.#change(async (q) => {
      const { rowCount } = await q(
        `UPDATE tenants SET state = 'destroyed', destroyed_at = $1 WHERE id = $2 AND state != 'destroyed'`,
        [destroyedAt, tenant],
      );
      if (rowCount !== 1) throw conflict('tenant is already destroyed');
      const { rows } = await q<{ keyId: string }>(
        `UPDATE tenant_keys SET wrapped = NULL, root_version = NULL, state = 'destroyed' WHERE tenant = $1
           RETURNING key_id AS "keyId", version`,
        [tenant],
      );
      return rows
        .map((r) => r as unknown as { keyId: string; version: number })
        .sort((a, b) => a.version - b.version)
        .map((r) => r.keyId);
    }, log);
    await this.#vacuumTenantKeys();
    return keyIds;
  }

  /**
   * Rewrites tenant_keys without the dead row versions that still hold erased wrapped keys. A
   * failure (another instance's lock past the timeout) is not the erasure's failure: the rows are
   * erased; the next retire or destroy rewrites the table again.
   */
  async #vacuumTenantKeys(): Promise<void> {
    let client: pg.PoolClient | undefined;
    try {
      client = await this.#pool.connect();
      await client.query("SET lock_timeout = '10s'");
      await client.query('VACUUM (FULL) tenant_keys');
      await client.query('RESET lock_timeout');
      client.release();
    } catch {
      client?.release(true);
    }
  }

  async tenantKeysDueForRotation(now: string): Promise<{ tenant: string; version: number }[]> {
    const { rows } = await this.#read<{ tenant: string; version: number }>(
      `SELECT k.tenant, k.version FROM tenant_keys k JOIN tenants t ON t.id = k.tenant
         WHERE t.state = 'active' AND k.state = 'active' AND k.rotate_after IS NOT NULL AND k.rotate_after <= $1
         ORDER BY k.rotate_after`,
      [now],
    );
    return rows.map((r) => ({ tenant: r.tenant, version: r.version }));
  }

  async tenantsDueForDestruction(now: string): Promise<string[]> {
    const { rows } = await this.#read<{ id: string }>(
      `SELECT id FROM tenants WHERE state = 'pending-destroy' AND destroy_after <= $1 ORDER BY destroy_after`,
      [now],
    );
    return rows.map((r) => r.id);
  }

  async claimEncryptions(
    tenant: string,
    version: number,
    want: number,
    limit: number,
  ): Promise<{ from: number; to: number } | undefined> {
    // Compare and set on `reserved`: of two instances claiming from the same value, one wins and the
    // other reads again. Bounded: every lost round is another instance's successful claim.
    for (let attempt = 0; attempt < 100; attempt++) {
      const { rows } = await this.#read<{ reserved: number }>(
        `SELECT reserved FROM tenant_keys WHERE tenant = $1 AND version = $2 AND state = 'active'`,
        [tenant, version],
      );
      const row = rows[0];
      const n = row === undefined ? 0 : claimSize(row.reserved, want, limit);
      if (row === undefined || n === 0) return undefined;
      const { rowCount } = await this.#read(
        `UPDATE tenant_keys SET reserved = $1::bigint
           WHERE tenant = $2 AND version = $3 AND reserved = $4 AND state = 'active' AND $1::bigint <= $5::bigint`,
        [row.reserved + n, tenant, version, row.reserved, limit],
      );
      if (rowCount === 1) return { from: row.reserved, to: row.reserved + n };
    }
    throw new KeydError('TRESOR_ERR_INTERNAL', 'could not claim encryptions: the key store is too contended');
  }

  async returnEncryptions(tenant: string, version: number, from: number, to: number): Promise<void> {
    await this.#read(
      `UPDATE tenant_keys SET reserved = greatest($1::bigint, encryptions) WHERE tenant = $2 AND version = $3 AND reserved = $4`,
      [from, tenant, version, to],
    );
  }

  // --- signing keys --------------------------------------------------------------------------------

  async getSigningKey(purpose: string): Promise<SigningKeyRecord | undefined> {
    const { rows } = await this.#read<SigningKeyRecord & pg.QueryResultRow>(
      `SELECT purpose, key_id AS "keyId", root_version AS "rootVersion", wrapped, public_key AS "publicKey",
           created_at AS "createdAt" FROM signing_keys WHERE purpose = $1`,
      [purpose],
    );
    return rows[0] ? { ...rows[0] } : undefined;
  }

  async insertSigningKey(key: SigningKeyRecord, log: OpsLogDraft): Promise<void> {
    await this.#change(async (q) => {
      await q(
        `INSERT INTO signing_keys (purpose, key_id, root_version, wrapped, public_key, created_at)
           VALUES ($1, $2, $3, $4, $5, $6)`,
        [key.purpose, key.keyId, key.rootVersion, key.wrapped, key.publicKey, key.createdAt],
      );
    }, log);
  }

  // --- the last checkpoint signed ------------------------------------------------------------------

  async getCheckpointTree(): Promise<CheckpointTreeRecord | undefined> {
    const { rows } = await this.#read<CheckpointTreeRecord & pg.QueryResultRow>(
      'SELECT origin, size, root_hash AS "rootHash", signed_at AS "signedAt" FROM checkpoint_tree WHERE id = 1',
    );
    return rows[0] ? { ...rows[0] } : undefined;
  }

  async replaceCheckpointTree(
    previous: CheckpointTreeRecord | undefined,
    next: CheckpointTreeRecord | undefined,
    log: OpsLogDraft,
  ): Promise<void> {
    await this.#change(async (q) => {
      // Compare and set under the chain lock (every instance's writes take it first): of two
      // requests extending the same tree, only the first is recorded.
      const removed =
        previous === undefined
          ? 0
          : ((
              await q(
                'DELETE FROM checkpoint_tree WHERE id = 1 AND origin = $1 AND size = $2 AND root_hash = $3',
                [previous.origin, previous.size, previous.rootHash],
              )
            ).rowCount ?? 0);
      const { rows } = await q<{ n: number }>('SELECT count(*) AS n FROM checkpoint_tree');
      if ((previous !== undefined && removed !== 1) || (rows[0]?.n ?? 0) !== 0) {
        throw new KeydError('TRESOR_ERR_CHECKPOINT_STALE', 'keyd signed another checkpoint meanwhile');
      }
      if (next !== undefined) {
        await q(
          'INSERT INTO checkpoint_tree (id, origin, size, root_hash, signed_at) VALUES (1, $1, $2, $3, $4)',
          [next.origin, next.size, next.rootHash, next.signedAt],
        );
      }
    }, log);
  }

  // --- backup keys ---------------------------------------------------------------------------------

  async getBackupKey(): Promise<BackupKeyRecord | undefined> {
    const { rows } = await this.#read<BackupKeyRecord & pg.QueryResultRow>(
      `SELECT ${BACKUP_KEY_COLUMNS} FROM backup_keys ORDER BY version DESC LIMIT 1`,
    );
    return rows[0] ? { ...rows[0] } : undefined;
  }

  async getBackupKeyById(keyId: string): Promise<BackupKeyRecord | undefined> {
    const { rows } = await this.#read<BackupKeyRecord & pg.QueryResultRow>(
      `SELECT ${BACKUP_KEY_COLUMNS} FROM backup_keys WHERE key_id = $1`,
      [keyId],
    );
    return rows[0] ? { ...rows[0] } : undefined;
  }

  async insertBackupKey(key: BackupKeyRecord, log: OpsLogDraft): Promise<void> {
    await this.#change(async (q) => {
      await q(
        'INSERT INTO backup_keys (version, key_id, root_version, wrapped, created_at) VALUES ($1, $2, $3, $4, $5)',
        [key.version, key.keyId, key.rootVersion, key.wrapped, key.createdAt],
      );
    }, log);
  }

  // --- root key rotation ---------------------------------------------------------------------------

  async rewrapRootRows(
    rootVersion: number,
    rewrap: (row: RootWrappedRow) => Rewrapped,
    log: (rewrapped: number) => OpsLogDraft,
  ): Promise<number> {
    return this.#change(async (q) => {
      const tenantRows = await q<Omit<Extract<RootWrappedRow, { table: 'tenant_keys' }>, 'table'>>(
        `SELECT tenant, version, key_id AS "keyId", root_version AS "rootVersion", wrapped FROM tenant_keys
           WHERE wrapped IS NOT NULL AND root_version != $1 ORDER BY tenant, version FOR UPDATE`,
        [rootVersion],
      );
      const signingRows = await q<Omit<Extract<RootWrappedRow, { table: 'signing_keys' }>, 'table'>>(
        `SELECT purpose, key_id AS "keyId", root_version AS "rootVersion", wrapped FROM signing_keys
           WHERE root_version != $1 ORDER BY purpose FOR UPDATE`,
        [rootVersion],
      );
      const backupRows = await q<Omit<Extract<RootWrappedRow, { table: 'backup_keys' }>, 'table'>>(
        `SELECT version, key_id AS "keyId", root_version AS "rootVersion", wrapped FROM backup_keys
           WHERE root_version != $1 ORDER BY version FOR UPDATE`,
        [rootVersion],
      );
      for (const row of tenantRows.rows) {
        const next = rewrap({ table: 'tenant_keys', ...row });
        await q(
          'UPDATE tenant_keys SET wrapped = $1, root_version = $2 WHERE tenant = $3 AND version = $4 AND root_version = $5',
          [next.wrapped, next.rootVersion, row.tenant, row.version, row.rootVersion],
        );
      }
      for (const row of signingRows.rows) {
        const next = rewrap({ table: 'signing_keys', ...row });
        await q(
          'UPDATE signing_keys SET wrapped = $1, root_version = $2 WHERE purpose = $3 AND root_version = $4',
          [next.wrapped, next.rootVersion, row.purpose, row.rootVersion],
        );
      }
      for (const row of backupRows.rows) {
        const next = rewrap({ table: 'backup_keys', ...row });
        await q(
          'UPDATE backup_keys SET wrapped = $1, root_version = $2 WHERE version = $3 AND root_version = $4',
          [next.wrapped, next.rootVersion, row.version, row.rootVersion],
        );
      }
      return tenantRows.rows.length + signingRows.rows.length + backupRows.rows.length;
    }, log);
  }

  async countRootVersionUse(rootVersion: number): Promise<number> {
    const { rows } = await this.#read<{ n: number }>(
      `SELECT (SELECT count(*) FROM tenant_keys WHERE root_version = $1)
              + (SELECT count(*) FROM signing_keys WHERE root_version = $1)
              + (SELECT count(*) FROM backup_keys WHERE root_version = $1) AS n`,
      [rootVersion],
    );
    return rows[0]?.n ?? 0;
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  async check(): Promise<boolean> {
    if (this.#closed) return false;
    try {
      await this.#pool.query('SELECT count(*) FROM schema_version');
      return true;
    } catch {
      return false;
    }
  }

  async snapshot(_path: string): Promise<void> {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      "keyd's own backups copy its SQLite store; a PostgreSQL key store is backed up with PostgreSQL's tools (pg_dump, pg_basebackup)",
    );
  }

  /** Writes whatever is queued, then ends the pool. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#writing) await new Promise<void>((resolve) => this.#drained.push(resolve));
    this.#closed = true;
    await this.#pool.end().catch(() => undefined);
  }
}

function sqlState(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : '';
}

function chainEntry(
  head: { seq: number; hash: string },
  { requestId: _request, ...draft }: OpsLogDraft,
): ChainedOpsLogEntry {
  const seq = head.seq + 1;
  const entry: OpsLogDraft = { ...draft, detail: clampDetail(draft.detail) };
  return { seq, ...entry, prevHash: head.hash, hash: opsLogHash(head.hash, seq, entry) };
}

function stripPrev({ prevHash: _prev, ...entry }: ChainedOpsLogEntry): OpsLogEntry {
  return entry;
}

/** One INSERT for a run of entries (10 parameters each). */
async function insertEntries(q: Query, entries: readonly ChainedOpsLogEntry[]): Promise<void> {
  const values: string[] = [];
  const params: unknown[] = [];
  for (const e of entries) {
    const base = params.length;
    values.push(`(${Array.from({ length: 10 }, (_, i) => `$${base + i + 1}`).join(', ')})`);
    params.push(e.seq, e.at, e.caller, e.op, e.tenant, e.keyId, e.outcome, e.detail, e.prevHash, e.hash);
  }
  await q(
    `INSERT INTO ops_log (seq, at, caller, op, tenant, key_id, outcome, detail, prev_hash, hash) VALUES ${values.join(', ')}`,
    params,
  );
}

async function insertKey(q: Query, k: TenantKeyRecord): Promise<void> {
  await q(
    `INSERT INTO tenant_keys (tenant, version, key_id, state, root_version, wrapped, created_at, rotate_after, encryptions, reserved)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [
      k.tenant,
      k.version,
      k.keyId,
      k.state,
      k.rootVersion,
      k.wrapped,
      k.createdAt,
      k.rotateAfter,
      k.encryptions,
      Math.max(k.reserved, k.encryptions),
    ],
  );
}
