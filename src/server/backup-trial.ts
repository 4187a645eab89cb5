/**
 * The deep trial restore run after each backup (issue 16, docs/backup.md "The trial restore"): a
 * backup counts as proven only when it has been brought back and used, not just read.
 *
 *   restore   restoreBackup into a scratch folder: manifest signature, every chunk's digest,
 *             decryption through keyd, every file's digest (src/backup/restore.ts);
 *   audit     the restored audit log verified against the checkpoint the manifest carries
 *             (restored-audit.ts, src/audit/verify.ts);
 *   stores    the control store and each tenant's store opened as the server opens them, their
 *             migrations run, and SQLite's quick_check on each;
 *   decrypt   a few records per tenant (the oldest `samplesPerTenant`) opened through keyd as the
 *             vault opens them (backup-trial-samples.ts).
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
import {
  type BackupManifest,
  type Destination,
  type ManifestFile,
  quickCheckFiles,
  restoreBackup,
} from '../backup/index.ts';
import type { KeyService } from '../keyd/operations.ts';
import { openSqliteStore, type SqliteStore } from '../store/sqlite/store.ts';
import { type TenantDB, tenantStoreMigrations } from '../vault/tenant-store-schema.ts';
import { sampleRecords, type TrialTenantSample } from './backup-trial-samples.ts';
import { controlStorePath, openControlStore } from './control-store.ts';
import { backupVerifierKeys, checkRestoredAuditLog } from './restored-audit.ts';

export type { TrialTenantSample } from './backup-trial-samples.ts';

export type TrialCheckName = 'restore' | 'audit' | 'stores' | 'decrypt';

export interface TrialCheck {
  name: TrialCheckName;
  /** passed, failed, or skipped because an earlier check failed. */
  status: 'passed' | 'failed' | 'skipped';
  durationMs: number;
  /** What the check saw, or why it failed: counts, codes, names; never a value or a key. */
  detail: string;
}

export interface BackupTrialResult {
  backupId: string;
  destination: string;
  ok: boolean;
  startedAt: string;
  durationMs: number;
  checks: TrialCheck[];
  samples: TrialTenantSample[];
}

export interface BackupTrialOptions {
  destination: Destination;
  backupId: string;
  keys: KeyService;
  /** A private folder; the trial makes a fresh subfolder there and removes it. */
  scratchDir: string;
  /** Records decrypted per tenant (default 3). */
  samplesPerTenant?: number;
  now?: () => Date;
}

const DEFAULT_SAMPLES = 3;

export async function runBackupTrial(options: BackupTrialOptions): Promise<BackupTrialResult> {
  const now = options.now ?? (() => new Date());
  const started = now();
  const checks: TrialCheck[] = [];
  const samples: TrialTenantSample[] = [];
  const scratch = await mkdtemp(join(options.scratchDir, `trial-${options.backupId}-`));
  const dataDir = join(scratch, 'data');
  const opened: { close(): Promise<void> }[] = [];
  let failed = false;

  /** Runs one check unless an earlier one failed; a thrown error fails it with its code and message. */
  const check = async (name: TrialCheckName, fn: () => Promise<string>): Promise<void> => {
    if (failed) {
      checks.push({ name, status: 'skipped', durationMs: 0, detail: 'not run: an earlier check failed' });
      return;
    }
    const t0 = performance.now();
    try {
      const detail = await fn();
      checks.push({ name, status: 'passed', durationMs: elapsed(t0), detail });
    } catch (err) {
      failed = true;
      checks.push({ name, status: 'failed', durationMs: elapsed(t0), detail: describe(err) });
    }
  };

  try {
    let manifest: BackupManifest | undefined;
    let auditPublicKey: Uint8Array = new Uint8Array(0);
    await check('restore', async () => {
      const keys = await backupVerifierKeys(options.keys);
      auditPublicKey = keys.auditPublicKey;
      const restored = await restoreBackup({
        destination: options.destination,
        backupId: options.backupId,
        keys: options.keys,
        manifestKey: keys.manifestKey,
        target: dataDir,
        // A scratch copy, checked and removed: not forced to disk amid the server's own commits.
        durable: false,
      });
      manifest = restored.manifest;
      return `${restored.files} files, ${restored.chunks} chunks, ${restored.plaintextBytes} bytes: signature and every digest hold`;
    });

    await check('audit', async () => {
      if (!manifest) throw new Error('no manifest');
      const audit = await checkRestoredAuditLog(dataDir, manifest, auditPublicKey, { background: true });
      if (!audit.ok) {
        const first = audit.problems[0];
        throw Object.assign(
          new Error(
            `the restored log (${audit.size} entries) does not hold against the backup's checkpoint of size ${audit.checkpointSize}: ${first?.kind ?? 'problem'}: ${first?.message ?? ''}`,
          ),
          { code: 'TRESOR_ERR_BACKUP_INVALID' },
        );
      }
      return `${audit.size} entries; the checkpoint of size ${audit.checkpointSize} verifies against the restored tree`;
    });

    const tenantStores = new Map<string, SqliteStore<TenantDB>>();
    await check('stores', async () => {
      if (!manifest) throw new Error('no manifest');
      // quick_check first, in a low-priority worker (it reads every page): then the stores are
      // opened and migrated here, which is cheap.
      const files = [{ name: 'control.sqlite', path: controlStorePath(dataDir) }].concat(
        tenantFiles(manifest).map((f) => ({ name: f.name, path: join(dataDir, f.name) })),
      );
      const results = await quickCheckFiles(files.map((f) => f.path));
      for (const f of files) {
        const result = results.get(f.path) ?? '';
        if (result !== 'ok') throw new Error(`${f.name} fails SQLite's quick_check: ${result.slice(0, 200)}`);
      }
      const control = await openControlStore(controlStorePath(dataDir), { fileMustExist: true });
      opened.push(control);
      for (const file of tenantFiles(manifest)) {
        const store = await openSqliteStore<TenantDB>(join(dataDir, file.name), tenantStoreMigrations, {
          fileMustExist: true,
        });
        opened.push(store);
        tenantStores.set(file.tenant ?? '', store);
      }
      return `control store and ${tenantStores.size} tenant stores pass quick_check, open and migrate`;
    });

    await check('decrypt', async () => {
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
    ok: checks.every((c) => c.status === 'passed'),
    startedAt: started.toISOString(),
    durationMs: now().getTime() - started.getTime(),
    checks,
    samples,
  };
}

function tenantFiles(manifest: BackupManifest): ManifestFile[] {
  return manifest.files.filter((f) => f.kind === 'tenant' && f.tenant !== null);
}

function elapsed(t0: number): number {
  return Math.round((performance.now() - t0) * 10) / 10;
}

function describe(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? `${e.code}: ` : '';
  return `${code}${typeof e.message === 'string' ? e.message : String(err)}`;
}
