/**
 * Restoring one tenant into the running system from a backup (docs/backup.md "Restoring one
 * tenant"). Two steps, so the HTTP route can answer early refusals at once and run the long part in
 * the background (tenant-restore-runs.ts):
 *
 *   planTenantRestore   the tenant must be `active` (closing: its key is pending destruction, cancel
 *                       the close first; closed: its key is shredded, refused as such; provisioning:
 *                       not yet a tenant); the backup (named, or the newest holding the tenant's
 *                       store) at the named destination or the first configured one holding it (a
 *                       destination that cannot be listed is passed over; a manifest that does not
 *                       check out is refused, never passed over for another copy); its manifest's
 *                       signature under keyd's key; the tenant's store in it.
 *   runTenantRestore    1. the backup's audit checkpoint signed by keyd for the live log's origin and
 *                          consistent with the live log: its tree is a prefix of the live tree (same
 *                          root at its size), so the backup belongs to this deployment's history;
 *                       2. the whole backup read and checked (signature, every chunk's digest,
 *                          decryption, every file's digest: read-backup.ts), only the tenant's file
 *                          written, into a scratch file beside the live store;
 *                       3. that file checked (tenant-restore-file.ts): opens and migrates, quick_check,
 *                          every data key unwraps through keyd (a shredded key is refused here);
 *                       4. swapped in (TenantStores.replace): requests for the tenant wait while the
 *                          live store is closed, the tenant re-checked `active`, the outbox and key
 *                          reservations carried forward and the restore's audit event appended in the
 *                          new file, which is then renamed over the live one;
 *                       5. the tenant's cached keys forgotten, the sequencer told.
 *                       Any failure removes the scratch file and records the failed restore in the
 *                       control store's outbox (under the tenant, so it sees it): the live store is
 *                       untouched until the rename, so there is never a half-restored store.
 *
 * On PostgreSQL (`deps.pg`) the same steps with a scratch schema instead of a scratch file
 * (tenant-restore-pg.ts): the tenant's schema file written to the backup scratch folder and loaded
 * into `tresor_restore_<random>`, checked there, and swapped in by PgTenantStores.replace in one
 * transaction (carry forward, DROP SCHEMA, ALTER SCHEMA … RENAME); any failure drops the scratch.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { verifyCheckpoint } from '../audit/checkpoint.ts';
import type { AuditEvent } from '../audit/event.ts';
import { parseVerifierKey } from '../audit/note.ts';
import { TresorError } from '../errors.ts';
import type { KeyService } from '../keyd/operations.ts';
import type { ConfiguredDestination } from '../objects/configured-destinations.ts';
import { type Destination, listBackups } from '../objects/destination.ts';
import { syncFolder } from '../objects/restore-target.ts';
import type { SwapTransaction } from '../store/types.ts';
import type { TenantState } from '../vault/vault-control-schema.ts';
import { BackupError } from './errors.ts';
import type { BackupManifest, ManifestFile, ManifestKey } from './manifest.ts';
import { readBackup, readManifest } from './read-backup.ts';
import {
  carryForward,
  checkRestoredStore,
  type RestoredStoreCheck,
  refused,
  shredded,
} from './tenant-restore-file.ts';
import {
  carryForwardPg,
  checkScratchSchema,
  prepareScratchSchema,
  type ScratchSchema,
} from './tenant-restore-pg.ts';

export interface TenantRestoreDeps {
  keys: KeyService;
  manifestKey(): Promise<ManifestKey>;
  destinations: readonly ConfiguredDestination[];
  /** The tenant's state in the control store now; undefined for an unknown tenant. */
  tenantState(tenant: string): Promise<TenantState | undefined>;
  /** The live audit log: its origin, published verifier key, size and root at a size. */
  liveLog: {
    origin: string;
    verifierKey(): Promise<string>;
    size(): number;
    rootAt(size: number): Promise<Buffer>;
  };
  /** The tenant store registry (src/store/sqlite/tenant-stores.ts, src/store/pg/tenant-stores.ts). */
  stores: {
    /** SQLite: a scratch file's path beside the live one; PostgreSQL: a scratch schema's name. */
    scratchPath(tenant: string): Promise<string>;
    replace(
      tenant: string,
      scratch: string,
      beforeSwap: (live: string, swap: SwapTransaction | undefined) => Promise<void>,
    ): Promise<void>;
  };
  /**
   * PostgreSQL: the database (its URL: never in a message) the scratch schema is made in, and the
   * folder the tenant's schema file is written to before it is loaded. Absent on SQLite.
   */
  pg?: { url: string; scratchDir: string };
  /** Drops every cache of the tenant's keys (the data keyring's). */
  forget(tenant: string): void;
  /** Tells the sequencer the tenant's outbox has events. */
  notify(tenant: string): void;
  /** Appends an event to the control store's outbox (a failed restore). */
  record(event: AuditEvent): Promise<void>;
  clock: () => Date;
}

