/**
 * keyd's own store: wrapped keys and key metadata only — never a key in plaintext. Tenant keys,
 * signing keys and the backup key are AEAD envelopes made by the root keyring, bound (AAD) to their table, tenant,
 * version, key id and purpose, so a corrupted or moved row fails to unwrap instead of yielding a
 * wrong key.
 *
 * SQLite (better-sqlite3) in keyd's own folder: WAL with synchronous=FULL (a commit survives power
 * loss), secure_delete (freed cells and pages are zeroed, so erased wrapped keys do not linger in the
 * file), foreign keys, and an exclusive lock held while keyd runs (one writer per store). Every
 * multi-row change is one transaction, together with its ops-log entry.
 *
 * The interface is asynchronous so keyd's PostgreSQL store (pg-store.ts, several keyd instances
 * over one store) implements it too; this one runs better-sqlite3's synchronous transactions inside
 * the async methods.
 *
 * Group commit: data-path operations (one per unwrapDataKey) append their ops-log entries to a
 * queue that is written in one transaction — one fsync — on the next turn of the event loop. The
 * promise of each entry resolves only once that transaction has committed, and tenant-key
 * encryption counts ride in the same transaction, so an acknowledged data key is always counted
 * (NIST SP 800-38D §8.3 limits a key to 2^32 random-nonce encryptions).
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
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

export const KEY_STORE_FILE = 'keystore.sqlite';

export type TenantState = 'active' | 'pending-destroy' | 'destroyed';
export type TenantKeyState = 'active' | 'decrypt-only' | 'retired' | 'destroyed';

export interface TenantRecord {
  id: string;
  state: TenantState;
  createdAt: string;
  destroyAfter: string | null;
  destroyedAt: string | null;
}

export interface TenantKeyRecord {
  tenant: string;
  version: number;
  keyId: string;
  state: TenantKeyState;
  /** Root key version that wraps this key; null once the wrapped form is erased. */
  rootVersion: number | null;
  /** The tenant key wrapped by the root keyring; null once retired or destroyed. */
  wrapped: Buffer | null;
  createdAt: string;
  rotateAfter: string | null;
  /** AES-GCM encryptions done under this version, durable as of the last commit. */
  encryptions: number;
  /**
   * Encryptions claimed under this version by keyd instances (claimEncryptions): never above the
   * refusal limit, never below `encryptions`. A claimed block no instance used is spent all the same.
   */
  reserved: number;
}

export interface SigningKeyRecord {
  purpose: string;
  keyId: string;
  rootVersion: number;
  wrapped: Buffer;
  publicKey: Buffer;
  createdAt: string;
}

/** keyd's backup key: wraps each backup's data key; itself wrapped by the root keyring. */
export interface BackupKeyRecord {
  version: number;
  keyId: string;
  rootVersion: number;
  wrapped: Buffer;
  createdAt: string;
}

/** A row wrapped by the root key, as root rotation sees it. */
export type RootWrappedRow =
  | {
      table: 'tenant_keys';
      tenant: string;
      version: number;
      keyId: string;
      rootVersion: number;
      wrapped: Buffer;
    }
  | { table: 'signing_keys'; purpose: string; keyId: string; rootVersion: number; wrapped: Buffer }
  | { table: 'backup_keys'; version: number; keyId: string; rootVersion: number; wrapped: Buffer };

/** The new wrapped form of a row and the root version that made it. */
export interface Rewrapped {
  rootVersion: number;
  wrapped: Buffer;
}

/** The last checkpoint tree keyd signed. */
export interface CheckpointTreeRecord {
  origin: string;
  size: number;
  rootHash: Buffer;
  signedAt: string;
}

export interface EncryptionCount {
  tenant: string;
  version: number;
  count: number;
}

export interface KeyStore {
  getTenant(tenant: string): Promise<{ tenant: TenantRecord; keys: TenantKeyRecord[] } | undefined>;
  /** A new tenant with its first (active) key version. */
  createTenant(tenant: TenantRecord, key: TenantKeyRecord, log: OpsLogDraft): Promise<void>;
  /** Inserts the next version as active; the previous active version becomes decrypt-only. */
  addTenantKeyVersion(key: TenantKeyRecord, log: OpsLogDraft): Promise<void>;
  /** decrypt-only → retired: the wrapped form is overwritten with zeros, then erased. */
  retireTenantKeyVersion(tenant: string, version: number, log: OpsLogDraft): Promise<void>;
  scheduleTenantDestroy(tenant: string, destroyAfter: string, log: OpsLogDraft): Promise<void>;
  cancelTenantDestroy(tenant: string, log: OpsLogDraft): Promise<void>;
  /** Crypto-shredding: zeroes and erases every version's wrapped form; returns every version's key id. */
  destroyTenant(tenant: string, destroyedAt: string, log: OpsLogDraft): Promise<string[]>;
  tenantKeysDueForRotation(now: string): Promise<{ tenant: string; version: number }[]>;
  tenantsDueForDestruction(now: string): Promise<string[]>;

