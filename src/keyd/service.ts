/**
 * The key service: every operation of KeydOperations, in process. The wire server calls it with the
 * caller its transport proved; tests call it directly.
 *
 *   root keyring (provider, only in keyd)
 *     └─ tenant key, one per tenant, versioned — stored wrapped by a root version (store.ts)
 *          └─ data keys — generated here, returned in plaintext and wrapped by the tenant key's
 *             active version; keyd keeps no data key, the caller stores the wrapped form
 *
 * Rules kept here:
 * - Sealed, keyd answers only SEALED_OPERATIONS; ADMIN_OPERATIONS need the admin role; every
 *   argument is checked (validate.ts).
 * - Every operation — refused ones too — appends an ops-log entry, and its result is returned only
 *   once that entry is durable (fail closed: no log, no key).
 * - AES-GCM with random nonces allows 2^32 encryptions per key (NIST SP 800-38D §8.3). Each tenant
 *   key version counts the data keys it wraps: at 2^30 keyd rotates it; at 0.9 × 2^32 it refuses.
 * - Tenant keys (symmetric key-wrapping keys) have a cryptoperiod, one year by default (NIST SP
 *   800-57 Part 1 §5.3); runMaintenance rotates overdue ones and completes scheduled destructions.
 * - Destruction is crypto-shredding: every wrapped version is zeroed and erased and the WAL
 *   checkpointed, so nothing wrapped by the tenant key can be opened again.
 * - No operation returns the root key or a tenant key.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  CryptoError,
  constantTimeEqual,
  KEY_BYTES,
  newKeyId,
  openEnvelope,
  readEnvelopeHeader,
  sealEnvelope,
  wipe,
} from '../crypto/index.ts';
import { KEY_ID_PATTERN } from '../crypto/key-id.ts';
import { KeydError } from './errors.ts';
import { KeyedMutex, RootLock } from './locks.ts';
import {
  ADMIN_OPERATIONS,
  type Caller,
  type DataKeyPurpose,
  type KeydOperationName,
  type KeyService,
  type OpArgs,
  type OpResult,
  SEALED_OPERATIONS,
  type TenantKeyInfo,
  type TenantKeyStatus,
} from './operations.ts';
import type { OpsLogDraft, OpsLogVerification } from './ops-log.ts';
import type { RootKeyProvider, RootKeyring } from './root/types.ts';
import {
  ed25519PublicKey,
  generateEd25519,
  noteVerifierKey,
  type SigningPurpose,
  signEd25519,
  signingKeyName,
} from './signing.ts';
import {
  type EncryptionCount,
  type KeyStore,
  openSqliteKeyStore,
  type Rewrapped,
  type RootWrappedRow,
  type SigningKeyRecord,
  type TenantKeyRecord,
  type TenantRecord,
} from './store.ts';
import { isCaller, isOperationName, TENANT_ID_PATTERN, validateArgs } from './validate.ts';

/** NIST SP 800-38D §8.3: random 96-bit nonces allow at most 2^32 invocations per key. */
export const AES_GCM_RANDOM_NONCE_LIMIT = 2 ** 32;
export const DEFAULT_ROTATE_AT_ENCRYPTIONS = 2 ** 30;
export const DEFAULT_REFUSE_AT_ENCRYPTIONS = Math.floor(0.9 * AES_GCM_RANDOM_NONCE_LIMIT);
export const DEFAULT_TENANT_KEY_CRYPTOPERIOD_DAYS = 365;
export const DEFAULT_DESTROY_GRACE_SECONDS = 7 * 86400;
export const DEFAULT_MAINTENANCE_INTERVAL_SECONDS = 3600;
const MAX_CACHED_TENANT_KEYS = 10_000;

/** keyd's own jobs (maintenance, automatic rotation) in the ops log. */
export const SYSTEM_CALLER: Caller = { id: 'system', role: 'admin' };

// AAD purposes (src/crypto/aad.ts): each wrapped key is bound to what it is and where it belongs.
const TENANT_KEY_AAD = 'tenant-key';
const SIGNING_KEY_AAD = 'signing';
const DATA_KEY_AAD = 'data-key';

export interface KeyServiceConfig {
  /** Tenant key cryptoperiod (NIST SP 800-57 Part 1 §5.3); default 365. */
  tenantKeyCryptoperiodDays?: number;
  /** Grace before a scheduled destruction completes; default 7 days. */
  destroyGraceSeconds?: number;
  /** How often keyd runs maintenance; 0 = never on a timer (tests call runMaintenance). Default 3600. */
  maintenanceIntervalSeconds?: number;
  /** Encryptions after which the active tenant key version is rotated; default 2^30. */
  rotateAtEncryptions?: number;
  /** Encryptions after which a version refuses to wrap more keys; default 0.9 × 2^32, never above. */
  refuseAtEncryptions?: number;
}

export interface CreateKeyServiceOptions {
  /** keyd's folder: the SQLite store is opened (and closed by close()) there. */
  dir?: string;
  /** Or a store the caller opened (and closes). */
  store?: KeyStore;
  provider: RootKeyProvider;
  config?: KeyServiceConfig;
  clock?: () => Date;
  /** Told about every completed maintenance run (timer, unseal or direct), e.g. to log it. */
  onMaintenance?: (report: MaintenanceReport) => void;
}

