/**
 * Taking a backup: snapshot → encrypt in chunks → write to every destination with read-back →
 * manifest signed by keyd, written last.
 *
 *   1. a backup id and a fresh data key from keyd (a sealed keyd fails here, before any work);
 *   2. the audit log's signed checkpoint, then the tenant list, then the store snapshot (so every
 *      entry the checkpoint covers is in the copied control store);
 *   3. the snapshot files as one stream, cut into chunks, each sealed (chunk-cipher.ts) on a worker
 *      thread at a lower CPU priority (chunk-sealer.ts), written to every destination and read back
 *      (putVerified), the digests of the chunk and of its read-back taken on that worker;
 *   4. the audit log's sealed segments that every destination still in the backup holds, contiguous
 *      from entry 0 (audit-segments.ts), named in the manifest with their digests;
 *   5. the manifest, signed by keyd; the signature object, then the manifest, last.
 *
 * A destination that fails is dropped from this backup, its partial objects removed, and reported;
 * the others go on. An abort (options.signal: the server stops) ends it at the next object. If keyd,
 * the snapshot or every destination fails, or the backup is aborted, nothing of the backup
 * stays anywhere and the error is thrown: no partial backup is ever visible as complete.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { wipe } from '../crypto/index.ts';
import type { KeyService } from '../keyd/operations.ts';
import { isBackupId, newBackupId } from '../objects/backup-id.ts';
import { DEFAULT_CHUNK_BYTES } from '../objects/chunk-cipher.ts';
import {
  type Destination,
  deleteBackup,
  MANIFEST_OBJECT,
  type PutDigests,
  putVerified,
  SIGNATURE_OBJECT,
  sha256Hex,
} from '../objects/destination.ts';
import { commonSegments, segmentsAt } from './audit-segments.ts';
import { startChunkSealer } from './chunk-sealer.ts';
import { BackupError } from './errors.ts';
import {
  type BackupManifest,
  chunkObject,
  MANIFEST_FORMAT,
  type ManifestChunk,
  type ManifestSegment,
  type ManifestTenant,
  manifestBytes,
  signManifest,
} from './manifest.ts';
import type { StoreSnapshotter } from './snapshot.ts';

/** What the rest of Tresor hands a backup: the tenants (vault) and the audit checkpoint (audit). */
export interface BackupSource {
  /** Every tenant with its state; `store` says whether its store exists to be copied. */
  tenants(): Promise<(ManifestTenant & { store: boolean })[]>;
  /** The audit log's newest signed checkpoint (C2SP note text). */
  auditCheckpoint(): Promise<string>;
}

export interface CreateBackupOptions {
  keys: KeyService;
  snapshotter: StoreSnapshotter;
  source: BackupSource;
  destinations: readonly Destination[];
  /** A private folder for the snapshot's copies; a fresh subfolder is made and removed. */
  scratchDir: string;
  /** The backup's id, when the caller named it before (newBackupId); default a new one. */
  backupId?: string;
  /** Plaintext bytes per chunk (default 4 MiB). */
  chunkSize?: number;
  now?: () => Date;
  /**
   * Stops the backup at the next object (the server is shutting down): the object being written
   * finishes (so nothing lands after the clean-up), then every object of the backup is removed and
   * TRESOR_ERR_BACKUP_INTERRUPTED is thrown.
   */
  signal?: AbortSignal;
}

export interface DestinationOutcome {
  destination: string;
  ok: boolean;
  /** Why it failed (a catalogue code and a message naming no secret). */
  error?: { code: string; message: string };
}

export interface BackupResult {
  backupId: string;
  createdAt: string;
  files: number;
  chunks: number;
  /** Plaintext bytes of the snapshot, and bytes stored per destination. */
  plaintextBytes: number;
  storedBytes: number;
  /** The SHA-256 (hex) of the signed manifest. */
  manifestSha256: string;
  destinations: DestinationOutcome[];
}

