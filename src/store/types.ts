/**
 * The storage interface the domains use: async and dialect-neutral (Kysely), so PostgreSQL can come
 * later behind it without touching domain code. SQLite (one file per store) is the first backend.
 *
 * Writes go through `write()`: group commit. Concurrent callers' work runs inside ONE durable
 * transaction (each in its own savepoint, so one failure does not undo the others), and every
 * caller's promise resolves only after that transaction's COMMIT is on disk (synchronous=FULL).
 * A change and its audit event written in the same `write()` commit together or not at all.
 */
import type { Kysely, Migration, Transaction } from 'kysely';

export interface Store<DB> {
  /** Where the store lives (a file path for SQLite). */
  readonly location: string;
  /** Reads outside any write transaction (SQLite: a separate WAL reader connection). */
  readonly db: Kysely<DB>;
  /**
   * Runs `work` in the next group-committed transaction; resolves after the commit is durable.
   * `work` shares that transaction with other callers: it must use only `trx` (and only until it
   * settles), do database work only (fetch keys or call keyd before, not inside), never end the
   * transaction, and never await a write() on the same store.
   */
  write<T>(work: (trx: Transaction<DB>) => Promise<T>): Promise<T>;
  /** Whether the store can take writes now (for /readyz). */
  healthy(): Promise<boolean>;
  /** Finishes queued writes, then closes every connection. */
  close(): Promise<void>;
}

/** Named migrations, applied in name order when a store opens. */
export type Migrations = Record<string, Migration>;

/**
 * Migrations renamed since stores recorded them, as [recorded name, current name] pairs applied in
 * order (a name freed by one pair may be taken by a later one).
 */
export type MigrationRenames = readonly (readonly [from: string, to: string])[];
