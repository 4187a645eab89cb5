/**
 * Reading a stored backup back, checking everything on the way; verification (verifyBackup) and
 * restore (restore.ts) are this same pass, the one with a sink that writes the files.
 *
 *   1. the manifest and its signature object; the signature under keyd's published key, before any
 *      other byte of the backup is trusted (manifest.ts);
 *   2. the data key, unwrapped by keyd for exactly this backup id (a backup alone cannot be read);
 *   3. every chunk in order: present, its size and SHA-256 as listed, decrypting at its place with
 *      the final flag on the last one only (chunk-cipher.ts), of the length the file sizes imply;
 *   4. every file's plaintext SHA-256 as listed; no object in the backup's folder that the manifest
 *      does not name.
 *
 * The first check that fails ends the pass with TRESOR_ERR_BACKUP_INVALID naming it.
 */
import { createHash } from 'node:crypto';
import { wipe } from '../crypto/index.ts';
import { KeydError } from '../keyd/errors.ts';
import type { KeyService } from '../keyd/operations.ts';
import { isBackupId } from '../objects/backup-id.ts';
import { openChunk } from '../objects/chunk-cipher.ts';
import { type Destination, MANIFEST_OBJECT, SIGNATURE_OBJECT, sha256Hex } from '../objects/destination.ts';
import { BackupError, invalidBackup } from './errors.ts';
import {
  type BackupManifest,
  chunkObject,
  type ManifestFile,
  type ManifestKey,
  openManifest,
} from './manifest.ts';

/** Receives the decrypted files, in manifest order; each write() only after the chunk checked out. */
export interface FileSink {
  begin(file: ManifestFile): Promise<void>;
  write(bytes: Buffer): Promise<void>;
  /** Called once the file's bytes are all there and its digest matched. */
  end(file: ManifestFile): Promise<void>;
}

export interface ReadBackupOptions {
  destination: Destination;
  backupId: string;
  keys: KeyService;
  /** keyd's backup-manifest key, as published (keyd's publicKey operation, purpose backup-manifest). */
  manifestKey: ManifestKey;
}

export interface BackupVerification {
  backupId: string;
  createdAt: string;
  destination: string;
  files: number;
  chunks: number;
  plaintextBytes: number;
  manifest: BackupManifest;
}

/** Checks a stored backup end to end without writing anything. */
export function verifyBackup(options: ReadBackupOptions): Promise<BackupVerification> {
  return readBackup(options);
}

export async function readBackup(options: ReadBackupOptions, sink?: FileSink): Promise<BackupVerification> {
  const { destination, backupId } = options;
  const { manifest, key } = await openBackup(options);
  try {
    await readChunks({ manifest, key, chunk: (index) => fetchChunk(destination, backupId, index), sink });
  } finally {
    wipe(key);
  }
  return backupVerification(manifest, destination.name);
}

/**
 * Steps 1 and 2, and what can be checked before any chunk is read: the manifest and its signature,
 * no object in the backup's folder that the manifest does not name, as many chunks as its files
 * need; then the data key, unwrapped by keyd. The caller wipes the key.
 */
export async function openBackup(
  options: ReadBackupOptions,
): Promise<{ manifest: BackupManifest; key: Buffer }> {
  const { destination, backupId, keys } = options;
  if (!isBackupId(backupId)) throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', 'not a backup id');
  const manifest = await readManifest(options);
  const refuse = (why: string) => invalidBackup(backupId, why);

  const expected = new Set([`${backupId}/${MANIFEST_OBJECT}`, `${backupId}/${SIGNATURE_OBJECT}`]);
  for (const c of manifest.chunks) expected.add(chunkObject(backupId, c.index));
  for (const key of await destination.list(`${backupId}/`)) {
    if (!expected.has(key)) throw refuse(`${key} is not part of the backup`);
  }

  const count = chunkCount(manifest);
  if (manifest.chunks.length !== count) {
    throw refuse(`the manifest lists ${manifest.chunks.length} chunks where its files need ${count}`);
  }
  return { manifest, key: await unwrapKey(keys, manifest) };
}

/** One stored chunk's bytes; a missing one refuses the backup as truncated. */
export async function fetchChunk(destination: Destination, backupId: string, index: number): Promise<Buffer> {
  try {
    return await destination.get(chunkObject(backupId, index));
  } catch (err) {
    if (err instanceof BackupError && err.code === 'TRESOR_ERR_BACKUP_NOT_FOUND') {
      throw invalidBackup(backupId, `chunk ${index} is missing (a truncated backup)`);
    }
    throw err;
  }
}

/**
 * Steps 3 and 4 on a backup that openBackup accepted, with its data key: every chunk in order
 * (`chunk` fetches one's stored bytes), checked, decrypted and fed to the sink file by file, every
 * file's digest checked. No I/O of its own but the sink's, so it runs on any thread (the trial
 * restore's worker, src/server/backup-trial-worker.ts, which is handed the chunks).
 */