  getSigningKey(purpose: string): Promise<SigningKeyRecord | undefined>;
  insertSigningKey(key: SigningKeyRecord, log: OpsLogDraft): Promise<void>;

  getCheckpointTree(): Promise<CheckpointTreeRecord | undefined>;
  /**
   * Replaces the remembered checkpoint tree with `next`, only if it still is `previous` (undefined:
   * none yet), together with the entry; otherwise TRESOR_ERR_CHECKPOINT_STALE and nothing changes.
   */
  replaceCheckpointTree(
    previous: CheckpointTreeRecord | undefined,
    next: CheckpointTreeRecord | undefined,
    log: OpsLogDraft,
  ): Promise<void>;

  /** The newest backup key version, if one was made. */
  getBackupKey(): Promise<BackupKeyRecord | undefined>;
  /** A backup key version by key id (restore names the one that wrapped its data key). */
  getBackupKeyById(keyId: string): Promise<BackupKeyRecord | undefined>;
  insertBackupKey(key: BackupKeyRecord, log: OpsLogDraft): Promise<void>;

  /** Rewraps, in one transaction, every row not yet under `rootVersion`; returns how many. */
  rewrapRootRows(
    rootVersion: number,
    rewrap: (row: RootWrappedRow) => Rewrapped,
    log: (rewrapped: number) => OpsLogDraft,
  ): Promise<number>;
  countRootVersionUse(rootVersion: number): Promise<number>;

  /**
   * Claims a block of up to `want` encryptions of an active tenant key version, never taking
   * `reserved` past `limit`: a compare-and-set on `reserved`, so instances sharing a store never
   * claim the same encryption twice nor more than `limit` together. Returns the block [from, to),
   * or undefined when the version is not active or its budget is spent.
   */
  claimEncryptions(
    tenant: string,
    version: number,
    want: number,
    limit: number,
  ): Promise<{ from: number; to: number } | undefined>;
  /** Gives back the unused end [from, to) of a block, if no block was claimed after it. */
  returnEncryptions(tenant: string, version: number, from: number, to: number): Promise<void>;

  /** Appends an entry (group commit); resolves once it — and its encryption count — are durable. */
  appendOps(draft: OpsLogDraft, encryptions?: EncryptionCount): Promise<OpsLogEntry>;
  readOpsLog(from: number, limit: number): Promise<OpsLogEntry[]>;
  /** The ops-log entry whose change recorded the client's request id, if one did (repeated-requests.ts). */
  findRequest(requestId: string): Promise<OpsLogEntry | undefined>;
  verifyOpsLog(): Promise<OpsLogVerification>;
  /** A cheap liveness probe for health. */
  check(): Promise<boolean>;
  /**
   * A consistent copy of the whole store in a new file at `path` (keyd's own backups): SQLite's
   * VACUUM INTO, one read transaction, committed state only. The file holds what the store holds:
   * wrapped keys and metadata, never a key in plaintext.
   */
  snapshot(path: string): Promise<void>;
  close(): Promise<void>;
}

const MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('active', 'pending-destroy', 'destroyed')),
        created_at TEXT NOT NULL,
        destroy_after TEXT,
        destroyed_at TEXT
      ) STRICT;

      CREATE TABLE tenant_keys (
        tenant TEXT NOT NULL REFERENCES tenants (id),
        version INTEGER NOT NULL CHECK (version >= 1),
        key_id TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('active', 'decrypt-only', 'retired', 'destroyed')),
        root_version INTEGER,
        wrapped BLOB,
        created_at TEXT NOT NULL,
        rotate_after TEXT,
        encryptions INTEGER NOT NULL DEFAULT 0 CHECK (encryptions >= 0),
        PRIMARY KEY (tenant, version),
        CHECK ((wrapped IS NULL) = (state IN ('retired', 'destroyed'))),
        CHECK ((root_version IS NULL) = (wrapped IS NULL))
      ) STRICT;
      CREATE UNIQUE INDEX tenant_keys_one_active ON tenant_keys (tenant) WHERE state = 'active';
      CREATE INDEX tenant_keys_root_version ON tenant_keys (root_version);

      CREATE TABLE signing_keys (
        purpose TEXT PRIMARY KEY,
        key_id TEXT NOT NULL UNIQUE,
        root_version INTEGER NOT NULL,
        wrapped BLOB NOT NULL,
        public_key BLOB NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE ops_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        caller TEXT NOT NULL,
        op TEXT NOT NULL,
        tenant TEXT,
        key_id TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
        detail TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      ) STRICT;
      CREATE TRIGGER ops_log_no_update BEFORE UPDATE ON ops_log
        BEGIN SELECT RAISE(ABORT, 'ops_log is append-only'); END;
      CREATE TRIGGER ops_log_no_delete BEFORE DELETE ON ops_log
        BEGIN SELECT RAISE(ABORT, 'ops_log is append-only'); END;
    `,
  },
  {
    // The backup key (docs/backup.md): versioned so it can be rotated later; old versions must
    // keep unwrapping the data keys of backups still within retention.
    version: 2,
    sql: `
      CREATE TABLE backup_keys (
        version INTEGER PRIMARY KEY CHECK (version >= 1),
        key_id TEXT NOT NULL UNIQUE,
        root_version INTEGER NOT NULL,
        wrapped BLOB NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    // The last audit checkpoint keyd signed (one row): keyd signs a checkpoint only as a consistent
    // extension of it, under the origin pinned here at the first signing (docs/keyd.md).
    version: 3,
    sql: `
      CREATE TABLE checkpoint_tree (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        origin TEXT NOT NULL,
        size INTEGER NOT NULL CHECK (size >= 0),
        root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),
        signed_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    // Encryption budget claimed in blocks (src/keyd/encryption-budget.ts): what was counted so far
    // is what was claimed so far.
    version: 4,
    sql: `
      ALTER TABLE tenant_keys ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0);
      UPDATE tenant_keys SET reserved = encryptions;
    `,
  },
  {
    // Requests keyd does at most once (src/keyd/repeated-requests.ts): the client's request id, with
    // the entry that recorded the change, written in the change's transaction. A repeat finds it.
    // seq names the ops-log entry (no foreign key, as in the PostgreSQL twin).
    version: 5,
    sql: `
      CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE
      ) STRICT;
    `,
  },
];

const TENANT_COLUMNS = `id, state, created_at AS createdAt, destroy_after AS destroyAfter, destroyed_at AS destroyedAt`;
const KEY_COLUMNS = `tenant, version, key_id AS keyId, state, root_version AS rootVersion, wrapped,
  created_at AS createdAt, rotate_after AS rotateAfter, encryptions, reserved`;
const BACKUP_KEY_COLUMNS = `version, key_id AS keyId, root_version AS rootVersion, wrapped, created_at AS createdAt`;
const OPS_COLUMNS = `seq, at, caller, op, tenant, key_id AS keyId, outcome, detail, prev_hash AS prevHash, hash`;

interface QueuedEntry {
  draft: OpsLogDraft;
  encryptions: EncryptionCount | undefined;
  resolve: (entry: OpsLogEntry) => void;
  reject: (err: unknown) => void;
}

function storeWriteError(err: unknown): KeydError {
  const code = (err as { code?: unknown }).code;
  const detail = typeof code === 'string' && code.startsWith('SQLITE_') ? ` (${code})` : '';
  return new KeydError('TRESOR_ERR_INTERNAL', `the key store could not be written${detail}`);
}

/**
 * How many encryptions a claim takes: `want` at most, and as the limit nears an eighth of what is
 * left (at least one), so instances sharing a store share the last of a budget too.
 */
export function claimSize(reserved: number, want: number, limit: number): number {
  const left = limit - reserved;
  if (left <= 0) return 0;
  return Math.max(1, Math.min(want, Math.floor(left / 8)));
}

function conflict(message: string): KeydError {
  return new KeydError('TRESOR_ERR_INTERNAL', `key store conflict: ${message}`);
}

/** Opens (creating if needed) keyd's SQLite store in `dir`, file mode 0600. */
export function openSqliteKeyStore(dir: string): SqliteKeyStore {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, KEY_STORE_FILE);
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
  return new SqliteKeyStore(path);
}

export class SqliteKeyStore implements KeyStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #atomic: <T>(fn: () => T) => T;
  #head: { seq: number; hash: string };
  #queue: QueuedEntry[] = [];
  #flushScheduled = false;
  #closed = false;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(path: string) {
    this.path = path;
    // No busy wait: a store locked by another keyd fails at once (mapped below).
    this.#db = new Database(path, { timeout: 0 });
    try {
      const mode = this.#db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal')
        throw new KeydError('TRESOR_ERR_STORE_CORRUPT', 'the key store cannot use WAL mode');
      this.#db.pragma('synchronous = FULL');
      this.#db.pragma('secure_delete = ON');
      this.#db.pragma('foreign_keys = ON');
      this.#db.pragma('trusted_schema = OFF');
      // One keyd per store: the in-memory encryption counts and the chain head assume a single
      // writer, so the connection takes the write lock now and keeps it until close.
      this.#db.pragma('locking_mode = EXCLUSIVE');
      this.#db.exec('BEGIN IMMEDIATE; COMMIT');
      this.#migrate();
    } catch (err) {
      this.#db.close();
      if ((err as { code?: unknown }).code === 'SQLITE_BUSY') {
        throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'the key store is in use by another keyd process');
      }
      throw err;
    }
    const tx = this.#db.transaction((fn: () => unknown) => fn());
    // Nested calls become savepoints; the chain head is restored with whatever rolls back.
    this.#atomic = <T>(fn: () => T): T => {
      const head = this.#head;
      try {
        return tx(fn) as T;
      } catch (err) {
        this.#head = head;
        throw err;
      }
    };
    const last = this.#db
      .prepare<[], { seq: number; hash: string }>('SELECT seq, hash FROM ops_log ORDER BY seq DESC LIMIT 1')
      .get();
    this.#head = last ?? { seq: 0, hash: GENESIS_HASH };
  }

  #migrate(): void {
    this.#db.exec(`CREATE TABLE IF NOT EXISTS schema_version (
      version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL) STRICT`);
    const current =
      this.#db.prepare<[], { v: number | null }>('SELECT max(version) AS v FROM schema_version').get()?.v ??
      0;
    const latest = MIGRATIONS.at(-1)?.version ?? 0;
    if (current > latest) {
      throw new KeydError(
        'TRESOR_ERR_STORE_CORRUPT',
        `key store schema version ${current} is newer than this keyd understands (${latest})`,
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      this.#db.transaction(() => {
        this.#db.exec(m.sql);
        this.#db
          .prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)')
          .run(m.version, new Date().toISOString());
      })();
    }
  }

  #sql<P extends unknown[] = unknown[], R = unknown>(source: string): Database.Statement<P, R> {
    let statement = this.#statements.get(source);
    if (!statement) {
      statement = this.#db.prepare(source);
      this.#statements.set(source, statement);
    }
    return statement as Database.Statement<P, R>;
  }

  #open(): void {
    if (this.#closed) throw new KeydError('TRESOR_ERR_INTERNAL', 'the key store is closed');
  }

  // --- ops log -------------------------------------------------------------------------------------

  #insertOps({ requestId, ...draft }: OpsLogDraft): OpsLogEntry {
    const seq = this.#head.seq + 1;
    const entry: OpsLogDraft = { ...draft, detail: clampDetail(draft.detail) };
    const hash = opsLogHash(this.#head.hash, seq, entry);
    this.#sql(
      `INSERT INTO ops_log (seq, at, caller, op, tenant, key_id, outcome, detail, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      seq,
      entry.at,
      entry.caller,
      entry.op,
      entry.tenant,
      entry.keyId,
      entry.outcome,
      entry.detail,
      this.#head.hash,
      hash,
    );
    // A request id already taken fails here: the change and its entry roll back with it.
    if (requestId !== undefined)
      this.#sql('INSERT INTO requests (request_id, seq) VALUES (?, ?)').run(requestId, seq);
    this.#head = { seq, hash };
    return { seq, ...entry, hash };
  }

  /** Writes queued entries and their encryption counts (inside the caller's transaction). */
  #writeQueued(batch: QueuedEntry[]): OpsLogEntry[] {
    const counts = new Map<string, EncryptionCount>();
    for (const item of batch) {
      const e = item.encryptions;
      if (!e) continue;
      const k = `${e.tenant}\u0000${e.version}`;
      const sum = counts.get(k);
      if (sum) sum.count += e.count;
      else counts.set(k, { ...e });
    }
    const bump = this.#sql(
      'UPDATE tenant_keys SET encryptions = encryptions + ? WHERE tenant = ? AND version = ?',
    );
    for (const c of counts.values()) bump.run(c.count, c.tenant, c.version);
    // Request ids are recorded only with a change (#commit), never in a group-commit batch.
    return batch.map(({ draft: { requestId: _request, ...draft } }) => this.#insertOps(draft));
  }

  #settle(batch: QueuedEntry[], entries: OpsLogEntry[] | undefined, err?: unknown): void {
    batch.forEach((item, i) => {
      const entry = entries?.[i];
      if (entry) item.resolve(entry);
      else item.reject(storeWriteError(err));
    });
  }

  /** Writes everything queued now, in one transaction. */
  #flush(): void {
    this.#flushScheduled = false;
    const batch = this.#queue.splice(0);
    if (batch.length === 0) return;
    let entries: OpsLogEntry[];
    try {
      entries = this.#atomic(() => this.#writeQueued(batch));
    } catch (err) {
      this.#settle(batch, undefined, err);
      return;
    }
    this.#settle(batch, entries);
  }

  /**
   * Runs `mutation` and appends its entry atomically, in the same transaction as whatever is
   * queued (which commits even if the mutation fails: the mutation runs in its own savepoint).
   */
  #commit<T>(mutation: () => T, log: OpsLogDraft | ((result: T) => OpsLogDraft)): T {
    this.#open();
    const batch = this.#queue.splice(0);
    let result: { value: T } | undefined;
    let failure: unknown;
    let entries: OpsLogEntry[];
    try {
      entries = this.#atomic(() => {
        const written = this.#writeQueued(batch);
        try {
          result = {
            value: this.#atomic(() => {
              const value = mutation();
              this.#insertOps(typeof log === 'function' ? log(value) : log);
              return value;
            }),
          };
        } catch (err) {
          failure = err;
        }
        return written;
      });
    } catch (err) {
      this.#settle(batch, undefined, err);
      throw storeWriteError(err);
    }
    this.#settle(batch, entries);
    if (!result) throw failure instanceof KeydError ? failure : storeWriteError(failure);
    return result.value;
  }

  async appendOps(draft: OpsLogDraft, encryptions?: EncryptionCount): Promise<OpsLogEntry> {
    this.#open();
    return new Promise<OpsLogEntry>((resolve, reject) => {
      this.#queue.push({ draft, encryptions, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  async readOpsLog(from: number, limit: number): Promise<OpsLogEntry[]> {
    this.#open();
    return this.#sql<[number, number], ChainedOpsLogEntry>(
      `SELECT ${OPS_COLUMNS} FROM ops_log WHERE seq >= ? ORDER BY seq LIMIT ?`,
    )
      .all(from, limit)
      .map(({ prevHash: _prev, ...entry }) => entry);
  }

  async findRequest(requestId: string): Promise<OpsLogEntry | undefined> {
    this.#open();
    const found = this.#sql<[string], ChainedOpsLogEntry>(
      `SELECT ${OPS_COLUMNS} FROM ops_log WHERE seq = (SELECT seq FROM requests WHERE request_id = ?)`,
    ).get(requestId);
    if (found === undefined) return undefined;
    const { prevHash: _prev, ...entry } = found;
    return entry;
  }

  async verifyOpsLog(): Promise<OpsLogVerification> {
    this.#open();
    return verifyOpsChain(
      this.#sql<[], ChainedOpsLogEntry>(`SELECT ${OPS_COLUMNS} FROM ops_log ORDER BY seq`).iterate(),
    );
  }

  // --- tenant keys ---------------------------------------------------------------------------------

  async getTenant(tenant: string): Promise<{ tenant: TenantRecord; keys: TenantKeyRecord[] } | undefined> {
    this.#open();
    const row = this.#sql<[string], TenantRecord>(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE id = ?`).get(
      tenant,
    );
    if (!row) return undefined;
    const keys = this.#sql<[string], TenantKeyRecord>(
      `SELECT ${KEY_COLUMNS} FROM tenant_keys WHERE tenant = ? ORDER BY version`,
    ).all(tenant);
    return { tenant: row, keys };
  }

  #insertKey(k: TenantKeyRecord): void {
    this.#sql(
      `INSERT INTO tenant_keys (tenant, version, key_id, state, root_version, wrapped, created_at, rotate_after, encryptions, reserved)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
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
    );
  }

  async createTenant(tenant: TenantRecord, key: TenantKeyRecord, log: OpsLogDraft): Promise<void> {
    this.#commit(() => {
      this.#sql(
        'INSERT INTO tenants (id, state, created_at, destroy_after, destroyed_at) VALUES (?, ?, ?, ?, ?)',
      ).run(tenant.id, tenant.state, tenant.createdAt, tenant.destroyAfter, tenant.destroyedAt);
      this.#insertKey(key);
    }, log);
  }

  async addTenantKeyVersion(key: TenantKeyRecord, log: OpsLogDraft): Promise<void> {
    this.#commit(() => {
      const max =
        this.#sql<[string], { v: number | null }>(
          'SELECT max(version) AS v FROM tenant_keys WHERE tenant = ?',
        ).get(key.tenant)?.v ?? 0;
      if (key.version !== max + 1)
        throw conflict(`tenant key version ${key.version} is not the next version`);
      this.#sql(`UPDATE tenant_keys SET state = 'decrypt-only' WHERE tenant = ? AND state = 'active'`).run(
        key.tenant,
      );
      this.#insertKey(key);
    }, log);
  }

  /** Overwrites wrapped blobs with zeros before erasing them (secure_delete zeroes the freed cells). */
  #eraseWrapped(where: string, ...params: (string | number)[]): void {
    this.#sql(
      `UPDATE tenant_keys SET wrapped = zeroblob(length(wrapped)) WHERE wrapped IS NOT NULL AND ${where}`,
    ).run(...params);
  }

  /** Moves the erased rows' old pages out of the WAL into the (zeroed) main file and empties the WAL. */
  #checkpoint(): void {
    const [result] = this.#db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    if (result?.busy)
      throw new KeydError('TRESOR_ERR_INTERNAL', 'the key store WAL could not be checkpointed');
  }

  async retireTenantKeyVersion(tenant: string, version: number, log: OpsLogDraft): Promise<void> {
    this.#commit(() => {
      this.#eraseWrapped(`tenant = ? AND version = ? AND state = 'decrypt-only'`, tenant, version);
      const changed = this.#sql(
        `UPDATE tenant_keys SET wrapped = NULL, root_version = NULL, state = 'retired'
           WHERE tenant = ? AND version = ? AND state = 'decrypt-only'`,
      ).run(tenant, version).changes;
      if (changed !== 1) throw conflict(`tenant key version ${version} is not decrypt-only`);
    }, log);
    this.#checkpoint();
  }

  async scheduleTenantDestroy(tenant: string, destroyAfter: string, log: OpsLogDraft): Promise<void> {
    this.#commit(() => {
      const changed = this.#sql(
        `UPDATE tenants SET state = 'pending-destroy', destroy_after = ? WHERE id = ? AND state = 'active'`,
      ).run(destroyAfter, tenant).changes;
      if (changed !== 1) throw conflict('tenant is not active');
    }, log);
  }

  async cancelTenantDestroy(tenant: string, log: OpsLogDraft): Promise<void> {
    this.#commit(() => {
      const changed = this.#sql(
        `UPDATE tenants SET state = 'active', destroy_after = NULL WHERE id = ? AND state = 'pending-destroy'`,
      ).run(tenant).changes;
      if (changed !== 1) throw conflict('tenant is not pending destruction');
    }, log);
  }

  async destroyTenant(tenant: string, destroyedAt: string, log: OpsLogDraft): Promise<string[]> {
    const keyIds = this.#commit(() => {
      const changed = this.#sql(
        `UPDATE tenants SET state = 'destroyed', destroyed_at = ? WHERE id = ? AND state != 'destroyed'`,
      ).run(destroyedAt, tenant).changes;
      if (changed !== 1) throw conflict('tenant is already destroyed');
      this.#eraseWrapped('tenant = ?', tenant);
      this.#sql(
        `UPDATE tenant_keys SET wrapped = NULL, root_version = NULL, state = 'destroyed' WHERE tenant = ?`,
      ).run(tenant);
      return this.#sql<[string], { keyId: string }>(
        'SELECT key_id AS keyId FROM tenant_keys WHERE tenant = ? ORDER BY version',
      )
        .all(tenant)
        .map((r) => r.keyId);
    }, log);
    this.#checkpoint();
    return keyIds;
  }

  async tenantKeysDueForRotation(now: string): Promise<{ tenant: string; version: number }[]> {
    this.#open();
    return this.#sql<[string], { tenant: string; version: number }>(
      `SELECT k.tenant, k.version FROM tenant_keys k JOIN tenants t ON t.id = k.tenant
         WHERE t.state = 'active' AND k.state = 'active' AND k.rotate_after IS NOT NULL AND k.rotate_after <= ?
         ORDER BY k.rotate_after`,
    ).all(now);
  }

  async tenantsDueForDestruction(now: string): Promise<string[]> {
    this.#open();
    return this.#sql<[string], { id: string }>(
      `SELECT id FROM tenants WHERE state = 'pending-destroy' AND destroy_after <= ? ORDER BY destroy_after`,
    )
      .all(now)
      .map((r) => r.id);
  }

  async claimEncryptions(
    tenant: string,
    version: number,
    want: number,
    limit: number,
  ): Promise<{ from: number; to: number } | undefined> {
    this.#open();
    const row = this.#sql<[string, number], { reserved: number }>(
      `SELECT reserved FROM tenant_keys WHERE tenant = ? AND version = ? AND state = 'active'`,
    ).get(tenant, version);
    const n = row === undefined ? 0 : claimSize(row.reserved, want, limit);
    if (row === undefined || n === 0) return undefined;
    // One writer per SQLite store: the read above is still current.
    this.#sql(
      `UPDATE tenant_keys SET reserved = ? WHERE tenant = ? AND version = ? AND reserved = ? AND state = 'active'`,
    ).run(row.reserved + n, tenant, version, row.reserved);
    return { from: row.reserved, to: row.reserved + n };
  }

  async returnEncryptions(tenant: string, version: number, from: number, to: number): Promise<void> {
    this.#open();
    this.#sql(
      `UPDATE tenant_keys SET reserved = max(?, encryptions) WHERE tenant = ? AND version = ? AND reserved = ?`,
    ).run(from, tenant, version, to);
  }

  // --- signing keys --------------------------------------------------------------------------------

  async getSigningKey(purpose: string): Promise<SigningKeyRecord | undefined> {
    this.#open();
    return this.#sql<[string], SigningKeyRecord>(
      `SELECT purpose, key_id AS keyId, root_version AS rootVersion, wrapped, public_key AS publicKey,
           created_at AS createdAt FROM signing_keys WHERE purpose = ?`,
    ).get(purpose);
  }

  async insertSigningKey(key: SigningKeyRecord, log: OpsLogDraft): Promise<void> {
    this.#commit(() => {
      this.#sql(
        `INSERT INTO signing_keys (purpose, key_id, root_version, wrapped, public_key, created_at)
           VALUES (?, ?, ?, ?, ?, ?)`,
      ).run(key.purpose, key.keyId, key.rootVersion, key.wrapped, key.publicKey, key.createdAt);
    }, log);
  }

  // --- the last checkpoint signed ---------------------------------------------------------------

  async getCheckpointTree(): Promise<CheckpointTreeRecord | undefined> {
    this.#open();
    return this.#sql<[], CheckpointTreeRecord>(
      'SELECT origin, size, root_hash AS rootHash, signed_at AS signedAt FROM checkpoint_tree WHERE id = 1',
    ).get();
  }

  async replaceCheckpointTree(
    previous: CheckpointTreeRecord | undefined,
    next: CheckpointTreeRecord | undefined,
    log: OpsLogDraft,
  ): Promise<void> {
    this.#commit(() => {
      // Compare and set: of two requests extending the same tree, only the first is recorded.
      const removed =
        previous === undefined
          ? 0
          : this.#sql(
              'DELETE FROM checkpoint_tree WHERE id = 1 AND origin = ? AND size = ? AND root_hash = ?',
            ).run(previous.origin, previous.size, previous.rootHash).changes;
      const current = this.#sql<[], { n: number }>('SELECT count(*) AS n FROM checkpoint_tree').get()?.n ?? 0;
      if ((previous !== undefined && removed !== 1) || current !== 0) {
        throw new KeydError('TRESOR_ERR_CHECKPOINT_STALE', 'keyd signed another checkpoint meanwhile');
      }
      if (next !== undefined) {
        this.#sql(
          'INSERT INTO checkpoint_tree (id, origin, size, root_hash, signed_at) VALUES (1, ?, ?, ?, ?)',
        ).run(next.origin, next.size, next.rootHash, next.signedAt);
      }
    }, log);
  }

  // --- backup keys ---------------------------------------------------------------------------------

  async getBackupKey(): Promise<BackupKeyRecord | undefined> {
    this.#open();
    return this.#sql<[], BackupKeyRecord>(
      `SELECT ${BACKUP_KEY_COLUMNS} FROM backup_keys ORDER BY version DESC LIMIT 1`,
    ).get();
  }

  async getBackupKeyById(keyId: string): Promise<BackupKeyRecord | undefined> {
    this.#open();
    return this.#sql<[string], BackupKeyRecord>(
      `SELECT ${BACKUP_KEY_COLUMNS} FROM backup_keys WHERE key_id = ?`,
    ).get(keyId);
  }

  async insertBackupKey(key: BackupKeyRecord, log: OpsLogDraft): Promise<void> {
    this.#commit(() => {
      this.#sql(
        'INSERT INTO backup_keys (version, key_id, root_version, wrapped, created_at) VALUES (?, ?, ?, ?, ?)',
      ).run(key.version, key.keyId, key.rootVersion, key.wrapped, key.createdAt);
    }, log);
  }

  // --- root key rotation ---------------------------------------------------------------------------

  async rewrapRootRows(
    rootVersion: number,
    rewrap: (row: RootWrappedRow) => Rewrapped,
    log: (rewrapped: number) => OpsLogDraft,
  ): Promise<number> {
    return this.#commit(() => {
      const tenantRows = this.#sql<
        [number],
        Omit<Extract<RootWrappedRow, { table: 'tenant_keys' }>, 'table'>
      >(
        `SELECT tenant, version, key_id AS keyId, root_version AS rootVersion, wrapped FROM tenant_keys
           WHERE wrapped IS NOT NULL AND root_version != ? ORDER BY tenant, version`,
      ).all(rootVersion);
      const signingRows = this.#sql<
        [number],
        Omit<Extract<RootWrappedRow, { table: 'signing_keys' }>, 'table'>
      >(
        `SELECT purpose, key_id AS keyId, root_version AS rootVersion, wrapped FROM signing_keys
           WHERE root_version != ? ORDER BY purpose`,
      ).all(rootVersion);
      const updateTenantKey = this.#sql(
        'UPDATE tenant_keys SET wrapped = ?, root_version = ? WHERE tenant = ? AND version = ? AND root_version = ?',
      );
      const backupRows = this.#sql<
        [number],
        Omit<Extract<RootWrappedRow, { table: 'backup_keys' }>, 'table'>
      >(
        `SELECT version, key_id AS keyId, root_version AS rootVersion, wrapped FROM backup_keys
           WHERE root_version != ? ORDER BY version`,
      ).all(rootVersion);
      const updateSigningKey = this.#sql(
        'UPDATE signing_keys SET wrapped = ?, root_version = ? WHERE purpose = ? AND root_version = ?',
      );
      const updateBackupKey = this.#sql(
        'UPDATE backup_keys SET wrapped = ?, root_version = ? WHERE version = ? AND root_version = ?',
      );
      for (const row of tenantRows) {
        const next = rewrap({ table: 'tenant_keys', ...row });
        updateTenantKey.run(next.wrapped, next.rootVersion, row.tenant, row.version, row.rootVersion);
      }
      for (const row of signingRows) {
        const next = rewrap({ table: 'signing_keys', ...row });
        updateSigningKey.run(next.wrapped, next.rootVersion, row.purpose, row.rootVersion);
      }
      for (const row of backupRows) {
        const next = rewrap({ table: 'backup_keys', ...row });
        updateBackupKey.run(next.wrapped, next.rootVersion, row.version, row.rootVersion);
      }
      return tenantRows.length + signingRows.length + backupRows.length;
    }, log);
  }

  async countRootVersionUse(rootVersion: number): Promise<number> {
    this.#open();
    const row = this.#sql<[number, number, number], { n: number }>(
      `SELECT (SELECT count(*) FROM tenant_keys WHERE root_version = ?)
              + (SELECT count(*) FROM signing_keys WHERE root_version = ?)
              + (SELECT count(*) FROM backup_keys WHERE root_version = ?) AS n`,
    ).get(rootVersion, rootVersion, rootVersion);
    return row?.n ?? 0;
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  /** The connection's durability and erasure settings, for diagnostics and tests. */
  settings(): {
    journalMode: string;
    synchronous: number;
    secureDelete: number;
    foreignKeys: number;
    lockingMode: string;
  } {
    this.#open();
    const get = (name: string) => this.#db.pragma(name, { simple: true });
    return {
      journalMode: String(get('journal_mode')),
      synchronous: Number(get('synchronous')), // 2 = FULL
      secureDelete: Number(get('secure_delete')),
      foreignKeys: Number(get('foreign_keys')),
      lockingMode: String(get('locking_mode')),
    };
  }

  async check(): Promise<boolean> {
    if (this.#closed) return false;
    try {
      this.#sql('SELECT count(*) FROM schema_version').get();
      return true;
    } catch {
      return false;
    }
  }

  async snapshot(path: string): Promise<void> {
    this.#open();
    this.#flush();
    this.#db.prepare('VACUUM INTO ?').run(path);
  }

  /**
   * The connection's durability settings, as SQLite reports them (for the test that pins them:
   * journal_mode wal, synchronous 2 = FULL, secure_delete 1, foreign_keys 1).
   */
  durabilitySettings(): Record<'journal_mode' | 'synchronous' | 'secure_delete' | 'foreign_keys', unknown> {
    this.#open();
    const read = (name: string) => this.#db.pragma(name, { simple: true });
    return {
      journal_mode: read('journal_mode'),
      synchronous: read('synchronous'),
      secure_delete: read('secure_delete'),
      foreign_keys: read('foreign_keys'),
    };
  }

  /** Writes whatever is queued, then closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    this.#db.close();
  }
}
