/**
 * The SQLite snapshot: `<data>/control.sqlite` and `<data>/tenants/<id>.sqlite`, each copied with
 * `VACUUM INTO` (a consistent snapshot in one read transaction; writers go on under WAL) and its
 * SHA-256 read, in a worker thread at a lower CPU priority (sqlite-snapshot-worker.ts), one file
 * after another. The control store is copied
 * first: a tenant created after that copy is not in the control store's tenant list either, and a
 * tenant store listed is there because its store was created before it was listed.
 *
 * SQLite's online backup API (better-sqlite3's db.backup()) was the other candidate; it restarts
 * whenever another connection writes the source, so under steady writes it may never finish.
 */
import { access, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { assertTenantId } from '../store/sqlite/tenant-stores.ts';
import { BACKUP_THREAD_NICE } from '../thread-priority.ts';
import { askWorker, startTsWorker } from '../ts-worker.ts';
import { BackupError } from './errors.ts';
import type { SnapshotFile, StoreSnapshotter } from './snapshot.ts';
import type { SnapshotReply, SnapshotRequest } from './sqlite-snapshot-worker.ts';

/** The control store's file in a data folder (src/server/control-store.ts names it the same). */
export const CONTROL_FILE = 'control.sqlite';

export function createSqliteSnapshotter(options: { dataDir: string }): StoreSnapshotter {
  const { dataDir } = options;
  return {
    backend: 'sqlite',
    async snapshot(scratch, tenants) {
      const plan: Omit<SnapshotFile, 'schemaVersion' | 'size' | 'sha256'>[] = [
        { name: CONTROL_FILE, kind: 'control', tenant: null, path: join(scratch, CONTROL_FILE) },
      ];
      for (const tenant of tenants) {
        assertTenantId(tenant);
        const name = `tenants/${tenant}.sqlite`;
        plan.push({ name, kind: 'tenant', tenant, path: join(scratch, name) });
      }
      await mkdir(join(scratch, 'tenants'), { recursive: true, mode: 0o700 });
      const worker = startTsWorker(new URL('./sqlite-snapshot-worker.ts', import.meta.url), {
        nice: BACKUP_THREAD_NICE,
      });
      try {
        const files: SnapshotFile[] = [];
        for (const file of plan) {
          const source = join(dataDir, file.name);
          if (!(await exists(source))) {
            // A tenant closed since it was listed has no store left to copy; the control store must be there.
            if (file.kind === 'tenant') continue;
            throw new BackupError('TRESOR_ERR_BACKUP_FAILED', `snapshot: ${file.name} does not exist`);
          }
          const reply = await ask(worker, { source, target: file.path });
          if (!reply.ok) {
            throw new BackupError(
              'TRESOR_ERR_BACKUP_FAILED',
              `snapshot: copying ${file.name} failed (${reply.code})`,
            );
          }
          const { size } = await stat(file.path);
          files.push({
            ...file,
            schemaVersion: reply.schemaVersion,
            size,
            sha256: reply.sha256,
          });
        }
        return files;
      } finally {
        await worker.terminate();
      }
    },
  };
}

function ask(worker: ReturnType<typeof startTsWorker>, request: SnapshotRequest): Promise<SnapshotReply> {
  return askWorker(
    worker,
    request,
    (code) => new BackupError('TRESOR_ERR_BACKUP_FAILED', `snapshot worker stopped (exit code ${code})`),
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