export interface MaintenanceReport {
  sealed: boolean;
  /** Key ids of the new versions made because a cryptoperiod ended. */
  rotated: string[];
  /** Tenants whose scheduled destruction was completed. */
  destroyed: string[];
  failed: { tenant: string; op: string; code: string }[];
}

export interface KeydService extends KeyService {
  /** Rotates overdue tenant keys and completes due destructions, as caller `system`. */
  runMaintenance(): Promise<MaintenanceReport>;
  /** Recomputes the ops-log hash chain; reports the first entry that does not fit. */
  verifyOpsLog(): Promise<OpsLogVerification>;
  /** Stops the timer, writes what is queued, wipes keys from memory and seals the provider. */
  close(): Promise<void>;
}

/**
 * Key ids are ≤ 64 characters (src/crypto/key-id.ts) and tenant ids may be 64 alone, so a tenant key
 * id names its tenant by the first 64 bits of SHA-256(tenant id): `tk.<16 hex>.v<version>`.
 */
export function tenantKeyId(tenant: string, version: number): string {
  const hash = createHash('sha256').update(tenant, 'utf8').digest('hex').slice(0, 16);
  return `tk.${hash}.v${version}`;
}

function tenantKeyAad(row: { tenant: string; version: number; keyId: string }) {
  return { tenant: row.tenant, version: row.version, keyId: row.keyId };
}

function signingKeyAad(row: { purpose: string; keyId: string }) {
  return { purpose: row.purpose, keyId: row.keyId };
}

/** Root keyrings name their versions `root.v<n>` in the envelopes they make (root/types.ts). */
function rootVersionOf(envelope: Buffer): number {
  const m = /^root\.v([1-9][0-9]*)$/.exec(readEnvelopeHeader(envelope).keyId);
  if (!m?.[1])
    throw new KeydError('TRESOR_ERR_INTERNAL', 'root keyring made an envelope without a root version');
  return Number(m[1]);
}

function addSeconds(date: Date, seconds: number): string {
  return new Date(date.getTime() + seconds * 1000).toISOString();
}

/** Errors while opening a stored row become STORE_CORRUPT naming the row, never its bytes. */
function rowError(where: string, err: unknown): unknown {
  if (err instanceof CryptoError) {
    return new KeydError(
      'TRESOR_ERR_STORE_CORRUPT',
      `${where} does not authenticate: it was corrupted or moved from another row`,
    );
  }
  if (
    err instanceof KeydError &&
    (err.code === 'TRESOR_ERR_KEY_VERSION_RETIRED' || err.code === 'TRESOR_ERR_KEY_ID_UNKNOWN')
  ) {
    return new KeydError(
      'TRESOR_ERR_STORE_CORRUPT',
      `${where} is wrapped by a root key version the keyring does not have`,
    );
  }
  return err;
}

function toKeydError(err: unknown): KeydError {
  if (err instanceof KeydError) return err;
  if (err instanceof CryptoError)
    return new KeydError('TRESOR_ERR_INTERNAL', `unexpected crypto failure (${err.code})`);
  return new KeydError('TRESOR_ERR_INTERNAL');
}

function checkConfig(config: KeyServiceConfig) {
  const get = (name: keyof KeyServiceConfig, fallback: number, min: number, max: number): number => {
    const v = config[name] ?? fallback;
    if (!Number.isSafeInteger(v) || v < min || v > max) {
      throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `${name} must be an integer from ${min} to ${max}`);
    }
    return v;
  };
  return {
    cryptoperiodDays: get('tenantKeyCryptoperiodDays', DEFAULT_TENANT_KEY_CRYPTOPERIOD_DAYS, 1, 3650),
    destroyGraceSeconds: get('destroyGraceSeconds', DEFAULT_DESTROY_GRACE_SECONDS, 0, 400 * 86400),
    maintenanceIntervalSeconds: get(
      'maintenanceIntervalSeconds',
      DEFAULT_MAINTENANCE_INTERVAL_SECONDS,
      0,
      7 * 86400,
    ),
    rotateAt: get('rotateAtEncryptions', DEFAULT_ROTATE_AT_ENCRYPTIONS, 1, AES_GCM_RANDOM_NONCE_LIMIT),
    refuseAt: get('refuseAtEncryptions', DEFAULT_REFUSE_AT_ENCRYPTIONS, 1, DEFAULT_REFUSE_AT_ENCRYPTIONS),
  };
}

/** One operation's ops-log entry in the making. */
class OpRecord {
  tenant: string | null = null;
  keyId: string | null = null;
  detail: string | null = null;
  encryptions: EncryptionCount | undefined;
  /** Set once the entry is queued (group commit) or committed with the operation's change. */
  durable: Promise<unknown> | undefined;
  /** Plaintext keys in the result: wiped if the entry cannot be made durable. */
  readonly secrets: Buffer[] = [];

  constructor(
    readonly op: string,
    readonly caller: string,
    readonly now: () => Date,
  ) {}

  draft(outcome: 'ok' | 'error', detail: string | null = this.detail): OpsLogDraft {
    return {
      at: this.now().toISOString(),
      caller: this.caller,
      op: this.op,
      tenant: this.tenant,
      keyId: this.keyId,
      outcome,
      detail,
    };
  }

