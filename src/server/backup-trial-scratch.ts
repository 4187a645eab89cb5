/**
 * The trial restore's work on its scratch copy (backup-trial.ts), run in a worker thread at the
 * lowest CPU priority (backup-trial-worker.ts, started by backup-trial-thread.ts): the checked pass
 * over every chunk (digest, AES-GCM, every file's digest) writing the scratch folder; the restored
 * audit log verified against the manifest's checkpoint (a pruned log's, whose segments need keyd and
 * the destination, is asked of the event loop: `audit-archived`); quick_check of every restored store, then
 * each opened and migrated as the server opens it. The PostgreSQL trial (backup-trial-pg.ts) asks
 * for the first alone. Seconds of CPU for a large store, all of it synchronous work that on the
 * event loop stalls every request: here, on a busy machine, the trial takes longer instead.
 *
 * What needs keyd stays on the event loop, which holds it: the backup is opened there (signature,
 * data key unwrapped). A folder destination's chunks are read here, two ahead of the pass; a remote
 * destination's (S3, whose client and credentials live on the event loop) are fetched there on
 * request, two ahead, and copied here. Each check's result is reported as it ends, so a worker that
 * dies leaves the checks it finished.
 */
import { join } from 'node:path';
import type { MessagePort } from 'node:worker_threads';
import { readArchivedEndOfFile } from '../audit/archived-end.ts';
import {
  type BackupManifest,
  backupVerification,
  type ChunkAnswer,
  type ChunkWant,
  chunkFeed,
  type ManifestFile,
  quickCheckFile,
  readChunks,
  restoreFiles,
} from '../backup/index.ts';
import { wipe } from '../crypto/index.ts';
import { openSqliteStore } from '../store/sqlite/store.ts';
import { type TenantDB, tenantStoreMigrations } from '../vault/tenant-store-schema.ts';
import { type TrialCheck, TrialChecks } from './backup-trial-checks.ts';
import { controlStorePath, openControlStore } from './control-store.ts';
import { checkRestoredAuditLog, trialAuditDetail } from './restored-audit.ts';

export interface TrialScratchStart {
  kind: 'start';
  manifest: BackupManifest;
  /** The backup's data key, copied into the message; wiped here once the pass ends. */
  key: Uint8Array;
  auditPublicKey: Uint8Array;
  /** Where the backup is restored (must not exist or be empty). */
  dataDir: string;
  /** A folder destination, read here; absent: each chunk is asked of the event loop (`want`). */
  folder?: { root: string; name: string };
  /**
   * 'restore': the restore check's file pass alone (the PostgreSQL trial, backup-trial-pg.ts, which
   * loads the files into a scratch database and checks the log and stores there); absent: all three.
   */
  only?: 'restore';
}

/**
 * The event loop's answer to `audit-archived`: the archived log's check held (`detail`) or failed
 * (`error`, its code and message).
 */
export interface ArchivedAuditAnswer {
  kind: 'audit-answer';
  detail?: string;
  error?: { code?: string; message: string };
}

export type TrialScratchRequest = TrialScratchStart | ChunkAnswer | ArchivedAuditAnswer;

/**
 * `audit-archived`: the restored log is pruned (archived end `end` > 0): its segments need keyd and
 * the destination, which the event loop holds, so the audit check is asked of it (an `audit-answer`
 * comes back) and the worker waits before it goes on.
 */
export type TrialScratchReply =
  | ChunkWant
  | { kind: 'check'; check: TrialCheck }
  | { kind: 'audit-archived'; end: number }
  | { kind: 'done' };

export function serveTrialScratch(port: MessagePort): void {
  let feed: ReturnType<typeof chunkFeed> | undefined;
  let answered: ((answer: ArchivedAuditAnswer) => void) | undefined;
  const askArchived = (end: number) =>
    new Promise<ArchivedAuditAnswer>((resolve) => {
      answered = resolve;
      port.postMessage({ kind: 'audit-archived', end } satisfies TrialScratchReply);
    });
  port.on('message', (message: TrialScratchRequest) => {
    if (message.kind === 'start') {
      const current = chunkFeed(message.manifest, message.folder, (want) => port.postMessage(want));
      feed = current;
      void runChecks(port, message, (index) => current.chunk(index), askArchived).finally(() =>
        port.postMessage({ kind: 'done' } satisfies TrialScratchReply),
      );
      return;
    }
    if (message.kind === 'audit-answer') {
      answered?.(message);
      answered = undefined;
      return;
    }
    feed?.answer(message);
  });
}

async function runChecks(
  port: MessagePort,
  start: TrialScratchStart,
  chunk: (index: number) => Promise<Buffer>,
  askArchived: (end: number) => Promise<ArchivedAuditAnswer>,
): Promise<void> {
  const { manifest, dataDir } = start;
  const checks = new TrialChecks();
  const report = (check: TrialCheck) =>
    port.postMessage({ kind: 'check', check } satisfies TrialScratchReply);

  const key = Buffer.from(start.key);
  wipe(start.key);
  report(
    await checks.run('restore', async () => {
      try {
        await restoreFiles({ target: dataDir, durable: false }, (sink) =>
          readChunks({ manifest, key, chunk, sink }),
        );
      } finally {
        wipe(key);
      }
      const restored = backupVerification(manifest, '');
      return `${restored.files} files, ${restored.chunks} chunks, ${restored.plaintextBytes} bytes: signature and every digest hold`;
    }),
  );
  if (start.only === 'restore') return;

  report(
    await checks.run('audit', async () => {
      // A pruned log: its segments are read through keyd, on the event loop (backup-trial.ts).
      const end = readArchivedEndOfFile(controlStorePath(dataDir));
      if (end > 0) {
        const answer = await askArchived(end);
        if (answer.detail !== undefined) return answer.detail;
        throw Object.assign(new Error(answer.error?.message ?? 'the archived log was not checked'), {
          code: answer.error?.code ?? 'TRESOR_ERR_BACKUP_FAILED',
        });
      }
      const audit = await checkRestoredAuditLog(dataDir, manifest, start.auditPublicKey, {
        background: true,
      });
      return trialAuditDetail(audit);
    }),
  );

  report(
    await checks.run('stores', async () => {
      const files = [{ name: 'control.sqlite', path: controlStorePath(dataDir) }].concat(
        tenantFiles(manifest).map((f) => ({ name: f.name, path: join(dataDir, f.name) })),
      );
      for (const f of files) {
        const result = quickCheckFile(f.path);
        if (result !== 'ok') throw new Error(`${f.name} fails SQLite's quick_check: ${result.slice(0, 200)}`);
      }
      const opened: { close(): Promise<void> }[] = [];
      const tenants = new Set<string>();
      try {
        // A scratch copy: never fsynced (openSqlite's `durable`), so opening it does not force the
        // whole copy to disk ahead of the live stores' commits.
        opened.push(
          await openControlStore(controlStorePath(dataDir), { fileMustExist: true, durable: false }),
        );
        for (const file of tenantFiles(manifest)) {
          opened.push(
            await openSqliteStore<TenantDB>(join(dataDir, file.name), tenantStoreMigrations, {
              fileMustExist: true,
              durable: false,
            }),
          );
          tenants.add(file.tenant ?? '');
        }
      } finally {
        for (const store of opened) await store.close().catch(() => undefined);
      }
      return `control store and ${tenants.size} tenant stores pass quick_check, open and migrate`;
    }),
  );
}

/** The manifest's tenant store files, in its order. */
export function tenantFiles(manifest: BackupManifest): ManifestFile[] {
  return manifest.files.filter((f) => f.kind === 'tenant' && f.tenant !== null);
}
