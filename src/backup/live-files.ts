/**
 * The live store files are touched from outside their registry twice: a backup's snapshot opens them
 * directly (VACUUM INTO, its own connections, sqlite-snapshot.ts) and a tenant restore renames a new
 * file over one (TenantStores.replace, after wiping the old file's -wal and -shm). Both at once
 * would let the snapshot's connection share -wal/-shm names with the swapped-in file, so they take
 * turns: one lock, held by the whole snapshot and by each swap. A swap is short; a restore waits for
 * a running snapshot before it holds the tenant's requests (it takes the lock first).
 */
import type { StoreSnapshotter } from './snapshot.ts';

export interface LiveFilesLock {
  hold<T>(work: () => Promise<T>): Promise<T>;
}

export function createLiveFilesLock(): LiveFilesLock {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    hold(work) {
      const run = tail.then(work);
      tail = run.catch(() => undefined);
      return run;
    },
  };
}

/** The snapshotter, each snapshot holding the lock. */
export function lockedSnapshotter(snapshotter: StoreSnapshotter, lock: LiveFilesLock): StoreSnapshotter {
  return {
    backend: snapshotter.backend,
    snapshot: (scratch, tenants) => lock.hold(() => snapshotter.snapshot(scratch, tenants)),
  };
}
