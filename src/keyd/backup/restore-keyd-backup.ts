/**
 * Restores a keyd backup into an empty folder, offline (`tresor keyd restore`; docs/backup.md,
 * "keyd's own backups"). keyd does not run meanwhile: this is the folder a new keyd will serve.
 *
 * The chicken-and-egg, and how it is cut: the store is encrypted under a key that only the root
 * keyring unwraps, and the root keyring is itself sealed (passphrase, Shamir shares, the dev key
 * file, or non-extractable keys in a PKCS#11 token). So a restore needs, besides the backup, the
 * root key's secret — nothing else of the lost keyd:
 *
 *   1. the target must be absent or an empty folder (refused before anything is read);
 *   2. manifest and signature are read and the signature checked under the key the manifest names
 *      (and, if the operator pinned one, that it is the pinned key);
 *   3. in a hidden sibling of the target (`.<target>.restore-<random>`, 0700): the sealed keyring
 *      file, from the backup (digest checked); for dev-file the key file the operator kept
 *      elsewhere (it is never in a backup); for pkcs11 the token named by the operator;
 *   4. the provider is opened there and unsealed with the operator's secret(s);
 *   5. the store key is unwrapped by that keyring, and every chunk read, its size and digest
 *      checked, decrypted at its place and written; the whole file's size and digest checked;
 *   6. the restored store is opened as keyd opens it: its ops-log chain must verify, and it must
 *      hold the signing key that signed the manifest;
 *   7. only then is the hidden folder renamed to the target. Any failure removes it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { constantTimeEqual, wipe } from '../../crypto/index.ts';
import { openChunk } from '../../objects/chunk-cipher.ts';
import {
  type Destination,
  listBackups,
  MANIFEST_OBJECT,
  SIGNATURE_OBJECT,
} from '../../objects/destination.ts';
import { BackupError, invalidBackup } from '../../objects/errors.ts';
import { refuseNonEmpty, syncFolder, targetNotEmpty } from '../../objects/restore-target.ts';
import { KeydError } from '../errors.ts';
import { DEV_KEY_FILE, KEYRING_FILE } from '../root/dev-file.ts';
import { createRootKeyProvider, type RootProviderConfig } from '../root/index.ts';
import type { Pkcs11Config } from '../root/pkcs11.ts';
import type { RootKeyProvider, SealStatus } from '../root/types.ts';
import { KEY_STORE_FILE, openSqliteKeyStore } from '../store.ts';
import {
  chunkObject,
  KEYRING_OBJECT,
  type KeydBackupManifest,
  openKeydManifest,
  STORE_KEY_AAD,
  sha256Hex,
} from './keyd-manifest.ts';

export interface RestoreKeydOptions {
  destination: Destination;
  /** The backup to restore; the newest complete one when absent. */
  backupId?: string;
  /** An empty or absent folder: keyd's new folder. */
  target: string;
  /**
   * The next unseal secret (passphrase, one Shamir share, the PIN; '' for dev-file), asked while
   * the provider is still sealed; undefined: no more, the restore fails.
   */
  nextSecret: (status: SealStatus) => Promise<string | undefined>;
  /** dev-file: the plain root key file, kept apart from the backups. */
  devKeyFile?: string;
  /** pkcs11: the token holding the root key versions. */
  pkcs11?: Pkcs11Config;
  /** The raw 32-byte public key keyd's backup manifests must be signed with, if pinned. */
  verifierKey?: Buffer;
}

export interface RestoreKeydResult {
  backupId: string;
  createdAt: string;
  provider: string;
  target: string;
  storeBytes: number;
  opsLogEntries: number;
}

async function newestComplete(destination: Destination): Promise<string> {
  const newest = (await listBackups(destination)).filter((b) => b.complete).at(-1);
  if (!newest)
    throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `no complete keyd backup at ${destination.name}`);
  return newest.id;
}

function providerConfig(
  manifest: KeydBackupManifest,
  dir: string,
  options: RestoreKeydOptions,
): RootProviderConfig {
  if (manifest.provider === 'pkcs11') {
    if (!options.pkcs11) {
      throw new KeydError(
        'TRESOR_ERR_CONFIG_INVALID',
        'this keyd backup was taken with pkcs11: name the token',
      );
    }
    return { kind: 'pkcs11', ...options.pkcs11 };
  }
  return { kind: manifest.provider, dir };
}

async function unseal(provider: RootKeyProvider, options: RestoreKeydOptions): Promise<void> {
  let status = provider.status();
  for (let tries = 0; status.sealed && tries < 64; tries++) {
    const secret = await options.nextSecret(status);
    if (secret === undefined) break;
    status = await provider.unseal(secret);
  }
  if (status.sealed) throw new KeydError('TRESOR_ERR_UNSEAL_FAILED', 'the root keyring stayed sealed');
}

