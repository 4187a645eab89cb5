/**
 * The watch: runs the detectors over the audit log as it grows, in index order, each entry once.
 *
 * It reads committed entries (they are durable: the request that made them has its answer already)
 * from its own cursor, so a detector never slows a request and a slow pass only lags. One pass reads
 * a batch and lets every detector judge every entry. A batch that raised signals commits — in ONE
 * transaction — the alerts they open or bump, the deliveries of the opened ones, and the cursor past
 * the batch, so no signal is ever counted twice or lost. A batch without signals only moves the
 * cursor in memory; it is written at most every CURSOR_FLUSH_MS and at close (a commit per sequencer
 * pass would double the control store's fsyncs and slow the log itself). After a crash the entries
 * since the last written cursor are judged again — they raised nothing, and with the detectors'
 * windows empty after a restart (they live in memory) they raise nothing again.
 *
 * A new deployment (no cursor yet) starts at the log's current end: history is not re-judged.
 * notify() only wakes the loop; a failing pass is logged (code and message only) and retried with
 * backoff.
 *
 * Several server processes on one database: the watch judges only in the process that `leads()`
 * (the sequencer's lease holder), so each entry is judged once across them; each pass starts from
 * the stored cursor when it is ahead of this process's, so a process that takes the lead goes on
 * where the last leader's cursor was written (at most CURSOR_FLUSH_MS of quiet entries judged
 * again, as after a crash).
 */
import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/event.ts';
import type { Store } from '../store/types.ts';
import type { AlertsDB } from './alert-store-schema.ts';
import type { AlertSignal } from './alert-vocabulary.ts';
import type { AlertService } from './alerts.ts';
import type { Detector } from './detectors/types.ts';

export interface AlertWatchDeps {
  control: Store<AlertsDB>;
  /** Committed log entries with index ≥ from, ascending, at most `limit`. */
  readEntries(from: number, limit: number): Promise<readonly { index: number; leaf: string }[]>;
  /** The log's current size (the first index of a new deployment's watch). */
  treeSize(): number;
  detectors: readonly Detector[];
  alerts: Pick<AlertService, 'raiseIn'>;
  /** Queues the deliveries of a newly opened alert, inside the same transaction. */
  enqueueIn(trx: Transaction<AlertsDB>, alertId: string): Promise<void>;
  /** After a commit that opened alerts (start their deliveries). */
  opened(alertIds: readonly string[]): void;
  warn(obj: object, msg: string): void;
  batchSize?: number;
  /** Whether this process judges now (default: always); the others leave the log to the leader. */
  leads?: () => boolean;
}

export interface AlertWatch {
  start(): Promise<void>;
  /** New entries were committed: wake the loop. Never blocks, never throws. */
  notify(): void;
  /** Resolves once every entry committed before the call has been judged (tests, shutdown). */
  caughtUp(): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_BATCH = 500;

/**
 * A turn of the event loop between batches. On SQLite a batch's reads resolve without waiting for
 * I/O, so a watch catching up on a long backlog (a log grown while no process judged it) would
 * otherwise hold the loop until it is through: measured, a server with 900,000 entries to judge
 * did not listen within 14 minutes.
 */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const CURSOR_FLUSH_MS = 5_000;
const RETRY_MS = { initial: 500, max: 30_000 };

export function createAlertWatch(deps: AlertWatchDeps): AlertWatch {
  const batchSize = deps.batchSize ?? DEFAULT_BATCH;
  let cursor = 0;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let retryMs = RETRY_MS.initial;
  let stored = 0; // the cursor as the table holds it
  let flushTimer: NodeJS.Timeout | undefined;

  async function storeCursor(): Promise<void> {
    const next = cursor;
    if (next === stored) return;
    await deps.control.write((trx) =>
      trx.updateTable('alert_watch').set({ next_index: next }).where('id', '=', 1).execute(),
    );
    stored = Math.max(stored, next);
  }

  function scheduleFlush(): void {
    if (flushTimer || closed) return;
    flushTimer = setTimeout(() => {
      flushTimer = undefined;
      storeCursor().catch((error: unknown) => {
        deps.warn({ code: (error as { code?: string }).code }, 'alert watch: the cursor could not be stored');
        scheduleFlush();
      });
    }, CURSOR_FLUSH_MS);
    flushTimer.unref();
  }

  async function pass(): Promise<void> {
    // Another process may have judged (and stored its cursor) while this one did not lead.
    const row = await deps.control.db.selectFrom('alert_watch').select('next_index').executeTakeFirst();
    if (row && row.next_index > cursor) {
      cursor = row.next_index;
      stored = Math.max(stored, row.next_index);
    }
    for (;;) {
      const rows = await deps.readEntries(cursor, batchSize);
      if (rows.length === 0 || closed) return;
      const signals: AlertSignal[] = [];
      for (const row of rows) {
        let event: AuditEvent;
        try {
          event = JSON.parse(row.leaf) as AuditEvent;
        } catch {
          continue; // not ours to judge: `tresor audit verify` reports a malformed leaf
        }
        for (const detector of deps.detectors) signals.push(...detector.observe({ index: row.index, event }));
      }
      const next = (rows[rows.length - 1] as { index: number }).index + 1;
      if (signals.length === 0) {
        cursor = next;
        scheduleFlush();
        await nextTurn();
        continue;
      }
      const opened = await deps.control.write(async (trx) => {
        const ids: string[] = [];
        for (const signal of signals) {
          const raised = await deps.alerts.raiseIn(trx, signal);
          if (raised.opened) {
            ids.push(raised.id);
            await deps.enqueueIn(trx, raised.id);
          }
        }
        await trx.updateTable('alert_watch').set({ next_index: next }).where('id', '=', 1).execute();
        return ids;
      });
      cursor = next;
      stored = next;
      if (opened.length > 0) deps.opened(opened);
      await nextTurn();
    }
  }

  const leads = deps.leads ?? (() => true);

  function run(): Promise<void> {
    if (!leads()) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await pass();
      } while (again && !closed);
    })()
      .then(
        () => {
          retryMs = RETRY_MS.initial;
        },
        (error: unknown) => {
          const e = error as { code?: string; message?: string };
          deps.warn({ code: e.code, reason: e.message }, 'alert watch: a pass failed; retrying');
          if (!closed && !retryTimer) {
            retryTimer = setTimeout(() => {
              retryTimer = undefined;
              void run();
            }, retryMs);
            retryTimer.unref();
            retryMs = Math.min(retryMs * 2, RETRY_MS.max);
          }
        },
      )
      .finally(() => {
        running = undefined;
      });
    return running;
  }

  return {
    async start() {
      const row = await deps.control.db.selectFrom('alert_watch').select('next_index').executeTakeFirst();
      if (row) cursor = row.next_index;
      else {
        cursor = deps.treeSize();
        await deps.control.write((trx) =>
          trx.insertInto('alert_watch').values({ id: 1, next_index: cursor }).execute(),
        );
      }
      stored = cursor;
      void run();
    },
    notify() {
      if (!closed) void run();
    },
    async caughtUp() {
      if (!leads()) return;
      const target = deps.treeSize();
      while (cursor < target && !closed) {
        await run();
        if (cursor < target && !running) await new Promise((r) => setTimeout(r, 50));
      }
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      if (flushTimer) clearTimeout(flushTimer);
      await running;
      await storeCursor().catch(() => undefined);
    },
  };
}
