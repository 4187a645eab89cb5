/**
 * Restoring a whole deployment from a backup (`tresor restore`): the data folder a server starts on.
 *
 *   1. the backup: the one asked for, else the newest complete one at the destination;
 *   2. keyd's published keys: the backup-manifest key (the manifest's signature) and the audit
 *      checkpoint key (the audit checkpoint's signature);
 *   3. restoreBackup (src/backup/restore.ts) into a hidden sibling of the target: signature, every
 *      chunk's digest, decryption through keyd, every file's digest;
 *   4. the audit log's sealed segments the manifest names (src/backup/audit-segments.ts): each present
 *      at the destination, its manifest the one named, and opened whole (signature, every tile's
 *      digests and decryption through keyd, every entry, the root); a missing or tampered one refuses
 *      the restore naming it;
 *   5. the restored audit log verified against the checkpoint the manifest carries (restored-audit.ts):
 *      every entry the checkpoint covers is there, unchanged, and its tree's root is the signed one;
 *      a pruned log's entries below its archived end are read from the segments at the destination
 *      restored from (verify-archived.ts);
 *   6. the segments copied, byte for byte, to the restored deployment's own destinations that lack
 *      them (`segmentDestinations`: the config's), so its archiver finds them there;
 *   7. keyd's remembered checkpoint tree set back to the backup's checkpoint (an admin operation):
 *      keyd signs only extensions of the last tree it signed, which is past the backup, and the
 *      restored log goes on from the backup's checkpoint — a fork of the entries signed after it,
 *      which keyd logs (docs/keyd.md, "Restoring a deployment");
 *   8. only then the hidden folder renamed to the target (rename(2), atomic; it replaces only an
 *      empty folder).
 *
 * A target that exists and is not empty is refused before anything is read; any failure removes the
 * hidden folder: the target is either the whole checked backup or untouched, never a half-restored
 * data folder a server could start on. It lives here, not in src/backup/, because it reads the audit
 * log (a floor above backups' own code would only hand it in).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { parseCheckpoint } from '../audit/checkpoint.ts';
import { parseNote } from '../audit/note.ts';
import {
  BackupError,
  type BackupManifest,
  checkSegments,
  copySegments,
  type Destination,
  listBackups,
  type ManifestKey,
  refuseNonEmpty,
  restoreBackup,
  syncFolder,
  targetNotEmpty,
} from '../backup/index.ts';
import type { KeyService } from '../keyd/operations.ts';
import { signingKeyName } from '../keyd/signing.ts';
import { CONTROL_SCHEMA, controlStorePath, openControlStore } from './control-store.ts';
import {
  dropPgSchemas,
  loadBackupIntoPg,
  pgDatabaseEmptyAt,
  pgTargetNotEmpty,
} from './pg-restore-database.ts';
import {
  backupVerifierKeys,
  checkRestoredAuditLog,
  checkRestoredLog,
  pgRestoredLog,
  type RestoredLogArchive,
} from './restored-audit.ts';

export interface RestoreDeploymentOptions {
  destination: Destination;
  /** The backup to restore; default the newest complete one at the destination. */
  backupId?: string;
  keys: KeyService;
  /** The data folder to create: must not exist, or be an empty folder. */
  target: string;
  /** The restored deployment's backup destinations: the backup's audit segments are copied there. */
  segmentDestinations?: readonly Destination[];
}

/** The backup's sealed audit segments: how many were checked, and which were copied where. */
export interface RestoredSegments {
  checked: number;
  copied: { destination: string; segments: string[] }[];
}

export interface RestoredAudit {
  /** Entries in the restored log. */
  size: number;
  /** The tree size of the manifest's checkpoint: every entry before it verified against its root. */
  checkpointSize: number;
}

export interface DeploymentRestoreResult {
  backupId: string;
  createdAt: string;
  destination: string;
  target: string;
  files: number;
  chunks: number;
  plaintextBytes: number;
  /** The backup's tenants; `keyShredded`: keyd has destroyed its key since (closed after the backup). */
  tenants: { id: string; state: string; keyShredded: boolean }[];
  audit: RestoredAudit;
  auditSegments: RestoredSegments;
}

/** The id of the newest complete backup at the destination; TRESOR_ERR_BACKUP_NOT_FOUND when none. */
export async function newestCompleteBackup(destination: Destination): Promise<string> {
  const newest = (await listBackups(destination)).filter((b) => b.complete).at(-1);
  if (newest === undefined) {
    throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `${destination.name} holds no complete backup`);
  }
  return newest.id;
}

