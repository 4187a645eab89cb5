/**
 * Removing outbox rows the log already holds. Every audited event leaves an `audit_events` row in
 * an outbox (a change's in its tenant's store, a read's in the control store's: read-outbox.ts); once the sequencer's write that moved it into the log has committed (the cursor in
 * `audit_cursors` covers it), the row is a copy and only costs disk. The sequencer calls this per
 * source it moved from (never once per event), after the log commit, once 64 moved rows wait or the
 * first has waited 30 s (src/audit/sequencer.ts, REMOVE_BATCH_ROWS):
 *
 *   1. `audit_moved.seq` is raised to the durable cursor (the trigger lets it only increase);
 *   2. the rows at or below it are deleted (the DELETE trigger refuses any row above it).
 *
 * Both in one transaction of the outbox's store. A crash before it leaves rows that the cursor already
 * says are moved: they are never read again (the sequencer reads only above its cursor) and the next
 * removal after a restart deletes them.
 *
 * Two rows stay although moved: the outbox's newest row, so `max(seq)` keeps naming the last seq the
 * store ever gave (a tenant restore compares it between the backup and the live file), and the newest
 * `config.start` of the control store (the previous start's section digests, src/server/config-audit.ts).
 *
 * Freed space: on SQLite (secure_delete) the deleted cells are zeroed and their pages go to the file's
 * freelist, from which later inserts take pages before the file grows — a store whose removals keep
 * pace with its events stops growing (the file does not shrink; `VACUUM` does that offline). On
 * PostgreSQL the deleted tuples are dead until autovacuum reclaims them for reuse, likewise.
 */
import { sql } from 'kysely';
import type { Store } from '../store/types.ts';
import type { WithAuditEvents } from './event.ts';

/** Deletes the rows of `store`'s outbox at or below `cursor`, the source's durable sequencer cursor. */
export async function removeMovedEvents(store: Store<WithAuditEvents>, cursor: number): Promise<void> {
  await store.write(async (trx) => {
    await sql`UPDATE audit_moved SET seq = ${cursor} WHERE one = 1 AND seq < ${cursor}`.execute(trx);
    await sql`DELETE FROM audit_events WHERE seq <= ${cursor}
      AND seq < (SELECT max(seq) FROM audit_events)
      AND seq <> coalesce((SELECT max(seq) FROM audit_events WHERE action = 'config.start'), 0)`.execute(trx);
  });
}
