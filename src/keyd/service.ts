/**
 * The key service: every operation of KeydOperations, in process. The wire server calls it with the
 * caller its transport proved; tests call it directly. This file checks each call and composes the
 * operations; each concept lives in its own file.
 *
 *   root keyring (provider, only in keyd)
 *     └─ tenant key, one per tenant, versioned — stored wrapped by a root version (store.ts)
 *          └─ data keys — generated here, returned in plaintext and wrapped by the tenant key's
 *             active version; keyd keeps no data key, the caller stores the wrapped form
 *     └─ backup key — wraps one fresh data key per backup (backup-keys.ts)
 *
 * Rules, and where they are kept:
 * - Sealed, keyd answers only SEALED_OPERATIONS; ADMIN_OPERATIONS need the admin role; every
 *   argument is checked (validate.ts). Here.
 * - Every operation — refused ones too — appends an ops-log entry, and its result is returned only
 *   once that entry is durable (fail closed: no log, no key). op-record.ts.
 * - AES-GCM with random nonces allows 2^32 encryptions per key (NIST SP 800-38D §8.3). Each tenant
 *   key version counts the data keys it wraps: at 2^30 keyd rotates it; at 0.9 × 2^32 it refuses.
 *   encryption-budget.ts.
 * - Tenant keys (symmetric key-wrapping keys) have a cryptoperiod, one year by default (NIST SP
 *   800-57 Part 1 §5.3); runMaintenance rotates overdue ones and completes scheduled destructions.
 *   maintenance.ts.
 * - Destruction is crypto-shredding: every wrapped version is zeroed and erased and the WAL
 *   checkpointed, so nothing wrapped by the tenant key can be opened again. tenant-destruction.ts.
 * - Rotate, retire and destroy carry the client's request id: a repeat (after keyd died before its
 *   answer, on another instance) answers the first outcome instead of acting twice.
 *   repeated-requests.ts.
 * - No operation returns the root key, a tenant key, a signing seed or the backup key.
 * - keyd signs only what it parsed or built itself: checkpoints as consistent extensions of the
 *   last it signed (signing-checkpoints.ts), deletion certificates from its own record of the
 *   destruction (signing-deletion-certificates.ts), backup-manifest and trust statements checked
 *   to be statements of their purpose (signing-statements.ts).
 * - keyd's own backups (its store, encrypted under a key only the root keyring unwraps) run on
 *   their own schedule and on demand, one at a time. backup/keyd-backups.ts.
 */
import { KEY_ID_PATTERN } from '../crypto/key-id.ts';
import type { ConfiguredDestination } from '../objects/configured-destinations.ts';
import { KeydBackups } from './backup/keyd-backups.ts';
import { BackupKeys } from './backup-keys.ts';
import { dataKeyOperations } from './data-keys.ts';
import { EncryptionBudget } from './encryption-budget.ts';
import { KeydError } from './errors.ts';
import { checkKeyServiceConfig, type KeyServiceConfig } from './key-service-config.ts';
import { RootLock } from './locks.ts';
import { Maintenance, type MaintenanceReport } from './maintenance.ts';
import { type OpHandlers, type OpRecord, OpRecorder, SYSTEM_CALLER } from './op-record.ts';
import {
  ADMIN_OPERATIONS,
  type Caller,
  type KeydBackupResult,
  type KeydOperationName,
  type KeyService,
  type OpArgs,
  type OpResult,
  SEALED_OPERATIONS,
} from './operations.ts';
import type { OpsLogVerification } from './ops-log.ts';
import { answeredOnce } from './repeated-requests.ts';
import type { RootKeyProvider } from './root/types.ts';
import { rootKeyOperations } from './root-rotation.ts';
import { unsealedKeyring } from './root-wrapping.ts';
import { checkpointOperations } from './signing-checkpoints.ts';
import { deletionCertificateOperations } from './signing-deletion-certificates.ts';
import { SigningKeys } from './signing-keys.ts';
import { statementOperations } from './signing-statements.ts';
import { type KeyStore, openSqliteKeyStore } from './store.ts';
import { TenantDestruction } from './tenant-destruction.ts';
import { tenantKeyOperations } from './tenant-key-operations.ts';
import { TenantKeys } from './tenant-keys.ts';
import { isCaller, isOperationName, TENANT_ID_PATTERN, validateArgs } from './validate.ts';

export {
  AES_GCM_RANDOM_NONCE_LIMIT,
  DEFAULT_DESTROY_GRACE_SECONDS,
  DEFAULT_MAINTENANCE_INTERVAL_SECONDS,
  DEFAULT_REFUSE_AT_ENCRYPTIONS,
  DEFAULT_ROTATE_AT_ENCRYPTIONS,
  DEFAULT_TENANT_KEY_CRYPTOPERIOD_DAYS,
  type KeyServiceConfig,
} from './key-service-config.ts';
export type { MaintenanceReport } from './maintenance.ts';
export { SYSTEM_CALLER } from './op-record.ts';
export { tenantKeyId } from './tenant-keys.ts';

