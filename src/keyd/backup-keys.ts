/**
 * keyd's backup key and the per-backup data keys it wraps (docs/backup.md, "Keys").
 *
 *   root keyring ─ wraps ─▶ backup key `bk.v<n>` (keyd's store, never leaves keyd)
 *                             └─ wraps ─▶ one fresh 256-bit data key per backup (in the manifest)
 *                                           └─ encrypts the backup's chunks (src/backup/)
 *
 * The backup key is made on first use, stored wrapped by the root keyring like a tenant key, held
 * unwrapped only until keyd seals, and rewrapped by root rotation. A backup's data key is wrapped
 * bound (AAD) to its backup id and key id, so a wrapped key copied into another backup's manifest
 * does not open, and a backup stolen from a destination can never be decrypted without keyd.
 *
 * Usage bound: each wrap is one AES-GCM encryption with a random nonce under the backup key
 * (NIST SP 800-38D §8.3 allows 2^32); at a backup every hour that is 490,000 years, so no counter.
 * Versions exist so the key can be rotated later; old versions must keep unwrapping while backups
 * they wrapped are within retention.
 */
import { randomBytes } from 'node:crypto';
import {
  CryptoError,
  KEY_BYTES,
  newKeyId,
  openEnvelope,
  readEnvelopeHeader,
  sealEnvelope,
  wipe,
} from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import { KeyedMutex, type RootLock } from './locks.ts';
import type { OpHandlers, OpRecorder } from './op-record.ts';
import type { RootKeyring } from './root/types.ts';
import { BACKUP_KEY_AAD, backupKeyAad, rootVersionOf, rowError } from './root-wrapping.ts';
import type { BackupKeyRecord, KeyStore } from './store.ts';

// AAD purpose (src/crypto/aad.ts) of a backup's data key wrapped by the backup key.
const BACKUP_DATA_KEY_AAD = 'backup-data-key';

export interface BackupKeysDeps {
  store: Pick<KeyStore, 'getBackupKey' | 'getBackupKeyById' | 'insertBackupKey' | 'appendOps'>;
  keyring: () => RootKeyring;
  recorder: OpRecorder;
  rootLock: RootLock;
  clock: () => Date;
}

export function backupKeyId(version: number): string {
  return `bk.v${version}`;
}

export class BackupKeys {
  readonly #deps: BackupKeysDeps;
  /** The backup key is loaded or created once, however many callers ask at the same time. */
  readonly #lock = new KeyedMutex();
  /** Unwrapped backup key versions by key id, wiped when keyd seals. */
  readonly #keys = new Map<string, Buffer>();

  constructor(deps: BackupKeysDeps) {
    this.#deps = deps;
  }

  operations(): Pick<OpHandlers, 'generateBackupDataKey' | 'unwrapBackupDataKey'> {
    const { store, rootLock } = this.#deps;
    return {
      generateBackupDataKey: ({ backupId }, rec) =>
        rootLock.shared(async () => {
          const row = await this.#active();
          const keyId = newKeyId('bdk');
          const key = randomBytes(KEY_BYTES);
          rec.secrets.push(key);
          const wrapped = sealEnvelope(this.#unwrapped(row), row.keyId, key, BACKUP_DATA_KEY_AAD, {
            backupId,
            keyId,
          });
          rec.keyId = keyId;
          rec.detail = `backup ${backupId} under ${row.keyId}`;
          rec.durable = store.appendOps(rec.draft('ok'));
          return { backupId, keyId, key, wrapped };
        }),

      unwrapBackupDataKey: ({ backupId, keyId, wrapped }, rec) =>
        rootLock.shared(async () => {
          rec.keyId = keyId;
          let headerKeyId: string;
          try {
            headerKeyId = readEnvelopeHeader(wrapped).keyId;
          } catch {
            throw new KeydError('TRESOR_ERR_WRAPPED_KEY_INVALID', 'wrapped: not a wrapped backup data key');
          }
          const row = await store.getBackupKeyById(headerKeyId);
          if (!row) {
            throw new KeydError(
              'TRESOR_ERR_WRAPPED_KEY_INVALID',
              "wrapped key was not made by this keyd's backup key",
            );
          }
          let key: Buffer;
          try {
            key = openEnvelope(this.#unwrapped(row), row.keyId, wrapped, BACKUP_DATA_KEY_AAD, {
              backupId,
              keyId,
            });
          } catch (err) {
            if (!(err instanceof CryptoError)) throw err;
            throw new KeydError(
              'TRESOR_ERR_WRAPPED_KEY_INVALID',
              'wrapped key does not authenticate for this backup id and key id (or was tampered with)',
            );
          }
          if (key.length !== KEY_BYTES) {
            wipe(key);
            throw new KeydError('TRESOR_ERR_WRAPPED_KEY_INVALID', 'wrapped key does not hold a 32-byte key');
          }
          rec.secrets.push(key);
          rec.detail = `backup ${backupId} under ${row.keyId}`;
          rec.durable = store.appendOps(rec.draft('ok'));
          return { key };
        }),
    };
  }

  /** Wipes every unwrapped backup key from memory (seal, close). */
  clear(): void {
    for (const key of this.#keys.values()) wipe(key);
    this.#keys.clear();
  }

  /** The newest backup key version, made (and logged as keyd's own operation) on first use. */
  #active(): Promise<BackupKeyRecord> {
    return this.#lock.run('backup-key', async () => {
      const row = await this.#deps.store.getBackupKey();
      return row ?? this.#create(1);
    });
  }

  /** The version's key, unwrapped by the root keyring once and kept until keyd seals. */
  #unwrapped(row: BackupKeyRecord): Buffer {
    const cached = this.#keys.get(row.keyId);
    if (cached) return cached;
    const where = `backup_keys row (version ${row.version})`;
    let key: Buffer;
    try {
      key = this.#deps.keyring().unwrap(row.wrapped, BACKUP_KEY_AAD, backupKeyAad(row));
    } catch (err) {
      throw rowError(where, err);
    }
    if (key.length !== KEY_BYTES) {
      wipe(key);
      throw new KeydError('TRESOR_ERR_STORE_CORRUPT', `${where} does not hold a 32-byte key`);
    }
    this.#keys.set(row.keyId, key);
    return key;
  }

  async #create(version: number): Promise<BackupKeyRecord> {
    const { keyring, recorder, store, clock } = this.#deps;
    const keyId = backupKeyId(version);
    const key = randomBytes(KEY_BYTES);
    try {
      const wrapped = keyring().wrap(key, BACKUP_KEY_AAD, backupKeyAad({ version, keyId }));
      const created: BackupKeyRecord = {
        version,
        keyId,
        rootVersion: rootVersionOf(wrapped),
        wrapped,
        createdAt: clock().toISOString(),
      };
      const rec = recorder.system('createBackupKey', null);
      rec.keyId = keyId;
      await recorder.execute(rec, async () => {
        await store.insertBackupKey(created, rec.draft('ok', `backup key version ${version}`));
        rec.committed();
      });
      return created;
    } finally {
      wipe(key);
    }
  }
}