export interface TenantRestoreRequest {
  tenant: string;
  backupId?: string;
  /** A configured destination's name; default the first that holds the backup. */
  destination?: string;
}

export interface TenantRestorePlan {
  tenant: string;
  backupId: string;
  createdAt: string;
  destination: Destination;
  manifest: BackupManifest;
  file: ManifestFile;
}

export interface TenantRestoreResult {
  tenant: string;
  backupId: string;
  backupCreatedAt: string;
  destination: string;
  records: number;
  collections: number;
  /** Entries of the live log the backup's checkpoint is a prefix of. */
  checkpointSize: number;
}

export async function planTenantRestore(
  deps: TenantRestoreDeps,
  request: TenantRestoreRequest,
): Promise<TenantRestorePlan> {
  const { tenant } = request;
  await requireActive(deps, tenant);
  let candidates = deps.destinations;
  if (request.destination !== undefined) {
    candidates = deps.destinations.filter((d) => d.name === request.destination);
    if (candidates.length === 0)
      throw new BackupError('TRESOR_ERR_NOT_FOUND', `no backup destination is named ${request.destination}`);
  }
  const manifestKey = await deps.manifestKey();
  const options = (destination: Destination, backupId: string) => ({
    destination,
    backupId,
    keys: deps.keys,
    manifestKey,
  });
  // Every complete backup at each candidate, in the config's order; a destination that cannot be
  // listed is passed over (another may hold the backup), and named if none does.
  const holders = new Map<string, Destination[]>();
  let unreachable: unknown;
  for (const { destination } of candidates) {
    let listed: Awaited<ReturnType<typeof listBackups>>;
    try {
      listed = await listBackups(destination);
    } catch (err) {
      unreachable ??= err;
      continue;
    }
    for (const b of listed) {
      if (!b.complete || (request.backupId !== undefined && b.id !== request.backupId)) continue;
      holders.set(b.id, [...(holders.get(b.id) ?? []), destination]);
    }
  }
  // Newest first; each backup from the first destination holding it. A manifest that does not check
  // out there is refused, not passed over for another copy: tampering is reported, never hidden.
  for (const backupId of [...holders.keys()].sort((a, b) => (a < b ? 1 : -1))) {
    const destination = holders.get(backupId)?.[0] as Destination;
    const manifest = await readManifest(options(destination, backupId)).catch((err: unknown) => {
      throw asRefusal(err);
    });
    const file = manifest.files.find((f) => f.kind === 'tenant' && f.tenant === tenant);
    if (file === undefined) {
      if (request.backupId === undefined) continue;
      const listedTenant = manifest.tenants.find((t) => t.id === tenant);
      throw new BackupError(
        'TRESOR_ERR_NOT_FOUND',
        listedTenant
          ? `backup ${backupId} holds no store of tenant ${tenant} (it was ${listedTenant.state} then)`
          : `backup ${backupId} holds no tenant ${tenant} (taken before the tenant was created)`,
      );
    }
    return { tenant, backupId, createdAt: manifest.createdAt, destination, manifest, file };
  }
  if (unreachable !== undefined) throw unreachable;
  throw new BackupError(
    'TRESOR_ERR_BACKUP_NOT_FOUND',
    request.backupId !== undefined
      ? `no complete backup ${request.backupId} at ${candidates.map((d) => d.name).join(', ') || 'any destination'}`
      : `no complete backup holding tenant ${tenant} at ${candidates.map((d) => d.name).join(', ') || 'any destination'}`,
  );
}