  committed(): void {
    this.durable = Promise.resolve();
  }
}

type Handlers = {
  [K in KeydOperationName]: (args: OpArgs<K>, rec: OpRecord, caller: Caller) => Promise<OpResult<K>>;
};

export function createKeyService(options: CreateKeyServiceOptions): KeydService {
  return new TenantKeyService(options);
}

class TenantKeyService implements KeydService {
  readonly #store: KeyStore;
  readonly #ownsStore: boolean;
  readonly #provider: RootKeyProvider;
  readonly #clock: () => Date;
  readonly #config: ReturnType<typeof checkConfig>;
  readonly #started: number;
  readonly #rootLock = new RootLock();
  readonly #tenantLocks = new KeyedMutex();
  /** Unwrapped tenant keys by key id: keyd is the key service, so it may hold them; wiped on seal. */
  readonly #tenantKeys = new Map<string, Buffer>();
  /** Signing seeds by purpose, with the public key checked against the stored one. */
  readonly #signingKeys = new Map<string, { seed: Buffer; publicKey: Buffer; record: SigningKeyRecord }>();
  /** Encryptions per tenant key id, including those whose entries are still being committed. */
  readonly #counts = new Map<string, number>();
  readonly #onMaintenance: ((report: MaintenanceReport) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #maintenance: Promise<MaintenanceReport> | undefined;
  #closed = false;

