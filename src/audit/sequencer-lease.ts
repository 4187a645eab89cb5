/**
 * The sequencer's right to write the log. On SQLite one process owns the data folder, so there is
 * nothing to take; on PostgreSQL several server processes may share one database, and the log must
 * still have exactly one writer at a time (one gap-free sequence, one tree). The lease says whether
 * this process holds that right now (sequencer-lease-pg.ts: a PostgreSQL advisory lock), and
 * `fence` lets the sequencer prove, inside its own write transaction, that it still does.
 */
import type { Transaction } from 'kysely';

export interface SequencerLease {
  /** Whether this process may sequence now. */
  held(): boolean;
  /** Called each time held() changes (true: taken; false: lost or given up). */
  onChange(listener: (held: boolean) => void): () => void;
  /**
   * Run inside the sequencer's write transaction, before its rows: throws unless the lease is still
   * held as that transaction sees it, so a pass that lost the lease mid-way commits nothing.
   */
  fence(trx: Transaction<unknown>): Promise<void>;
  /** Starts taking the lease (and retrying); resolves after the first try. */
  start(): Promise<void>;
  /** Gives the lease up and stops trying. */
  close(): Promise<void>;
}
