/**
 * Takes one keyd backup (docs/backup.md, "keyd's own backups"):
 *
 *   1. the backup-manifest signing key is made if need be, so the snapshot already holds it;
 *   2. under the root lock (shared: no root rotation meanwhile), a consistent copy of keyd's store
 *      (VACUUM INTO, in keyd's own 0700 folder, removed at the end), the sealed root keyring file
 *      as it is now, and a fresh 256-bit store key wrapped by the root keyring's active version;
 *   3. the copy is sealed in AES-256-GCM chunks under the store key (src/objects/chunk-cipher.ts)
 *      and every chunk written to every destination with read-back (putVerified);
 *   4. the keyring file goes alongside as its own object — it is already encrypted (passphrase,
 *      Shamir shares or the dev key file, which is never copied); the pkcs11 token keeps its keys;
 *   5. keyd signs the manifest's statement; signature, then manifest, are written last.
 *
 * A destination that fails is dropped from this backup and its objects removed; the backup fails
 * only when none is left. The store key never leaves keyd unwrapped and is wiped at the end.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { KEY_BYTES, wipe } from '../../crypto/index.ts';
import { DEFAULT_CHUNK_BYTES, sealChunk } from '../../objects/chunk-cipher.ts';
import type { ConfiguredDestination } from '../../objects/configured-destinations.ts';
import { deleteBackup, MANIFEST_OBJECT, putVerified, SIGNATURE_OBJECT } from '../../objects/destination.ts';
import { BackupError } from '../../objects/errors.ts';
import type { RootLock } from '../locks.ts';
import type { KeydBackupResult } from '../operations.ts';
import { KEYRING_FILE } from '../root/dev-file.ts';
import type { RootKeyring, RootProviderKind } from '../root/types.ts';
import { rootVersionOf } from '../root-wrapping.ts';
import type { KeyStore } from '../store.ts';
import {
  canonical,
  chunkObject,
  KEYD_MANIFEST_FORMAT,
  KEYD_SIGNATURE_FORMAT,
  KEYRING_OBJECT,
  type KeydBackupManifest,
  keydManifestStatement,
  STORE_KEY_AAD,
  sha256Hex,
} from './keyd-manifest.ts';

export interface KeydBackupSigner {
  publicKey(): Promise<{ keyName: string; publicKey: Buffer }>;
  sign(message: Buffer): Promise<{ signature: Buffer; keyName: string }>;
}

export interface CreateKeydBackupDeps {
  dir: string;
  provider: RootProviderKind;
  store: Pick<KeyStore, 'snapshot'>;
  keyring: () => RootKeyring;
  rootLock: RootLock;
  signer: KeydBackupSigner;
  destinations: readonly ConfiguredDestination[];
  chunkSize?: number;
}

interface Captured {
  snapshotPath: string;
  keyringFile: Buffer | null;
  storeKey: Buffer;
  wrapped: Buffer;
}

async function capture(deps: CreateKeydBackupDeps, backupId: string): Promise<Captured> {
  return deps.rootLock.shared(async () => {
    const keyring = deps.keyring();
    const snapshotPath = join(deps.dir, `.keyd-backup-${backupId}.sqlite`);
    await rm(snapshotPath, { force: true });
    const storeKey = randomBytes(KEY_BYTES);
    try {
      await deps.store.snapshot(snapshotPath);
      const keyringFile = deps.provider === 'pkcs11' ? null : await readFile(join(deps.dir, KEYRING_FILE));
      const wrapped = keyring.wrap(storeKey, STORE_KEY_AAD, { backupId });
      return { snapshotPath, keyringFile, storeKey, wrapped };
    } catch (err) {
      wipe(storeKey);
      await rm(snapshotPath, { force: true });
      throw err;
    }
  });
}

export async function createKeydBackup(
  deps: CreateKeydBackupDeps,
  backupId: string,
  createdAt: Date,
): Promise<KeydBackupResult> {
  const chunkSize = deps.chunkSize ?? DEFAULT_CHUNK_BYTES;
  const signerKey = await deps.signer.publicKey();
  const captured = await capture(deps, backupId);
  const live = new Map(deps.destinations.map((d) => [d.name, d]));
  const failed = new Map<string, string>();
  let stored = 0;

  /** Writes one object everywhere still live; a destination that fails is dropped from this backup. */
  const putEverywhere = async (object: string, data: Buffer) => {
    for (const [name, d] of [...live]) {
      try {
        await putVerified(d.destination, `${backupId}/${object}`, data);
      } catch (err) {
        live.delete(name);
        failed.set(name, (err as { code?: string }).code ?? 'TRESOR_ERR_BACKUP_DESTINATION');
        await deleteBackup(d.destination, backupId).catch(() => undefined);
      }
    }
    stored += data.length;
  };

  try {
    const handle = await open(captured.snapshotPath, 'r');
    const chunks: KeydBackupManifest['chunks'] = [];
    let storeSize = 0;
    const storeDigest = createHash('sha256');
    try {
      const total = (await handle.stat()).size;
      const count = Math.max(1, Math.ceil(total / chunkSize));
      for (let index = 0; index < count; index++) {
        const buffer = Buffer.alloc(Math.min(chunkSize, total - index * chunkSize));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, index * chunkSize);
        if (bytesRead !== buffer.length)
          throw new BackupError('TRESOR_ERR_BACKUP_FAILED', 'snapshot changed while read');
        storeDigest.update(buffer);
        storeSize += buffer.length;
        const sealed = sealChunk(captured.storeKey, { backupId, index, final: index === count - 1 }, buffer);
        wipe(buffer);
        chunks.push({ index, size: sealed.length, sha256: sha256Hex(sealed) });
        await putEverywhere(chunkObject(index), sealed);
        if (live.size === 0) break;
      }
    } finally {
      await handle.close();
    }
    if (captured.keyringFile && live.size > 0) await putEverywhere(KEYRING_OBJECT, captured.keyringFile);

    const manifest: KeydBackupManifest = {
      format: KEYD_MANIFEST_FORMAT,
      backupId,
      createdAt: createdAt.toISOString(),
      provider: deps.provider,
      cipher: 'AES-256-GCM',
      chunkSize,
      storeKey: {
        wrapped: captured.wrapped.toString('base64'),
        rootVersion: rootVersionOf(captured.wrapped),
      },
      store: { size: storeSize, sha256: storeDigest.digest('hex') },
      keyring: captured.keyringFile
        ? { size: captured.keyringFile.length, sha256: sha256Hex(captured.keyringFile) }
        : null,
      chunks,
      signer: { keyName: signerKey.keyName, publicKey: signerKey.publicKey.toString('base64') },
    };
    const manifestBytes = canonical(manifest);
    const manifestSha256 = sha256Hex(manifestBytes);
    if (live.size > 0) {
      const { signature, keyName } = await deps.signer.sign(keydManifestStatement(backupId, manifestSha256));
      const signatureBytes = canonical({
        format: KEYD_SIGNATURE_FORMAT,
        keyName,
        manifestSha256,
        signature: signature.toString('base64'),
      });
      await putEverywhere(SIGNATURE_OBJECT, signatureBytes);
      await putEverywhere(MANIFEST_OBJECT, manifestBytes);
    }
  } catch (err) {
    // keyd or the snapshot failed: nothing of this backup may stay behind anywhere.
    for (const d of deps.destinations) await deleteBackup(d.destination, backupId).catch(() => undefined);
    throw err;
  } finally {
    wipe(captured.storeKey);
    await rm(captured.snapshotPath, { force: true });
  }
  if (live.size === 0) {
    throw new BackupError(
      'TRESOR_ERR_BACKUP_FAILED',
      `keyd backup ${backupId}: no destination holds it (${[...failed].map(([n, c]) => `${n}: ${c}`).join(', ')})`,
    );
  }
  return {
    backupId,
    createdAt: createdAt.toISOString(),
    size: stored,
    destinations: deps.destinations.map((d) =>
      failed.has(d.name)
        ? { destination: d.name, ok: false, error: failed.get(d.name) }
        : { destination: d.name, ok: true },
    ),
  };
}