  constructor(options: CreateKeyServiceOptions) {
    this.#config = checkConfig(options.config ?? {});
    if ((options.dir === undefined) === (options.store === undefined)) {
      throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'createKeyService needs either dir or store');
    }
    this.#provider = options.provider;
    this.#clock = options.clock ?? (() => new Date());
    this.#onMaintenance = options.onMaintenance;
    this.#started = Date.now();
    this.#ownsStore = options.store === undefined;
    this.#store = options.store ?? openSqliteKeyStore(options.dir as string);
    if (this.#config.maintenanceIntervalSeconds > 0) {
      this.#timer = setInterval(() => {
        this.runMaintenance().catch(() => undefined);
      }, this.#config.maintenanceIntervalSeconds * 1000);
      this.#timer.unref();
    }
  }

  // --- the operation pipeline ---------------------------------------------------------------------

  async call<K extends KeydOperationName>(op: K, args: OpArgs<K>, caller?: Caller): Promise<OpResult<K>> {
    const rec = new OpRecord(
      typeof op === 'string' && /^[A-Za-z]{1,40}$/.test(op) ? op : '(invalid)',
      isCaller(caller) ? caller.id : '(unauthenticated)',
      this.#clock,
    );
    const a = (typeof args === 'object' && args !== null ? args : {}) as Record<string, unknown>;
    if (typeof a.tenant === 'string' && TENANT_ID_PATTERN.test(a.tenant)) rec.tenant = a.tenant;
    if (typeof a.keyId === 'string' && KEY_ID_PATTERN.test(a.keyId)) rec.keyId = a.keyId;
    return this.#execute(rec, async () => {
      if (this.#closed) throw new KeydError('TRESOR_ERR_KEYD_UNAVAILABLE', 'keyd is shutting down');
      if (!isCaller(caller)) throw new KeydError('TRESOR_ERR_FORBIDDEN', 'no authenticated caller');
      if (!isOperationName(op)) throw new KeydError('TRESOR_ERR_REQUEST_INVALID', 'op: unknown operation');
      if (ADMIN_OPERATIONS.has(op) && caller.role !== 'admin') {
        throw new KeydError('TRESOR_ERR_FORBIDDEN', `${op} needs the admin role`);
      }
      const valid = validateArgs(op, args);
      const sealed = this.#provider.keyring() === undefined;
      if (sealed && !SEALED_OPERATIONS.has(op)) throw new KeydError('TRESOR_ERR_KEYD_SEALED');
      const handler = this.#handlers[op] as (a: OpArgs<K>, r: OpRecord, c: Caller) => Promise<OpResult<K>>;
      return handler(valid, rec, caller);
    });
  }

  /** Runs a handler and makes its ops-log entry durable before returning (or throwing). */
  async #execute<T>(rec: OpRecord, handler: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await handler();
    } catch (err) {
      const e = toKeydError(err);
      if (rec.durable) {
        rec.durable.catch(() => undefined);
      } else {
        const context = rec.detail ? ` (${rec.detail})` : '';
        await this.#store.appendOps(rec.draft('error', `${e.code}: ${e.message}${context}`));
      }
      throw e;
    }
    try {
      rec.durable ??= this.#store.appendOps(rec.draft('ok'), rec.encryptions);
      await rec.durable;
    } catch (err) {
      wipe(...rec.secrets);
      throw toKeydError(err);
    }
    return result;
  }

  /** An internal operation by keyd itself (maintenance, automatic rotation, signing key creation). */
  #system(op: string, tenant: string | null): OpRecord {
    const rec = new OpRecord(op, SYSTEM_CALLER.id, this.#clock);
    rec.tenant = tenant;
    return rec;
  }

  #keyring(): RootKeyring {
    const keyring = this.#provider.keyring();
    if (!keyring) throw new KeydError('TRESOR_ERR_KEYD_SEALED');
    return keyring;
  }

  #now(): Date {
    return this.#clock();
  }

  readonly #handlers: Handlers = {
    status: async () => this.#provider.status(),

    unseal: async ({ secret }, rec) => {
      const status = await this.#provider.unseal(secret);
      if (status.sealed) {
        rec.detail = status.progress
          ? `share ${status.progress.submitted} of ${status.progress.threshold}`
          : null;
        return status;
      }
      rec.detail = `unsealed (${status.provider})`;
      rec.durable = this.#store.appendOps(rec.draft('ok'));
      await rec.durable;
      await this.runMaintenance();
      return this.#provider.status();
    },

    seal: async () => {
      this.#wipeCaches();
      this.#provider.seal();
      return this.#provider.status();
    },

    health: async (_args, rec) => {
      const keyring = this.#provider.keyring();
      const storeOk = await this.#store.check();
      // Health answers even when the store cannot take its entry: that is what it reports.
      rec.durable = this.#store.appendOps(rec.draft('ok')).catch(() => undefined);
      return {
        status: keyring ? 'ok' : 'sealed',
        seal: this.#provider.status(),
        rootVersion: keyring ? keyring.activeVersion() : null,
        store: storeOk ? 'ok' : 'error',
        uptimeSeconds: Math.floor((Date.now() - this.#started) / 1000),
      };
    },

    createTenantKey: ({ tenant }, rec) =>
      this.#tenantOp(tenant, async () => {
        const existing = await this.#store.getTenant(tenant);
        if (existing?.tenant.state === 'destroyed') throw new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED');
        if (existing) throw new KeydError('TRESOR_ERR_TENANT_KEY_EXISTS');
        const now = this.#now();
        const createdAt = now.toISOString();
        const tenantRecord: TenantRecord = {
          id: tenant,
          state: 'active',
          createdAt,
          destroyAfter: null,
          destroyedAt: null,
        };
        const row = await this.#newTenantKeyVersion(tenant, 1, now, (r) => {
          rec.keyId = r.keyId;
          return this.#store.createTenant(
            tenantRecord,
            r,
            rec.draft('ok', `version 1 under root v${r.rootVersion}`),
          );
        });
        rec.committed();
        return this.#info(row);
      }),

    tenantKeyStatus: async ({ tenant }) => {
      const view = await this.#store.getTenant(tenant);
      if (!view) throw new KeydError('TRESOR_ERR_TENANT_KEY_UNKNOWN');
      return this.#status(view.tenant, view.keys);
    },

    generateDataKey: ({ tenant, purpose }, rec) =>
      this.#tenantOp(tenant, async () => {
        const row = await this.#reserveEncryption(tenant, rec);
        const keyId = newKeyId('dk');
        const key = randomBytes(KEY_BYTES);
        rec.secrets.push(key);
        const wrapped = this.#withTenantKey(row, (tk) =>
          sealEnvelope(tk, row.keyId, key, DATA_KEY_AAD, { tenant, keyId, purpose }),
        );
        rec.keyId = keyId;
        rec.detail = `${purpose} under ${row.keyId}`;
        rec.durable = this.#store.appendOps(rec.draft('ok'), rec.encryptions);
        return { keyId, purpose, tenant, key, wrapped };
      }),

    unwrapDataKey: ({ tenant, purpose, keyId, wrapped }, rec) =>
      this.#tenantOp(tenant, async () => {
        rec.keyId = keyId;
        const row = await this.#wrappingVersion(tenant, wrapped);
        const key = this.#withTenantKey(row, (tk) =>
          openDataKey(tk, row.keyId, wrapped, tenant, keyId, purpose),
        );
        rec.secrets.push(key);
        rec.detail = `${purpose} under ${row.keyId}`;
        rec.durable = this.#store.appendOps(rec.draft('ok'));
        return { key };
      }),

    rewrapDataKey: ({ tenant, purpose, keyId, wrapped }, rec) =>
      this.#tenantOp(tenant, async () => {
        rec.keyId = keyId;
        const source = await this.#wrappingVersion(tenant, wrapped);
        if (source.state === 'active') {
          // Already under the active version: prove it opens, spend no encryption on it.
          wipe(
            this.#withTenantKey(source, (tk) =>
              openDataKey(tk, source.keyId, wrapped, tenant, keyId, purpose),
            ),
          );
          rec.detail = `${purpose} already under ${source.keyId}`;
          rec.durable = this.#store.appendOps(rec.draft('ok'));
          return { wrapped: Buffer.from(wrapped) };
        }
        const target = await this.#reserveEncryption(tenant, rec);
        const key = this.#withTenantKey(source, (tk) =>
          openDataKey(tk, source.keyId, wrapped, tenant, keyId, purpose),
        );
        try {
          const rewrapped = this.#withTenantKey(target, (tk) =>
            sealEnvelope(tk, target.keyId, key, DATA_KEY_AAD, { tenant, keyId, purpose }),
          );
          rec.detail = `${purpose} from ${source.keyId} to ${target.keyId}`;
          rec.durable = this.#store.appendOps(rec.draft('ok'), rec.encryptions);
          return { wrapped: rewrapped };
        } finally {
          wipe(key);
        }
      }),

    rotateTenantKey: ({ tenant }, rec) =>
      this.#tenantOp(tenant, async () => {
        const view = await this.#usableTenant(tenant);
        return this.#rotateLocked(tenant, view.keys, rec, 'requested');
      }),

    retireTenantKeyVersion: ({ tenant, version }, rec) =>
      this.#tenantOp(tenant, async () => {
        const view = await this.#usableTenant(tenant);
        const row = view.keys.find((k) => k.version === version);
        if (!row) throw new KeydError('TRESOR_ERR_KEY_ID_UNKNOWN', `tenant has no key version ${version}`);
        rec.keyId = row.keyId;
        if (row.state === 'active') throw new KeydError('TRESOR_ERR_KEY_VERSION_ACTIVE');
        if (row.state !== 'decrypt-only') throw new KeydError('TRESOR_ERR_KEY_VERSION_RETIRED');
        await this.#store.retireTenantKeyVersion(
          tenant,
          version,
          rec.draft('ok', `version ${version} erased`),
        );
        rec.committed();
        this.#forgetTenantKey(row.keyId);
        return this.#info({ ...row, state: 'retired', rootVersion: null, wrapped: null });
      }),

    destroyTenantKey: ({ tenant, mode, graceSeconds }, rec) =>
      this.#tenantOp(tenant, async () => {
        const view = await this.#store.getTenant(tenant);
        if (!view) throw new KeydError('TRESOR_ERR_TENANT_KEY_UNKNOWN');
        if (view.tenant.state === 'destroyed') throw new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED');
        if (mode === 'now') return this.#shredLocked(tenant, rec, 'requested');
        if (view.tenant.state === 'pending-destroy')
          throw new KeydError('TRESOR_ERR_TENANT_KEY_PENDING_DESTROY');
        const grace = graceSeconds ?? this.#config.destroyGraceSeconds;
        const destroyAfter = addSeconds(this.#now(), grace);
        await this.#store.scheduleTenantDestroy(
          tenant,
          destroyAfter,
          rec.draft('ok', `destroy after ${destroyAfter}`),
        );
        rec.committed();
        return { tenant, state: 'pending-destroy', destroyAfter, destroyedAt: null, keyIdsDestroyed: [] };
      }),

    cancelTenantKeyDestroy: ({ tenant }, rec) =>
      this.#tenantOp(tenant, async () => {
        const view = await this.#store.getTenant(tenant);
        if (!view) throw new KeydError('TRESOR_ERR_TENANT_KEY_UNKNOWN');
        if (view.tenant.state === 'destroyed') throw new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED');
        if (view.tenant.state === 'active') {
          rec.detail = 'was not scheduled for destruction';
          return this.#status(view.tenant, view.keys);
        }
        await this.#store.cancelTenantDestroy(tenant, rec.draft('ok', 'destruction cancelled'));
        rec.committed();
        return this.#status({ ...view.tenant, state: 'active', destroyAfter: null }, view.keys);
      }),

    rotateRootKey: (_args, rec) =>
      this.#rootLock.exclusive(async () => {
        const keyring = this.#keyring();
        // Step 1 is durable on its own; until step 2 commits, every row still names an old version
        // that the keyring keeps, so a crash in between leaves a working keyd.
        const version = await keyring.addVersion();
        rec.detail = `root v${version} added; rows not rewrapped`;
        const rewrapped = await this.#store.rewrapRootRows(
          version,
          (row) => this.#rewrapRootRow(keyring, row, version),
          (n) => rec.draft('ok', `root v${version}: ${n} keys rewrapped`),
        );
        rec.committed();
        return { version, rewrapped };
      }),

    retireRootKeyVersion: ({ version }, rec) =>
      this.#rootLock.exclusive(async () => {
        const keyring = this.#keyring();
        if (keyring.activeVersion() === version) throw new KeydError('TRESOR_ERR_KEY_VERSION_ACTIVE');
        if (!keyring.versions().some((v) => v.version === version)) {
          throw new KeydError(
            'TRESOR_ERR_KEY_VERSION_RETIRED',
            `root key version ${version} is retired or unknown`,
          );
        }
        const inUse = await this.#store.countRootVersionUse(version);
        if (inUse > 0) {
          throw new KeydError(
            'TRESOR_ERR_KEY_VERSION_IN_USE',
            `root key version ${version} still wraps ${inUse} keys: rotate the root key first`,
          );
        }
        await keyring.removeVersion(version);
        rec.detail = `root v${version} removed`;
        return { version };
      }),

    sign: ({ purpose, message }, rec) =>
      this.#rootLock.shared(async () => {
        const signer = await this.#signingKey(purpose);
        rec.keyId = signer.record.keyId;
        rec.detail = `${message.length} bytes`;
        const signature = signEd25519(signer.seed, message);
        return { signature, keyName: signingKeyName(purpose) };
      }),

    publicKey: ({ purpose }, rec) =>
      this.#rootLock.shared(async () => {
        const signer = await this.#signingKey(purpose);
        rec.keyId = signer.record.keyId;
        const name = signingKeyName(purpose);
        return {
          name,
          publicKey: Buffer.from(signer.publicKey),
          verifierKey: noteVerifierKey(name, signer.publicKey),
        };
      }),

    opsLog: async ({ from, limit }) => ({ entries: await this.#store.readOpsLog(from ?? 1, limit ?? 100) }),
  };

  // --- tenant keys --------------------------------------------------------------------------------

  /** A tenant operation: shared root lock, then that tenant's mutex. */
  #tenantOp<T>(tenant: string, fn: () => Promise<T>): Promise<T> {
    return this.#rootLock.shared(() => this.#tenantLocks.run(tenant, fn));
  }

  async #usableTenant(tenant: string): Promise<{ tenant: TenantRecord; keys: TenantKeyRecord[] }> {
    const view = await this.#store.getTenant(tenant);
    if (!view) throw new KeydError('TRESOR_ERR_TENANT_KEY_UNKNOWN');
    if (view.tenant.state === 'destroyed') throw new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED');
    if (view.tenant.state === 'pending-destroy') {
      throw new KeydError(
        'TRESOR_ERR_TENANT_KEY_PENDING_DESTROY',
        `tenant key is scheduled for destruction after ${view.tenant.destroyAfter}`,
      );
    }
    return view;
  }

  /** The tenant key version named in a wrapped data key's header, if it can still unwrap. */
  async #wrappingVersion(tenant: string, wrapped: Buffer): Promise<TenantKeyRecord> {
    let headerKeyId: string;
    try {
      headerKeyId = readEnvelopeHeader(wrapped).keyId;
    } catch {
      throw new KeydError('TRESOR_ERR_WRAPPED_KEY_INVALID', 'wrapped: not a wrapped data key');
    }
    const view = await this.#usableTenant(tenant);
    const row = view.keys.find((k) => k.keyId === headerKeyId);
    if (!row) {
      throw new KeydError(
        'TRESOR_ERR_WRAPPED_KEY_INVALID',
        'wrapped key was not made by a key of this tenant',
      );
    }
    if (row.state === 'retired') {
      throw new KeydError(
        'TRESOR_ERR_KEY_VERSION_RETIRED',
        `tenant key version ${row.version} has been retired`,
      );
    }
    return row;
  }

  #countOf(row: TenantKeyRecord): number {
    let n = this.#counts.get(row.keyId);
    if (n === undefined) {
      n = row.encryptions;
      this.#counts.set(row.keyId, n);
    }
    return n;
  }

  /**
   * Counts one encryption on the tenant's active version and returns it (NIST SP 800-38D §8.3):
   * rotates first when the version reached rotateAt; refuses at refuseAt. Caller holds the tenant lock.
   */
  async #reserveEncryption(tenant: string, rec: OpRecord): Promise<TenantKeyRecord> {
    for (;;) {
      const view = await this.#usableTenant(tenant);
      const row = view.keys.find((k) => k.state === 'active');
      if (!row) throw new KeydError('TRESOR_ERR_STORE_CORRUPT', 'tenant has no active key version');
      const used = this.#countOf(row);
      if (used >= this.#config.rotateAt && (await this.#autoRotate(tenant, view.keys, used))) continue;
      if (used >= this.#config.refuseAt) {
        throw new KeydError(
          'TRESOR_ERR_KEY_EXHAUSTED',
          `tenant key ${row.keyId} has wrapped ${used} keys (limit ${this.#config.refuseAt}, NIST SP 800-38D §8.3): rotate it`,
        );
      }
      this.#counts.set(row.keyId, used + 1);
      rec.encryptions = { tenant, version: row.version, count: 1 };
      return row;
    }
  }

  async #autoRotate(tenant: string, keys: TenantKeyRecord[], used: number): Promise<boolean> {
    const rec = this.#system('rotateTenantKey', tenant);
    try {
      await this.#execute(rec, () =>
        this.#rotateLocked(tenant, keys, rec, `automatic: ${used} encryptions (NIST SP 800-38D §8.3)`),
      );
      return true;
    } catch {
      return false; // logged; the version keeps serving until refuseAt
    }
  }

  /** Makes, wraps and stores a new tenant key version; caches the key once stored. */
  async #newTenantKeyVersion(
    tenant: string,
    version: number,
    now: Date,
    persist: (row: TenantKeyRecord) => Promise<void>,
  ): Promise<TenantKeyRecord> {
    const keyring = this.#keyring();
    const keyId = tenantKeyId(tenant, version);
    const key = randomBytes(KEY_BYTES);
    try {
      const wrapped = keyring.wrap(key, TENANT_KEY_AAD, tenantKeyAad({ tenant, version, keyId }));
      const row: TenantKeyRecord = {
        tenant,
        version,
        keyId,
        state: 'active',
        rootVersion: rootVersionOf(wrapped),
        wrapped,
        createdAt: now.toISOString(),
        rotateAfter: addSeconds(now, this.#config.cryptoperiodDays * 86400),
        encryptions: 0,
      };
      await persist(row);
      this.#counts.set(keyId, 0);
      this.#cacheTenantKey(keyId, key);
      return row;
    } catch (err) {
      wipe(key);
      throw err;
    }
  }

  async #rotateLocked(
    tenant: string,
    keys: TenantKeyRecord[],
    rec: OpRecord,
    why: string,
  ): Promise<TenantKeyInfo> {
    const previous = keys.find((k) => k.state === 'active');
    const version = Math.max(0, ...keys.map((k) => k.version)) + 1;
    const row = await this.#newTenantKeyVersion(tenant, version, this.#now(), (r) => {
      rec.keyId = r.keyId;
      return this.#store.addTenantKeyVersion(
        r,
        rec.draft(
          'ok',
          `version ${version} active, ${previous ? `v${previous.version} decrypt-only` : 'first'}; ${why}`,
        ),
      );
    });
    rec.committed();
    if (previous) this.#forgetTenantKey(previous.keyId);
    return this.#info(row);
  }

  async #shredLocked(tenant: string, rec: OpRecord, why: string) {
    const destroyedAt = this.#now().toISOString();
    const keyIdsDestroyed = await this.#store.destroyTenant(
      tenant,
      destroyedAt,
      rec.draft('ok', `crypto-shredded every tenant key version; ${why}`),
    );
    rec.committed();
    for (const keyId of keyIdsDestroyed) this.#forgetTenantKey(keyId);
    const view = await this.#store.getTenant(tenant);
    return {
      tenant,
      state: 'destroyed' as const,
      destroyAfter: view?.tenant.destroyAfter ?? null,
      destroyedAt,
      keyIdsDestroyed,
    };
  }

  /** Calls `use` with the unwrapped tenant key, synchronously: the key is never held across an await. */
  #withTenantKey<T>(row: TenantKeyRecord, use: (key: Buffer) => T): T {
    let key = this.#tenantKeys.get(row.keyId);
    if (!key) {
      const where = `tenant_keys row (tenant ${row.tenant}, version ${row.version})`;
      if (!row.wrapped) throw new KeydError('TRESOR_ERR_KEY_VERSION_RETIRED');
      try {
        key = this.#keyring().unwrap(row.wrapped, TENANT_KEY_AAD, tenantKeyAad(row));
      } catch (err) {
        throw rowError(where, err);
      }
      if (key.length !== KEY_BYTES) {
        wipe(key);
        throw new KeydError('TRESOR_ERR_STORE_CORRUPT', `${where} does not hold a 32-byte key`);
      }
      this.#cacheTenantKey(row.keyId, key);
    }
    return use(key);
  }

  #cacheTenantKey(keyId: string, key: Buffer): void {
    this.#forgetTenantKey(keyId);
    if (this.#tenantKeys.size >= MAX_CACHED_TENANT_KEYS) {
      const oldest = this.#tenantKeys.keys().next().value;
      if (oldest !== undefined) this.#forgetTenantKey(oldest);
    }
    this.#tenantKeys.set(keyId, key);
  }

  #forgetTenantKey(keyId: string): void {
    const key = this.#tenantKeys.get(keyId);
    if (key) wipe(key);
    this.#tenantKeys.delete(keyId);
  }

  #wipeCaches(): void {
    for (const keyId of [...this.#tenantKeys.keys()]) this.#forgetTenantKey(keyId);
    for (const signer of this.#signingKeys.values()) wipe(signer.seed);
    this.#signingKeys.clear();
  }

  #info(row: TenantKeyRecord): TenantKeyInfo {
    return {
      tenant: row.tenant,
      keyId: row.keyId,
      version: row.version,
      state: row.state,
      rootVersion: row.rootVersion,
      createdAt: row.createdAt,
      rotateAfter: row.rotateAfter,
      encryptions: this.#counts.get(row.keyId) ?? row.encryptions,
    };
  }

  #status(tenant: TenantRecord, keys: TenantKeyRecord[]): TenantKeyStatus {
    return {
      tenant: tenant.id,
      state: tenant.state,
      destroyAfter: tenant.destroyAfter,
      destroyedAt: tenant.destroyedAt,
      versions: keys.map((k) => this.#info(k)),
    };
  }

  // --- root key -----------------------------------------------------------------------------------

  #rewrapRootRow(keyring: RootKeyring, row: RootWrappedRow, version: number): Rewrapped {
    const [aadPurpose, aad, where] =
      row.table === 'tenant_keys'
        ? [
            TENANT_KEY_AAD,
            tenantKeyAad(row),
            `tenant_keys row (tenant ${row.tenant}, version ${row.version})`,
          ]
        : [SIGNING_KEY_AAD, signingKeyAad(row), `signing_keys row (${row.purpose})`];
    let plain: Buffer;
    try {
      plain = keyring.unwrap(row.wrapped, aadPurpose, aad);
    } catch (err) {
      throw rowError(where, err);
    }
    try {
      const wrapped = keyring.wrap(plain, aadPurpose, aad);
      const rootVersion = rootVersionOf(wrapped);
      if (rootVersion !== version) {
        throw new KeydError(
          'TRESOR_ERR_INTERNAL',
          `root keyring wrapped under v${rootVersion}, expected v${version}`,
        );
      }
      return { rootVersion, wrapped };
    } finally {
      wipe(plain);
    }
  }

  // --- signing keys -------------------------------------------------------------------------------

  async #signingKey(purpose: SigningPurpose) {
    return this.#tenantLocks.run(`\u0000signing:${purpose}`, async () => {
      const cached = this.#signingKeys.get(purpose);
      if (cached) return cached;
      const keyring = this.#keyring();
      let record = await this.#store.getSigningKey(purpose);
      if (!record) {
        const { seed, publicKey } = generateEd25519();
        const keyId = `sig.${purpose}.v1`;
        const wrapped = keyring.wrap(seed, SIGNING_KEY_AAD, signingKeyAad({ purpose, keyId }));
        wipe(seed);
        const created: SigningKeyRecord = {
          purpose,
          keyId,
          rootVersion: rootVersionOf(wrapped),
          wrapped,
          publicKey,
          createdAt: this.#now().toISOString(),
        };
        const rec = this.#system('createSigningKey', null);
        rec.keyId = keyId;
        await this.#execute(rec, async () => {
          await this.#store.insertSigningKey(created, rec.draft('ok', `Ed25519 key for ${purpose}`));
          rec.committed();
        });
        record = created;
      }
      const where = `signing_keys row (${purpose})`;
      let seed: Buffer;
      try {
        seed = keyring.unwrap(record.wrapped, SIGNING_KEY_AAD, signingKeyAad(record));
      } catch (err) {
        throw rowError(where, err);
      }
      const publicKey = seed.length === 32 ? ed25519PublicKey(seed) : Buffer.alloc(0);
      if (!constantTimeEqual(publicKey, record.publicKey)) {
        wipe(seed);
        throw new KeydError(
          'TRESOR_ERR_STORE_CORRUPT',
          `${where}: public key does not match the private key`,
        );
      }
      const signer = { seed, publicKey, record };
      this.#signingKeys.set(purpose, signer);
      return signer;
    });
  }

  // --- maintenance and lifecycle ------------------------------------------------------------------

  runMaintenance(): Promise<MaintenanceReport> {
    this.#maintenance ??= this.#maintain()
      .then((report) => {
        try {
          this.#onMaintenance?.(report);
        } catch {
          // a listener's failure is not maintenance's
        }
        return report;
      })
      .finally(() => {
        this.#maintenance = undefined;
      });
    return this.#maintenance;
  }

  async #maintain(): Promise<MaintenanceReport> {
    const report: MaintenanceReport = { sealed: false, rotated: [], destroyed: [], failed: [] };
    if (!this.#provider.keyring() || this.#closed) return { ...report, sealed: !this.#provider.keyring() };
    const now = this.#now().toISOString();

    for (const tenant of await this.#store.tenantsDueForDestruction(now)) {
      const rec = this.#system('destroyTenantKey', tenant);
      try {
        const done = await this.#execute(rec, () =>
          this.#tenantOp(tenant, async () => {
            const view = await this.#store.getTenant(tenant);
            const due = view?.tenant.state === 'pending-destroy' && (view.tenant.destroyAfter ?? '') <= now;
            if (!due) {
              rec.detail = 'skipped: no longer due';
              return false;
            }
            await this.#shredLocked(tenant, rec, 'grace period over');
            return true;
          }),
        );
        if (done) report.destroyed.push(tenant);
      } catch (err) {
        report.failed.push({ tenant, op: rec.op, code: toKeydError(err).code });
      }
    }

    for (const { tenant, version } of await this.#store.tenantKeysDueForRotation(now)) {
      const rec = this.#system('rotateTenantKey', tenant);
      try {
        const info = await this.#execute(rec, () =>
          this.#tenantOp(tenant, async () => {
            const view = await this.#store.getTenant(tenant);
            const active = view?.keys.find((k) => k.state === 'active');
            const due =
              view?.tenant.state === 'active' &&
              active?.version === version &&
              (active.rotateAfter ?? '') <= now;
            if (!view || !due) {
              rec.detail = 'skipped: no longer due';
              return undefined;
            }
            return this.#rotateLocked(
              tenant,
              view.keys,
              rec,
              'cryptoperiod over (NIST SP 800-57 Part 1 §5.3)',
            );
          }),
        );
        if (info) report.rotated.push(info.keyId);
      } catch (err) {
        report.failed.push({ tenant, op: rec.op, code: toKeydError(err).code });
      }
    }
    return report;
  }

  verifyOpsLog(): Promise<OpsLogVerification> {
    return this.#store.verifyOpsLog();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#maintenance?.catch(() => undefined);
    // Let operations already past their locks settle before the store goes.
    await this.#rootLock.exclusive(async () => undefined);
    this.#wipeCaches();
    this.#provider.seal();
    if (this.#ownsStore) await this.#store.close();
  }
}

/** Opens a data key wrapped by a tenant key; any mismatch of tenant, key id or purpose fails. */
function openDataKey(
  tenantKey: Buffer,
  tenantKeyId: string,
  wrapped: Buffer,
  tenant: string,
  keyId: string,
  purpose: DataKeyPurpose,
): Buffer {
  let key: Buffer;
  try {
    key = openEnvelope(tenantKey, tenantKeyId, wrapped, DATA_KEY_AAD, { tenant, keyId, purpose });
  } catch (err) {
    if (err instanceof CryptoError) {
      throw new KeydError(
        'TRESOR_ERR_WRAPPED_KEY_INVALID',
        'wrapped key does not authenticate for this tenant, key id and purpose (or was tampered with)',
      );
    }
    throw err;
  }
  if (key.length !== KEY_BYTES) {
    wipe(key);
    throw new KeydError('TRESOR_ERR_WRAPPED_KEY_INVALID', 'wrapped key does not hold a 32-byte key');
  }
  return key;
}
