/**
 * The deep trial restore run after each backup (issue 16, docs/backup.md "The trial restore"): a
 * backup counts as proven only when it has been brought back and used, not just read.
 *
 *   restore   restoreBackup into a scratch folder: manifest signature, every chunk's digest,
 *             decryption through keyd, every file's digest (src/backup/restore.ts); and each audit
 *             segment the manifest names present at the destination, its manifest the one named
 *             and its keyd signature valid (checkSegments, depth 'signature': nothing decrypted —
 *             `tresor restore` opens them whole);
 *   audit     the restored audit log verified against the checkpoint the manifest carries
 *             (restored-audit.ts, src/audit/verify.ts); a pruned log's entries below its archived
 *             end (E > 0) read back from the segments at the trial's destination through keyd;
 *   stores    the control store and each tenant's store opened as the server opens them, their
 *             migrations run, and SQLite's quick_check on each;
 *   decrypt   a few records per tenant (the oldest `samplesPerTenant`) opened through keyd as the
 *             vault opens them (backup-trial-samples.ts).
 *
 * Where it runs: the first three checks are seconds of synchronous CPU for a large store (AES-GCM
 * and SHA-256 over every byte, SQLite reading every page and every audit leaf), so they run in a
 * worker thread at the lowest CPU priority (backup-trial-scratch.ts, started by
 * backup-trial-thread.ts); on a busy machine the trial
 * then takes longer rather than taking CPU from requests. The event loop keeps what needs keyd or
 * the destination: keyd's published keys, the manifest and its signature, the data key's unwrap
 * (all before the worker starts), fetching each chunk the worker asks for, and the sample
 * decryptions (a few records per tenant, after).
 *
 * A pruned log's audit check is the one exception: the worker, which has neither keyd nor the
 * destination, finds E > 0 in the restored store and asks the event loop to run it (and waits). Here
 * the segments are listed, fetched and opened through keyd (their tiles' digests and AES-GCM: a
 * segment's worth of CPU each), the scratch store's live rows read, and the hashing of every entry
 * and the tree handed to low-priority hashing workers (verifyAuditLogWithArchive, `background`).
 * With E = 0 the worker runs the check itself, as before.
 *
 * Then the scratch folder is removed, whatever happened. The result says, per check, whether it
 * held, what it saw and how long it took; a check after one that failed is not run (`skipped`).
 *
 * The sample decryptions are the system's, not a customer access: nobody sees a value (each is
 * dropped as soon as it decrypted), and they touch a scratch copy that is deleted, not the tenant's
 * live store, so no vault event (record.read) is written. keyd records every data-key unwrap in its
 * operations log, which the server copies into the audit log (system actor `keyd`): the trial's use
 * of tenant keys is audited there, beside the trial's own result.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupError, checkSegments, openBackup } from '../backup/index.ts';
import { wipe } from '../crypto/index.ts';
import { openSqliteStore, type SqliteStore } from '../store/sqlite/store.ts';
import { type TenantDB, tenantStoreMigrations } from '../vault/tenant-store-schema.ts';
import {
  type BackupTrialOptions,
  type BackupTrialResult,
  elapsed,
  TrialChecks,
} from './backup-trial-checks.ts';
import { runPgBackupTrial } from './backup-trial-pg.ts';
import { sampleRecords, type TrialTenantSample } from './backup-trial-samples.ts';
import { type TrialScratchStart, tenantFiles } from './backup-trial-scratch.ts';
import { runTrialWorker, scratchCheckNames } from './backup-trial-thread.ts';
import { backupVerifierKeys, checkRestoredAuditLog, trialAuditDetail } from './restored-audit.ts';

export type {
  BackupTrialOptions,
  BackupTrialResult,
  TrialCheck,
  TrialCheckName,
} from './backup-trial-checks.ts';
export type { TrialTenantSample } from './backup-trial-samples.ts';

const DEFAULT_SAMPLES = 3;

export async function runBackupTrial(options: BackupTrialOptions): Promise<BackupTrialResult> {
  // A PostgreSQL deployment's backup is tried in a scratch database (backup-trial-pg.ts).
  if (options.database !== undefined) return runPgBackupTrial(options, options.database);
  const now = options.now ?? (() => new Date());
  const interrupted = () =>
    new BackupError(
      'TRESOR_ERR_BACKUP_INTERRUPTED',
      `the trial restore of ${options.backupId} was stopped: the server is stopping`,
    );
  if (options.signal?.aborted) throw interrupted();
  const started = now();
  const checks = new TrialChecks();
  const samples: TrialTenantSample[] = [];
  const scratch = await mkdtemp(join(options.scratchDir, `trial-${options.backupId}-`));
  const dataDir = join(scratch, 'data');
  const opened: { close(): Promise<void> }[] = [];

  try {
    // The restore check's first part, here: keyd's keys, the manifest's signature, the data key.
    const t0 = performance.now();
    let start: TrialScratchStart | undefined;
    let archivedAudit: ((end: number) => Promise<string>) | undefined;
    try {
      const verifier = await backupVerifierKeys(options.keys);
      const { manifest, key } = await openBackup({
        destination: options.destination,
        backupId: options.backupId,
        keys: options.keys,
        manifestKey: verifier.manifestKey,
      });
      await checkSegments({
        destination: options.destination,
        manifest,
        keys: options.keys,
        manifestKey: verifier.manifestKey,
        depth: 'signature',
      }).catch((err: unknown) => {
        wipe(key);
        throw err;
      });
      start = { kind: 'start', manifest, key, auditPublicKey: verifier.auditPublicKey, dataDir };
      // A pruned log's audit check, asked by the worker: its segments need keyd and the destination.
      const archive = { destinations: [options.destination], keys: options.keys, key: verifier.manifestKey };
      archivedAudit = async () =>
        trialAuditDetail(
          await checkRestoredAuditLog(dataDir, manifest, verifier.auditPublicKey, {
            background: true,
            archive,
          }),
        );
      if (options.destination.folder !== undefined) start.folder = options.destination.folder;
    } catch (err) {
      checks.fail('restore', err, elapsed(t0));
    }
    if (start) await runTrialWorker(checks, start, options, elapsed(t0), archivedAudit);
    if (options.signal?.aborted) throw interrupted();
    for (const name of scratchCheckNames()) {
      if (checks.list.some((c) => c.name === name)) continue;
      if (checks.failed)
        await checks.run(name, async () => ''); // skipped
      else checks.fail(name, new BackupError('TRESOR_ERR_BACKUP_FAILED', 'the worker did not report it'), 0);
    }

    const manifest = start?.manifest;
    await checks.run('decrypt', async () => {
      // The stores were checked, opened and migrated by the worker: opening them here is cheap.
      const tenantStores = new Map<string, SqliteStore<TenantDB>>();
      for (const file of manifest ? tenantFiles(manifest) : []) {
        const store = await openSqliteStore<TenantDB>(join(dataDir, file.name), tenantStoreMigrations, {
          fileMustExist: true,
          durable: false, // a scratch copy: never fsynced
        });
        opened.push(store);
        tenantStores.set(file.tenant ?? '', store);
      }
      samples.push(
        ...(await sampleRecords(
          options.keys,
          tenantStores,
          options.samplesPerTenant ?? DEFAULT_SAMPLES,
          now,
        )),
      );
      const bad = samples.filter((s) => s.error !== undefined);
      const total = samples.reduce((sum, s) => sum + s.decrypted, 0);
      if (bad.length > 0) {
        throw Object.assign(
          new Error(
            `records of ${bad.length} tenant(s) do not decrypt: ${bad.map((s) => `${s.tenant} (${s.error})`).join(', ')}`,
          ),
          { code: 'TRESOR_ERR_BACKUP_INVALID' },
        );
      }
      return `${total} records of ${samples.length} tenants decrypted through keyd`;
    });
  } finally {
    for (const store of opened) await store.close().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  }
  return {
    backupId: options.backupId,
    destination: options.destination.name,
    ok: checks.list.every((c) => c.status === 'passed'),
    startedAt: started.toISOString(),
    durationMs: now().getTime() - started.getTime(),
    checks: checks.list,
    samples,
  };
}