export async function readChunks(pass: {
  manifest: BackupManifest;
  key: Buffer;
  chunk: (index: number) => Promise<Buffer>;
  sink?: FileSink | undefined;
}): Promise<void> {
  const { manifest, key } = pass;
  const backupId = manifest.backupId;
  const refuse = (why: string) => invalidBackup(backupId, why);
  const count = chunkCount(manifest);
  const files = new FileCursor(manifest, pass.sink, refuse);
  let remaining = plaintextBytes(manifest);
  for (const chunk of manifest.chunks) {
    const stored = await pass.chunk(chunk.index);
    if (stored.length !== chunk.size || sha256Hex(stored) !== chunk.sha256) {
      throw refuse(`chunk ${chunk.index} does not match its digest`);
    }
    const final = chunk.index === count - 1;
    const plaintext = openChunk(key, { backupId, index: chunk.index, final }, stored);
    if (plaintext.length !== Math.min(manifest.chunkSize, remaining)) {
      throw refuse(`chunk ${chunk.index} holds ${plaintext.length} bytes, not the expected size`);
    }
    remaining -= plaintext.length;
    await files.feed(plaintext);
    wipe(plaintext);
  }
  await files.finish();
}

/** What a pass that held reports of the backup. */
export function backupVerification(manifest: BackupManifest, destination: string): BackupVerification {
  return {
    backupId: manifest.backupId,
    createdAt: manifest.createdAt,
    destination,
    files: manifest.files.length,
    chunks: manifest.chunks.length,
    plaintextBytes: plaintextBytes(manifest),
    manifest,
  };
}

function plaintextBytes(manifest: BackupManifest): number {
  return manifest.files.reduce((sum, f) => sum + f.size, 0);
}

function chunkCount(manifest: BackupManifest): number {
  return Math.max(1, Math.ceil(plaintextBytes(manifest) / manifest.chunkSize));
}

/** The backup's manifest, its signature checked; TRESOR_ERR_BACKUP_NOT_FOUND for a missing or incomplete backup. */
export async function readManifest(options: ReadBackupOptions): Promise<BackupManifest> {
  const { destination, backupId, manifestKey } = options;
  const get = async (object: string): Promise<Buffer> => {
    try {
      return await destination.get(`${backupId}/${object}`);
    } catch (err) {
      if (err instanceof BackupError && err.code === 'TRESOR_ERR_BACKUP_NOT_FOUND') {
        const any = (await destination.list(`${backupId}/`)).length > 0;
        throw new BackupError(
          'TRESOR_ERR_BACKUP_NOT_FOUND',
          any
            ? `backup ${backupId} at ${destination.name} is incomplete: it has no ${object}`
            : `no backup ${backupId} at ${destination.name}`,
        );
      }
      throw err;
    }
  };
  const bytes = await get(MANIFEST_OBJECT);
  const signature = await get(SIGNATURE_OBJECT);
  return openManifest(backupId, bytes, signature, manifestKey);
}

async function unwrapKey(keys: KeyService, manifest: BackupManifest): Promise<Buffer> {
  try {
    const { key } = await keys.call('unwrapBackupDataKey', {
      backupId: manifest.backupId,
      keyId: manifest.dataKey.keyId,
      wrapped: Buffer.from(manifest.dataKey.wrapped, 'base64'),
    });
    return key;
  } catch (err) {
    if (
      err instanceof KeydError &&
      (err.code === 'TRESOR_ERR_WRAPPED_KEY_INVALID' || err.code === 'TRESOR_ERR_REQUEST_INVALID')
    ) {
      throw invalidBackup(manifest.backupId, `keyd does not open its data key (${err.code})`);
    }
    throw err; // sealed or unreachable keyd: say so as it is
  }
}

/** Splits the plaintext stream into the manifest's files, hashing each. */
class FileCursor {
  #index = -1;
  #left = 0;
  #hash = createHash('sha256');

  constructor(
    readonly manifest: BackupManifest,
    readonly sink: FileSink | undefined,
    readonly refuse: (why: string) => BackupError,
  ) {}

  async feed(bytes: Buffer): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      while (this.#left === 0) await this.#next();
      const part = bytes.subarray(offset, offset + Math.min(this.#left, bytes.length - offset));
      this.#hash.update(part);
      await this.sink?.write(part);
      this.#left -= part.length;
      offset += part.length;
    }
  }

  async finish(): Promise<void> {
    // Close the last file with bytes, then any empty files after it.
    while (this.#index < this.manifest.files.length - 1 || this.#left > 0) {
      if (this.#left > 0) throw this.refuse('the chunks end before the last file');
      await this.#next();
    }
    await this.#close();
  }

  async #next(): Promise<void> {
    await this.#close();
    this.#index += 1;
    const file = this.manifest.files[this.#index];
    if (file === undefined) throw this.refuse('the chunks hold more bytes than the files');
    this.#left = file.size;
    this.#hash = createHash('sha256');
    await this.sink?.begin(file);
  }

  async #close(): Promise<void> {
    const file = this.manifest.files[this.#index];
    if (file === undefined) return;
    if (this.#hash.digest('hex') !== file.sha256) throw this.refuse(`${file.name} does not match its digest`);
    await this.sink?.end(file);
  }
}