/** Runs a plan; `actor` is the requester's audit event (who, request id), completed with the result. */
export async function runTenantRestore(
  deps: TenantRestoreDeps,
  plan: TenantRestorePlan,
  actor: AuditEvent,
  /** Aborted when the server stops: the restore ends before its swap, having changed nothing. */
  signal?: AbortSignal,
): Promise<TenantRestoreResult> {
  const { tenant, backupId } = plan;
  const target = { backupId, destination: plan.destination.name };
  const stopping = () => {
    if (signal?.aborted)
      throw new TresorError('TRESOR_ERR_UNAVAILABLE', 'the server is stopping: the restore was not finished');
  };
  let scratch: string | undefined;
  /** PostgreSQL: the tenant's schema file, written here to be loaded, and the scratch schema it fills. */
  let schemaFile: string | undefined;
  let scratchSchema: ScratchSchema | undefined;
  try {
    const backend = deps.pg ? 'postgres' : 'sqlite';
    if (plan.manifest.backend !== backend)
      throw refused(
        `backup ${backupId} was taken on ${plan.manifest.backend}; this server runs on ${backend}`,
      );
    const checkpointSize = await checkAgainstLiveLog(deps, plan);
    scratch = await deps.stores.scratchPath(tenant);
    let checked: RestoredStoreCheck;
    if (deps.pg) {
      await mkdir(deps.pg.scratchDir, { recursive: true, mode: 0o700 });
      schemaFile = join(deps.pg.scratchDir, `tenant-restore-${randomBytes(6).toString('hex')}.pgs`);
      await extractTenantFile(deps, plan, schemaFile, stopping);
      stopping();
      scratchSchema = await prepareScratchSchema({
        url: deps.pg.url,
        schema: scratch,
        path: schemaFile,
        file: plan.file,
      });
      await rm(schemaFile, { force: true });
      schemaFile = undefined;
      stopping();
      checked = await checkScratchSchema(scratchSchema, tenant, deps.keys);
    } else {
      await extractTenantFile(deps, plan, scratch, stopping);
      stopping();
      checked = await checkRestoredStore(scratch, tenant, deps.keys);
    }
    stopping();
    const event: AuditEvent = {
      ...actor,
      at: deps.clock().toISOString(),
      tenant,
      action: 'tenant.restore',
      outcome: 'success',
      target: { ...target, backupCreatedAt: plan.createdAt, records: checked.records },
    };
    const prepared = scratch;
    await deps.stores.replace(tenant, prepared, async (live, swap) => {
      // Closed (or closing) since the plan: the close wins, nothing is swapped in.
      await requireActive(deps, tenant);
      if (swap !== undefined) await carryForwardPg(swap, prepared, live, event);
      else carryForward(prepared, live, event);
    });
    scratch = undefined; // renamed into place
    await scratchSchema?.close();
    scratchSchema = undefined;
    deps.forget(tenant);
    deps.notify(tenant);
    return {
      tenant,
      backupId,
      backupCreatedAt: plan.createdAt,
      destination: plan.destination.name,
      records: checked.records,
      collections: checked.collections,
      checkpointSize,
    };
  } catch (err) {
    const error = asRefusal(err);
    if (scratchSchema !== undefined) await scratchSchema.drop();
    else if (scratch !== undefined && deps.pg === undefined) await removeScratch(scratch);
    if (schemaFile !== undefined) await rm(schemaFile, { force: true }).catch(() => undefined);
    await deps
      .record({
        ...actor,
        at: deps.clock().toISOString(),
        tenant,
        action: 'tenant.restore',
        outcome: 'failure',
        target: { ...target, error: error instanceof TresorError ? error.code : 'TRESOR_ERR_INTERNAL' },
      })
      .catch(() => undefined);
    throw error;
  }
}

