/**
 * A store's own fsync of its WAL (store.ts, `ownSync`): the writer runs synchronous=NORMAL, so a
 * COMMIT appends its frames to the `-wal` file without an fsync, and the store then calls
 * fdatasync on this file descriptor through libuv's thread pool — the event loop is free meanwhile,
 * and the fsyncs of many tenant files run in parallel (ext4's journal merges concurrent ones).
 *
 * The descriptor is opened once per store open, after SQLite created the WAL, and checked to name
 * the same inode as the path (fstat against stat): SQLite keeps the WAL file while any of its
 * connections is open, so it does not change under a running store. Linux's fsync covers every
 * write to the inode, whichever descriptor made it. SQLite takes no locks on the `-wal` file (its
 * WAL locks are on `-shm`), so this descriptor, unlike one on the database file, can be closed
 * without dropping a lock another connection of this process holds (POSIX locks are per process).
 */
import { fdatasync } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { syncFolder } from './wipe.ts';

/** Wraps each fdatasync of the WAL (tests: count, hold or fail it); must call `sync` to sync. */
export type AroundWalSync = (sync: () => Promise<void>) => Promise<void>;

export interface WalSync {
  /** fdatasync of the WAL: every frame appended before the call is on disk once it resolves. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens the WAL of the database at `path` (it must exist: the caller read the database first) and
 * makes durable what it already holds — frames a killed process committed but never synced are in
 * the page cache and would otherwise be read as durable — and the folder entry of the WAL (SQLite
 * in NORMAL mode syncs the folder only at its first checkpoint).
 */
export async function openWalSync(path: string, around?: AroundWalSync): Promise<WalSync> {
  const walPath = `${path}-wal`;
  const file: FileHandle = await open(walPath, 'r');
  try {
    const [opened, named] = await Promise.all([file.stat(), stat(walPath)]);
    if (opened.ino !== named.ino || opened.dev !== named.dev)
      throw new Error('the WAL file changed while it was opened');
    // fs.fdatasync with a callback on the handle's descriptor: FileHandle.datasync() does the same
    // call through more promise and bookkeeping work on the event loop, paid once per commit.
    const datasync = () =>
      new Promise<void>((resolve, reject) => {
        fdatasync(file.fd, (error) => (error ? reject(error) : resolve()));
      });
    const sync = around === undefined ? datasync : () => around(datasync);
    await sync();
    await syncFolder(dirname(path));
    return { sync, close: () => file.close() };
  } catch (error) {
    await file.close();
    throw error;
  }
}