export interface CreateKeyServiceOptions {
  /** keyd's folder: the SQLite store is opened (and closed by close()) there, unless `store` is given. */
  dir?: string;
  /** Or a store the caller opened (and closes, unless `ownsStore`). */
  store?: KeyStore;
  /** close() closes `store` too (keyd's daemon with its PostgreSQL store). */
  ownsStore?: boolean;
  provider: RootKeyProvider;
  config?: KeyServiceConfig;
  clock?: () => Date;
  /** Told about every completed maintenance run (timer, unseal or direct), e.g. to log it. */
  onMaintenance?: (report: MaintenanceReport) => void;
  /** keyd's own backups; absent: none configured (backupKeyd then fails), the horizon null. */
  backup?: KeydBackupOptions;
}

export interface KeydBackupOptions {
  destinations: ConfiguredDestination[];
  /** Minutes between scheduled backups (fractions allowed); 0: only on demand. */
  intervalMinutes: number;
  /** Plaintext bytes per chunk (4 MiB by default). */
  chunkSize?: number;
  /** Told about every scheduled backup's result, e.g. to log it. */
  onScheduled?: (result: KeydBackupResult | { error: string }) => void;
}

export interface KeydService extends KeyService {
  /** Rotates overdue tenant keys and completes due destructions, as caller `system`. */
  runMaintenance(): Promise<MaintenanceReport>;
  /** Recomputes the ops-log hash chain; reports the first entry that does not fit. */
  verifyOpsLog(): Promise<OpsLogVerification>;
  /** Stops the timer, writes what is queued, wipes keys from memory and seals the provider. */
  close(): Promise<void>;
}

export function createKeyService(options: CreateKeyServiceOptions): KeydService {
  return new TenantKeyService(options);
}

class TenantKeyService implements KeydService {
  readonly #store: KeyStore;
  readonly #ownsStore: boolean;
  readonly #provider: RootKeyProvider;
  readonly #started: number;
  readonly #rootLock = new RootLock();
  readonly #recorder: OpRecorder;
  readonly #tenantKeys: TenantKeys;
  readonly #budget: EncryptionBudget;
  readonly #signingKeys: SigningKeys;
  readonly #backupKeys: BackupKeys;
  readonly #maintenance: Maintenance;
  readonly #backups: KeydBackups;
  readonly #handlers: OpHandlers;
  #closed = false;

  constructor(options: CreateKeyServiceOptions) {
    const config = checkKeyServiceConfig(options.config ?? {});
    if (options.dir === undefined && options.store === undefined) {
      throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'createKeyService needs dir or a store');
    }
    const provider = options.provider;
    const clock = options.clock ?? (() => new Date());
    this.#provider = provider;
    this.#started = Date.now();
    this.#ownsStore = options.store === undefined || options.ownsStore === true;
    const store = options.store ?? openSqliteKeyStore(options.dir as string);
    this.#store = store;

