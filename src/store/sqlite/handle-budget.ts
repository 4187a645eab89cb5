/**
 * How many tenant stores the SQLite registry keeps open: derived from the process's file limit
 * instead of a fixed number, so a deployment with more tenants than a fixed cap does not close and
 * reopen a store on most requests.
 *
 * Node raises its soft RLIMIT_NOFILE to the hard limit when it starts (on Linux and macOS), so the
 * soft limit read here is already the hard one; a process cannot raise it further. Each open store
 * holds FDS_PER_STORE descriptors (writer and reader each have the database and its -wal open; the
 * -shm mapping is shared in the process; the store's own fdatasync descriptor of the -wal). What the server needs besides is set aside: its client
 * connections (`connections.max`) and RESERVED_FDS for keyd's socket, the control store, the
 * PostgreSQL pool, logs, the metrics listener and the backup and sequencer threads' files.
 */
import { readFileSync } from 'node:fs';

/**
 * Descriptors one open tenant store holds (measured, test/store/tenant-store-eviction.test.ts: writer
 * db + wal, reader db + wal, the shared shm, and the WAL descriptor the store fdatasyncs through,
 * wal-sync.ts). It was 5 until the count found the sixth: the budget then overshot the file limit by
 * a fifth at full load.
 */
export const FDS_PER_STORE = 6;
/** Descriptors set aside for everything but tenant stores and client connections. */
export const RESERVED_FDS = 256;
/** Stores kept open at least, whatever the limit says (a tiny limit fails elsewhere first). */
export const MIN_OPEN_STORES = 16;
/** Without /proc/self/limits (not Linux): the old fixed budget. */
export const FALLBACK_OPEN_STORES = 256;

export interface HandleBudget {
  /** Stores kept open at most. */
  maxOpen: number;
  /** The soft RLIMIT_NOFILE it came from; undefined where it cannot be read. */
  fileLimit: number | undefined;
}

/** The soft "Max open files" of this process, from /proc/self/limits; undefined if unreadable. */
export function softFileLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
  if (soft === undefined) return undefined;
  if (soft === 'unlimited') return Number.MAX_SAFE_INTEGER;
  const n = Number(soft);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** The tenant-store budget for a server holding at most `connections` client connections. */
export function tenantStoreBudget(connections: number, fileLimit = softFileLimit()): HandleBudget {
  if (fileLimit === undefined) return { maxOpen: FALLBACK_OPEN_STORES, fileLimit };
  const spare = fileLimit - connections - RESERVED_FDS;
  const maxOpen = Math.max(MIN_OPEN_STORES, Math.floor(spare / FDS_PER_STORE));
  return { maxOpen: Math.min(maxOpen, 1_000_000), fileLimit };
}