export async function createBackup(options: CreateBackupOptions): Promise<BackupResult> {
  const now = options.now ?? (() => new Date());
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_BYTES;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new RangeError('chunkSize must be positive');
  if (options.destinations.length === 0) {
    throw new BackupError('TRESOR_ERR_BACKUP_FAILED', 'a backup needs at least one destination');
  }
  const started = now();
  const backupId = options.backupId ?? newBackupId(started);
  if (!isBackupId(backupId)) throw new BackupError('TRESOR_ERR_BACKUP_FAILED', 'not a backup id');
  const live = new Map(
    options.destinations.map((d) => [d, { destination: d.name, ok: true } as DestinationOutcome]),
  );
  const dataKey = await options.keys.call('generateBackupDataKey', { backupId });
  const scratch = await mkdtemp(join(options.scratchDir, `snapshot-${backupId}-`));
  try {
    const auditCheckpoint = await options.source.auditCheckpoint();
    const tenants = await options.source.tenants();
    const files = await options.snapshotter.snapshot(
      scratch,
      tenants.filter((t) => t.store).map((t) => t.id),
    );
    const plaintextBytes = files.reduce((sum, f) => sum + f.size, 0);
    const chunks: ManifestChunk[] = [];
    const sealer = startChunkSealer({ files, key: dataKey.key, backupId, chunkSize });
    for await (const sealed of sealer.chunks) {
      chunks.push({ index: sealed.index, size: sealed.stored.length, sha256: sealed.sha256 });
      stopIfAborted(options.signal, backupId);
      // The digests off the event loop: the sealer took the chunk's, and takes each read-back's.
      await writeEverywhere(live, chunkObject(backupId, sealed.index), sealed.stored, backupId, {
        digest: sealed.sha256,
        storedDigest: sealer.storedDigest,
      });
    }
    const auditSegments = await segmentsEverywhere(live, backupId);
    const manifest: BackupManifest = {
      format: MANIFEST_FORMAT,
      backupId,
      createdAt: started.toISOString(),
      backend: options.snapshotter.backend,
      cipher: 'AES-256-GCM',
      chunkSize,
      dataKey: { keyId: dataKey.keyId, wrapped: dataKey.wrapped.toString('base64') },
      auditCheckpoint,
      tenants: tenants.map(({ id, state }) => ({ id, state })),
      files: files.map(({ name, kind, tenant, schemaVersion, size, sha256 }) => ({
        name,
        kind,
        tenant,
        schemaVersion,
        size,
        sha256,
      })),
      chunks,
      // Named only when there are any: a deployment without archiving writes manifests as before.
      ...(auditSegments.length > 0 ? { auditSegments } : {}),
    };
    const bytes = manifestBytes(manifest);
    const signature = await signManifest(options.keys, backupId, bytes);
    stopIfAborted(options.signal, backupId);
    await writeEverywhere(live, `${backupId}/${SIGNATURE_OBJECT}`, signature, backupId);
    stopIfAborted(options.signal, backupId);
    await writeEverywhere(live, `${backupId}/${MANIFEST_OBJECT}`, bytes, backupId);
    return {
      backupId,
      createdAt: manifest.createdAt,
      files: files.length,
      chunks: chunks.length,
      plaintextBytes,
      storedBytes: chunks.reduce((sum, c) => sum + c.size, 0) + signature.length + bytes.length,
      manifestSha256: sha256Hex(bytes),
      destinations: [...live.values()],
    };
  } catch (err) {
    // keyd, the snapshot or every destination failed: remove what was written, then report.
    await Promise.all(options.destinations.map((d) => deleteBackup(d, backupId).catch(() => undefined)));
    throw err;
  } finally {
    wipe(dataKey.key);
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The server is stopping: the backup ends here (its objects are removed by the caller's clean-up). */
function stopIfAborted(signal: AbortSignal | undefined, backupId: string): void {
  if (signal?.aborted) {
    throw new BackupError('TRESOR_ERR_BACKUP_INTERRUPTED', `backup ${backupId}: the server is stopping`);
  }
}

/** The segments every destination still in the backup holds alike; one whose listing fails leaves it. */
async function segmentsEverywhere(
  live: Map<Destination, DestinationOutcome>,
  backupId: string,
): Promise<ManifestSegment[]> {
  const lists: ManifestSegment[][] = [];
  for (const [destination, outcome] of live) {
    if (!outcome.ok) continue;
    try {
      lists.push(await segmentsAt(destination));
    } catch (err) {
      dropDestination(outcome, err);
      await deleteBackup(destination, backupId).catch(() => undefined);
    }
  }
  if (lists.length === 0) throwNoneTook([...live.values()], backupId);
  return commonSegments(lists);
}

function dropDestination(outcome: DestinationOutcome, err: unknown): void {
  const e = err as { code?: unknown; message?: unknown };
  outcome.ok = false;
  outcome.error = {
    code: typeof e.code === 'string' ? e.code : 'TRESOR_ERR_BACKUP_DESTINATION',
    message: typeof e.message === 'string' ? e.message : 'write failed',
  };
}

function throwNoneTook(outcomes: DestinationOutcome[], backupId: string): never {
  throw new BackupError(
    'TRESOR_ERR_BACKUP_FAILED',
    `backup ${backupId}: no destination took it (${outcomes.map((o) => o.error?.message).join('; ')})`,
  );
}

/** Writes an object to every destination still in the backup; one that fails leaves it. */
async function writeEverywhere(
  live: Map<Destination, DestinationOutcome>,
  key: string,
  data: Buffer,
  backupId: string,
  digests: PutDigests = {},
): Promise<void> {
  for (const [destination, outcome] of live) {
    if (!outcome.ok) continue;
    try {
      await putVerified(destination, key, data, digests);
    } catch (err) {
      dropDestination(outcome, err);
      await deleteBackup(destination, backupId).catch(() => undefined);
    }
  }
  const outcomes = [...live.values()];
  if (outcomes.every((o) => !o.ok)) throwNoneTook(outcomes, backupId);
}