    const rootLock = this.#rootLock;
    const keyring = () => unsealedKeyring(provider);
    const recorder = new OpRecorder(store, clock);
    const tenantKeys = new TenantKeys({
      store,
      keyring,
      rootLock,
      clock,
      cryptoperiodDays: config.cryptoperiodDays,
    });
    const budget = new EncryptionBudget({
      store,
      tenantKeys,
      recorder,
      rotateAt: config.rotateAt,
      refuseAt: config.refuseAt,
    });
    const destruction = new TenantDestruction({
      store,
      tenantKeys,
      clock,
      destroyGraceSeconds: config.destroyGraceSeconds,
    });
    this.#recorder = recorder;
    this.#tenantKeys = tenantKeys;
    this.#budget = budget;
    this.#signingKeys = new SigningKeys({ store, keyring, recorder, rootLock, clock });
    this.#backupKeys = new BackupKeys({ store, keyring, recorder, rootLock, clock });
    const backup = options.backup ?? { destinations: [], intervalMinutes: 0 };
    if (options.backup && options.dir === undefined) {
      throw new KeydError('TRESOR_ERR_CONFIG_INVALID', "keyd's backups need keyd's folder (dir)");
    }
    this.#backups = new KeydBackups({
      dir: options.dir ?? '',
      provider: provider.kind,
      store,
      keyring,
      rootLock,
      signer: {
        publicKey: async () => {
          const info = await this.call('publicKey', { purpose: 'backup-manifest' }, SYSTEM_CALLER);
          return { keyName: info.name, publicKey: info.publicKey };
        },
        sign: (message) => this.call('sign', { purpose: 'backup-manifest', message }, SYSTEM_CALLER),
      },
      destinations: backup.destinations,
      ...(backup.chunkSize === undefined ? {} : { chunkSize: backup.chunkSize }),
      recorder,
      clock,
      intervalMinutes: backup.intervalMinutes,
      unsealed: () => provider.keyring() !== undefined,
      onScheduled: backup.onScheduled,
    });
    const lifecycle = { ...tenantKeyOperations({ store, tenantKeys, clock }), ...destruction.operations() };
    this.#handlers = {
      ...this.#sealOperations(),
      ...lifecycle,
      // Rotate, retire and destroy are done at most once per client request id.
      ...answeredOnce({ store, tenantKeys }, lifecycle),
      ...dataKeyOperations({ store, tenantKeys, budget }),
      ...rootKeyOperations({ store, rootLock, keyring }),
      ...this.#signingKeys.operations(),
      ...statementOperations(this.#signingKeys),
      ...checkpointOperations({ store, signingKeys: this.#signingKeys, clock }),
      ...deletionCertificateOperations({
        store,
        signingKeys: this.#signingKeys,
        backupHorizon: (at) => this.#backups.horizon(at),
      }),
      ...this.#backupKeys.operations(),
      ...this.#backups.operations(),
      opsLog: async ({ from, limit }) => ({ entries: await store.readOpsLog(from ?? 1, limit ?? 100) }),
    };
    this.#maintenance = new Maintenance({
      store,
      provider,
      recorder,
      tenantKeys,
      destruction,
      clock,
      isClosed: () => this.#closed,
      intervalSeconds: config.maintenanceIntervalSeconds,
      onMaintenance: options.onMaintenance,
    });
    this.#backups.start();
  }

  async call<K extends KeydOperationName>(op: K, args: OpArgs<K>, caller?: Caller): Promise<OpResult<K>> {
    const rec = this.#recorder.record(
      typeof op === 'string' && /^[A-Za-z]{1,40}$/.test(op) ? op : '(invalid)',
      isCaller(caller) ? caller.id : '(unauthenticated)',
    );
    const a = (typeof args === 'object' && args !== null ? args : {}) as Record<string, unknown>;
    if (typeof a.tenant === 'string' && TENANT_ID_PATTERN.test(a.tenant)) rec.tenant = a.tenant;
    if (typeof a.keyId === 'string' && KEY_ID_PATTERN.test(a.keyId)) rec.keyId = a.keyId;
    return this.#recorder.execute(rec, async () => {
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

  /** Seal state and health: the operations a sealed keyd still answers. */
  #sealOperations(): Pick<OpHandlers, 'status' | 'unseal' | 'seal' | 'health'> {
    const provider = this.#provider;
    const store = this.#store;
    return {
      status: async () => provider.status(),

      unseal: async ({ secret }, rec) => {
        const status = await provider.unseal(secret);
        if (status.sealed) {
          rec.detail = status.progress
            ? `share ${status.progress.submitted} of ${status.progress.threshold}`
            : null;
          return status;
        }
        rec.detail = `unsealed (${status.provider})`;
        rec.durable = store.appendOps(rec.draft('ok'));
        await rec.durable;
        await this.runMaintenance();
        return provider.status();
      },

      seal: async () => {
        this.#wipeKeys();
        provider.seal();
        return provider.status();
      },

      health: async (_args, rec) => {
        const keyring = provider.keyring();
        const storeOk = await store.check();
        // Health answers even when the store cannot take its entry: that is what it reports.
        rec.durable = store.appendOps(rec.draft('ok')).catch(() => undefined);
        return {
          status: keyring ? 'ok' : 'sealed',
          seal: provider.status(),
          rootVersion: keyring ? keyring.activeVersion() : null,
          store: storeOk ? 'ok' : 'error',
          uptimeSeconds: Math.floor((Date.now() - this.#started) / 1000),
        };
      },
    };
  }

  #wipeKeys(): void {
    this.#tenantKeys.clear();
    this.#signingKeys.clear();
    this.#backupKeys.clear();
  }

  runMaintenance(): Promise<MaintenanceReport> {
    return this.#maintenance.run();
  }

  verifyOpsLog(): Promise<OpsLogVerification> {
    return this.#store.verifyOpsLog();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#backups.stop();
    await this.#maintenance.stop();
    // Let operations already past their locks settle before the store goes.
    await this.#rootLock.exclusive(async () => undefined);
    await this.#budget.close();
    this.#wipeKeys();
    this.#provider.seal();
    if (this.#ownsStore) await this.#store.close();
  }
}