export async function restoreKeydBackup(options: RestoreKeydOptions): Promise<RestoreKeydResult> {
  const target = resolve(options.target);
  await refuseNonEmpty(target);
  const { destination } = options;
  const backupId = options.backupId ?? (await newestComplete(destination));
  const get = (object: string) => destination.get(`${backupId}/${object}`);
  const manifest = openKeydManifest(backupId, await get(MANIFEST_OBJECT), await get(SIGNATURE_OBJECT));
  const signer = Buffer.from(manifest.signer.publicKey, 'base64');
  if (options.verifierKey && !constantTimeEqual(options.verifierKey, signer)) {
    throw invalidBackup(backupId, 'manifest is not signed by the pinned keyd key');
  }
  if (manifest.provider === 'dev-file' && !options.devKeyFile) {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      'a dev-file keyd backup never holds the root key: name the kept dev-root.key with --dev-key-file',
    );
  }

  const parent = dirname(target);
  const staging = join(parent, `.${basename(target)}.restore-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  let provider: RootKeyProvider | undefined;
  try {
    if (manifest.keyring) {
      const keyringFile = await get(KEYRING_OBJECT);
      if (
        keyringFile.length !== manifest.keyring.size ||
        sha256Hex(keyringFile) !== manifest.keyring.sha256
      ) {
        throw invalidBackup(backupId, 'the root keyring object differs from the manifest');
      }
      await writeNew(join(staging, KEYRING_FILE), keyringFile);
    }
    if (manifest.provider === 'dev-file' && options.devKeyFile) {
      await copyFile(options.devKeyFile, join(staging, DEV_KEY_FILE));
    }
    provider = createRootKeyProvider(providerConfig(manifest, staging, options));
    await unseal(provider, options);
    const keyring = provider.keyring();
    if (!keyring) throw new KeydError('TRESOR_ERR_UNSEAL_FAILED');
    let storeKey: Buffer;
    try {
      storeKey = keyring.unwrap(Buffer.from(manifest.storeKey.wrapped, 'base64'), STORE_KEY_AAD, {
        backupId,
      });
    } catch {
      throw invalidBackup(backupId, 'the store key does not open under this root keyring');
    }
    try {
      await writeStore(manifest, storeKey, get, join(staging, KEY_STORE_FILE));
    } finally {
      wipe(storeKey);
    }
    provider.seal();

    // Opened as keyd opens it: the ops log must chain, and the manifest's signer must be its key.
    const store = openSqliteKeyStore(staging);
    let opsLogEntries: number;
    try {
      const chain = await store.verifyOpsLog();
      if (!chain.ok)
        throw invalidBackup(backupId, `the restored ops log breaks at entry ${chain.firstBadSeq}`);
      opsLogEntries = chain.entries;
      const signing = await store.getSigningKey('backup-manifest');
      if (!signing || !constantTimeEqual(signing.publicKey, signer)) {
        throw invalidBackup(backupId, 'the restored store does not hold the key that signed the manifest');
      }
    } finally {
      await store.close();
    }

    await syncFolder(staging);
    await refuseNonEmpty(target); // filled meanwhile? then leave it alone
    try {
      await rename(staging, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') throw targetNotEmpty(target);
      throw err;
    }
    await syncFolder(parent);
    return {
      backupId,
      createdAt: manifest.createdAt,
      provider: manifest.provider,
      target,
      storeBytes: manifest.store.size,
      opsLogEntries,
    };
  } catch (err) {
    provider?.seal();
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

async function writeNew(path: string, data: Buffer): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.write(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Every chunk checked (size, digest), decrypted at its place and appended; then the whole file. */
async function writeStore(
  manifest: KeydBackupManifest,
  storeKey: Buffer,
  get: (object: string) => Promise<Buffer>,
  path: string,
): Promise<void> {
  const { backupId } = manifest;
  const digest = createHash('sha256');
  let size = 0;
  let handle: FileHandle | undefined = await open(path, 'wx', 0o600);
  try {
    for (const chunk of manifest.chunks) {
      const stored = await get(chunkObject(chunk.index)).catch((err: unknown) => {
        if ((err as { code?: string }).code === 'TRESOR_ERR_BACKUP_NOT_FOUND') {
          throw invalidBackup(backupId, `chunk ${chunk.index} is missing`);
        }
        throw err;
      });
      if (stored.length !== chunk.size || sha256Hex(stored) !== chunk.sha256) {
        throw invalidBackup(backupId, `chunk ${chunk.index} differs from the manifest`);
      }
      const final = chunk.index === manifest.chunks.length - 1;
      const plain = openChunk(storeKey, { backupId, index: chunk.index, final }, stored);
      digest.update(plain);
      size += plain.length;
      await handle.write(plain);
      wipe(plain);
    }
    if (size !== manifest.store.size || digest.digest('hex') !== manifest.store.sha256) {
      throw invalidBackup(backupId, 'the decrypted store differs from the manifest');
    }
    await handle.sync();
  } finally {
    await handle.close();
    handle = undefined;
  }
}