async function requireActive(deps: TenantRestoreDeps, tenant: string): Promise<void> {
  const state = await deps.tenantState(tenant);
  if (state === undefined) throw new BackupError('TRESOR_ERR_NOT_FOUND', `no tenant ${tenant}`);
  if (state === 'closed') throw shredded(tenant);
  if (state === 'closing')
    throw new BackupError(
      'TRESOR_ERR_TENANT_STATE',
      `tenant ${tenant} is closing: its key is pending destruction; cancel the close first (tresor tenant close-cancel), then restore`,
    );
  if (state !== 'active')
    throw new BackupError('TRESOR_ERR_TENANT_STATE', `tenant ${tenant} is ${state}, not active`);
}

/** The backup's checkpoint is keyd's, of this log, and its tree a prefix of the live tree; its size. */
async function checkAgainstLiveLog(deps: TenantRestoreDeps, plan: TenantRestorePlan): Promise<number> {
  const { liveLog } = deps;
  let size: number;
  let root: Uint8Array;
  try {
    const verifier = parseVerifierKey(await liveLog.verifierKey());
    const { checkpoint } = verifyCheckpoint(plan.manifest.auditCheckpoint, [verifier], {
      origin: liveLog.origin,
    });
    size = checkpoint.size;
    root = checkpoint.rootHash;
  } catch {
    throw refused(`backup ${plan.backupId}'s audit checkpoint is not signed by keyd for this log`);
  }
  if (size > liveLog.size())
    throw refused(
      `backup ${plan.backupId}'s audit checkpoint (size ${size}) is ahead of the live log (size ${liveLog.size()}): it is not of this log's history`,
    );
  if (size > 0 && !(await liveLog.rootAt(size)).equals(root))
    throw refused(
      `backup ${plan.backupId}'s audit checkpoint (size ${size}) is not a prefix of the live log: another history`,
    );
  return size;
}

/** The whole backup read and checked; only the tenant's file written to `scratch` (0600, fsynced). */
async function extractTenantFile(
  deps: TenantRestoreDeps,
  plan: TenantRestorePlan,
  scratch: string,
  stopping: () => void,
) {
  let handle: FileHandle | undefined;
  let writing = false;
  try {
    handle = await open(scratch, 'wx', 0o600);
    const digest = createHash('sha256');
    await readBackup(
      {
        destination: plan.destination,
        backupId: plan.backupId,
        keys: deps.keys,
        manifestKey: await deps.manifestKey(),
      },
      {
        async begin(file) {
          writing = file.name === plan.file.name;
        },
        async write(bytes) {
          stopping();
          if (!writing) return;
          digest.update(bytes);
          await handle?.write(bytes);
        },
        async end() {
          writing = false;
        },
      },
    ).catch((err: unknown) => {
      throw asRefusal(err);
    });
    // readBackup checked the file's digest on the stream; this checks what reached the disk's writer.
    if (digest.digest('hex') !== plan.file.sha256) throw refused(`${plan.file.name} was not written whole`);
    await handle.sync();
  } finally {
    await handle?.close();
  }
  await syncFolder(dirname(scratch));
}

async function removeScratch(scratch: string): Promise<void> {
  for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(`${scratch}${suffix}`, { force: true });
}

/** A backup that does not check out is refused (422), not a server fault; other errors as they are. */
function asRefusal(err: unknown): unknown {
  if (err instanceof BackupError && err.code === 'TRESOR_ERR_BACKUP_INVALID')
    return new BackupError('TRESOR_ERR_RESTORE_REFUSED', err.message);
  return err;
}