export async function restoreDeployment(options: RestoreDeploymentOptions): Promise<DeploymentRestoreResult> {
  const target = resolve(options.target);
  await refuseNonEmpty(target);
  const backupId = options.backupId ?? (await newestCompleteBackup(options.destination));
  const { manifestKey, auditPublicKey } = await backupVerifierKeys(options.keys);
  const checking = join(dirname(target), `.${basename(target)}.checking-${randomBytes(6).toString('hex')}`);
  try {
    const restored = await restoreBackup({
      destination: options.destination,
      backupId,
      keys: options.keys,
      manifestKey,
      target: checking,
    });
    const checked = await checkBackupSegments(options, restored.manifest, manifestKey);
    const audit = await checkRestoredAuditLog(checking, restored.manifest, auditPublicKey, {
      archive: restoredArchive(options, manifestKey),
    });
    if (!audit.ok) {
      throw new BackupError(
        'TRESOR_ERR_BACKUP_INVALID',
        `backup ${backupId} refused: its audit log does not hold against its checkpoint (${audit.problems[0]?.message ?? 'no detail'})`,
      );
    }
    await markRestoredOutboxes(checking, restored.manifest.tenants);
    const copied = await carrySegments(options, restored.manifest);
    await resetKeydCheckpointTree(options.keys, restored.manifest.auditCheckpoint);
    await refuseNonEmpty(target); // filled meanwhile? then leave it alone
    try {
      await rename(checking, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') throw targetNotEmpty(target);
      throw err;
    }
    await syncFolder(dirname(target));
    return {
      backupId,
      createdAt: restored.createdAt,
      destination: restored.destination,
      target,
      files: restored.files,
      chunks: restored.chunks,
      plaintextBytes: restored.plaintextBytes,
      tenants: await withKeyState(options.keys, restored.manifest.tenants),
      audit: { size: audit.size, checkpointSize: audit.checkpointSize },
      auditSegments: { checked, copied },
    };
  } catch (err) {
    await rm(checking, { recursive: true, force: true });
    throw err;
  }
}

export interface PgDeploymentRestoreOptions {
  destination: Destination;
  backupId?: string;
  keys: KeyService;
  /** The EMPTY database to restore into (password included: for the client only). */
  databaseUrl: string;
  /** The same URL as messages show it (password redacted). */
  shown: string;
  /** A private folder for the decrypted files while they load (default the system's temp folder). */
  scratchDir?: string;
  /** The restored deployment's backup destinations: the backup's audit segments are copied there. */
  segmentDestinations?: readonly Destination[];
}

/**
 * A PostgreSQL deployment's backup restored into an empty database (`tresor restore` with
 * `database.url`): the same steps as into a folder, the load in place of the rename.
 *
 *   1. the database refused unless empty, before anything is read;
 *   2. restoreBackup into a private scratch folder (0700, removed after): signature, every chunk's
 *      digest, decryption through keyd, every file's digest; then the backup's audit segments, as
 *      for a folder;
 *   3. loadBackupIntoPg (pg-restore-database.ts): schemas migrated to each file's version, the rows
 *      loaded in one transaction, sequences set, the tenants marked pending;
 *   4. the restored audit log read from the database and verified against the manifest's checkpoint;
 *   5. the segments copied to the restored deployment's destinations; keyd's checkpoint tree set back
 *      to the backup's checkpoint.
 *
 * A failure at 3 or 4 drops every schema the restore made: the database is left empty.
 */
export async function restoreDeploymentToPg(
  options: PgDeploymentRestoreOptions,
): Promise<DeploymentRestoreResult> {
  if (!(await pgDatabaseEmptyAt(options.databaseUrl))) throw pgTargetNotEmpty(options.shown);
  const backupId = options.backupId ?? (await newestCompleteBackup(options.destination));
  const { manifestKey, auditPublicKey } = await backupVerifierKeys(options.keys);
  const scratch = await mkdtemp(join(options.scratchDir ?? tmpdir(), 'tresor-restore-'));
  let loaded: string[] = [];
  try {
    const files = join(scratch, 'files');
    const restored = await restoreBackup({
      destination: options.destination,
      backupId,
      keys: options.keys,
      manifestKey,
      target: files,
      durable: false,
    });
    const checked = await checkBackupSegments(options, restored.manifest, manifestKey);
    loaded = (
      await loadBackupIntoPg({
        url: options.databaseUrl,
        shown: options.shown,
        manifest: restored.manifest,
        folder: files,
      })
    ).schemas;
    await rm(files, { recursive: true, force: true }); // the plaintext files go as soon as they are loaded
    const audit = await checkRestoredLog(
      pgRestoredLog({ url: options.databaseUrl, shown: options.shown, schema: CONTROL_SCHEMA }),
      restored.manifest,
      auditPublicKey,
      { archive: restoredArchive(options, manifestKey) },
    );
    if (!audit.ok) {
      throw new BackupError(
        'TRESOR_ERR_BACKUP_INVALID',
        `backup ${backupId} refused: its audit log does not hold against its checkpoint (${audit.problems[0]?.message ?? 'no detail'})`,
      );
    }
    const copied = await carrySegments(options, restored.manifest);
    await resetKeydCheckpointTree(options.keys, restored.manifest.auditCheckpoint);
    return {
      backupId,
      createdAt: restored.createdAt,
      destination: restored.destination,
      target: options.shown,
      files: restored.files,
      chunks: restored.chunks,
      plaintextBytes: restored.plaintextBytes,
      tenants: await withKeyState(options.keys, restored.manifest.tenants),
      audit: { size: audit.size, checkpointSize: audit.checkpointSize },
      auditSegments: { checked, copied },
    };
  } catch (err) {
    if (loaded.length > 0) await dropPgSchemas(options.databaseUrl, loaded).catch(() => undefined);
    throw err;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Step 5's archive: a pruned log's entries [0, E) are read back from the segments at the
 * destination restored from (the ones step 4 opened, checked again as `tresor audit verify` does).
 */
function restoredArchive(
  options: { destination: Destination; keys: KeyService },
  manifestKey: ManifestKey,
): RestoredLogArchive {
  return { destinations: [options.destination], keys: options.keys, key: manifestKey };
}

/** Step 4: every segment the backup names, opened whole at the destination restored from. */
function checkBackupSegments(
  options: { destination: Destination; keys: KeyService },
  manifest: BackupManifest,
  manifestKey: ManifestKey,
): Promise<number> {
  return checkSegments({
    destination: options.destination,
    manifest,
    keys: options.keys,
    manifestKey,
    depth: 'open',
  });
}

/** Step 6: the named segments copied to each of the restored deployment's destinations lacking them. */
async function carrySegments(
  options: { destination: Destination; segmentDestinations?: readonly Destination[] | undefined },
  manifest: BackupManifest,
): Promise<RestoredSegments['copied']> {
  const copied: RestoredSegments['copied'] = [];
  for (const to of options.segmentDestinations ?? []) {
    const segments = await copySegments(
      options.destination,
      to,
      manifest.backupId,
      manifest.auditSegments ?? [],
    );
    copied.push({ destination: to.name, segments });
  }
  return copied;
}

/**
 * The backup copied the control store and each tenant's store one after another, so a tenant's
 * outbox may hold events whose pending mark (src/audit/pending-sources.ts) the control store's copy
 * lacks: every restored tenant whose store may exist is marked, and the first start looks at each
 * once, as starts did before the marks.
 */
async function markRestoredOutboxes(folder: string, tenants: readonly { id: string; state: string }[]) {
  const live = tenants.filter((t) => t.state === 'active' || t.state === 'closing').map((t) => t.id);
  const control = await openControlStore(controlStorePath(folder), { fileMustExist: true });
  try {
    await control.write(async (trx) => {
      await trx.deleteFrom('audit_pending_sources').execute();
      for (const id of live) await trx.insertInto('audit_pending_sources').values({ source: id }).execute();
    });
  } finally {
    await control.close();
  }
}

/**
 * Sets keyd's checkpoint tree to a checkpoint keyd signed (`note`, a signed note): the backup's, at a
 * restore; the live log's latest, when a restore drill against the production keyd is over.
 */
export async function resetKeydCheckpointTree(keys: KeyService, note: string): Promise<void> {
  const { text, signatures } = parseNote(note);
  const { origin, size, rootHash } = parseCheckpoint(text);
  // The log's key is named by its origin; checkpoints of earlier versions by keyd's label.
  const own =
    signatures.find((s) => s.name === origin) ??
    signatures.find((s) => s.name === signingKeyName('audit-checkpoint'));
  if (own === undefined) {
    throw new BackupError(
      'TRESOR_ERR_BACKUP_INVALID',
      "the backup's audit checkpoint carries no signature of keyd's",
    );
  }
  await keys.call('resetCheckpointTree', { origin, size, rootHash, signature: own.signature });
}

/**
 * Each tenant with whether keyd still holds its key. A tenant closed after the backup is in it as it
 * was then, but its key is shredded: its records can never be read again, and restore says so.
 */
async function withKeyState(
  keys: KeyService,
  tenants: readonly { id: string; state: string }[],
): Promise<DeploymentRestoreResult['tenants']> {
  const out: DeploymentRestoreResult['tenants'] = [];
  for (const t of tenants) {
    let keyShredded = false;
    if (t.state !== 'closed') {
      const status = await keys.call('tenantKeyStatus', { tenant: t.id }).catch((err: { code?: string }) => {
        if (err.code === 'TRESOR_ERR_TENANT_KEY_UNKNOWN') return undefined; // never had one (provisioning)
        throw err;
      });
      keyShredded = status?.state === 'destroyed';
    }
    out.push({ ...t, keyShredded });
  }
  return out;
}
