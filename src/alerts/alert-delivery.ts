/**
 * Delivery of opened alerts to the configured channels (webhook, mail), at least once, with
 * bounded retries. A delivery row is queued in the transaction that opens the alert, so none is
 * lost to a crash; the pump sends the due rows one at a time, records each attempt, and tries a
 * failed one again after `baseMs`, doubling, until `attempts` retries are spent: then the row is
 * `failed` and stays so (visible in the alert's `deliveries`, logged as a warning).
 *
 * What is logged and stored of a failure is the channel's own message (status or error code, no
 * URL path, no body, no credential).
 */
import type { Transaction } from 'kysely';
import type { Store } from '../store/types.ts';
import type { AlertChannel } from './alert-channel.ts';
import { alertMessage } from './alert-message.ts';
import type { AlertsDB } from './alert-store-schema.ts';
import type { AlertService } from './alerts.ts';

export interface AlertDeliveryDeps {
  control: Store<AlertsDB>;
  channels: readonly AlertChannel[];
  alerts: Pick<AlertService, 'get'>;
  /** Retries after the first attempt, and the wait before the first retry (it doubles). */
  retry: { attempts: number; baseMs: number };
  now: () => Date;
  warn(obj: object, msg: string): void;
}

export interface AlertDelivery {
  /** Queues one delivery per channel for a newly opened alert, inside the caller's transaction. */
  enqueueIn(trx: Transaction<AlertsDB>, alertId: string): Promise<void>;
  /** Sends what is due now and schedules the rest. Never throws. */
  kick(): void;
  /** Resolves when no delivery is pending any more, or rejects after `timeoutMs` (tests). */
  settled(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

const MAX_ERROR_LENGTH = 200;
const PASS_RETRY_MS = 5_000;

export function createAlertDelivery(deps: AlertDeliveryDeps): AlertDelivery {
  const byName = new Map(deps.channels.map((c) => [c.name, c]));
  let running: Promise<void> | undefined;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  async function pump(): Promise<void> {
    for (;;) {
      if (closed) return;
      const now = deps.now().toISOString();
      const due = await deps.control.db
        .selectFrom('alert_deliveries')
        .selectAll()
        .where('state', '=', 'pending')
        .where('next_attempt_at', '<=', now)
        .orderBy('next_attempt_at')
        .limit(20)
        .execute();
      if (due.length === 0) break;
      for (const row of due) {
        if (closed) return;
        const channel = byName.get(row.channel);
        const alert = await deps.alerts.get(row.alert);
        let error: string | null = null;
        if (!channel || !alert)
          error = channel ? 'the alert is gone' : `channel ${row.channel} is not configured`;
        else {
          try {
            await channel.send(alertMessage(alert));
          } catch (e) {
            error = ((e as Error).message ?? 'failed').slice(0, MAX_ERROR_LENGTH);
          }
        }
        const attempts = row.attempts + 1;
        const at = deps.now();
        const spent = attempts > deps.retry.attempts;
        const state = error === null ? 'delivered' : spent ? 'failed' : 'pending';
        const next = new Date(at.getTime() + deps.retry.baseMs * 2 ** (attempts - 1)).toISOString();
        await deps.control.write((trx) =>
          trx
            .updateTable('alert_deliveries')
            .set({ state, attempts, last_error: error, updated_at: at.toISOString(), next_attempt_at: next })
            .where('alert', '=', row.alert)
            .where('channel', '=', row.channel)
            .execute(),
        );
        if (error !== null)
          deps.warn(
            { alert: row.alert, channel: row.channel, attempts, reason: error },
            state === 'failed'
              ? 'alert delivery failed; no more retries'
              : 'alert delivery failed; will retry',
          );
      }
    }
    // Wake at the next pending row's time.
    const next = await deps.control.db
      .selectFrom('alert_deliveries')
      .select('next_attempt_at')
      .where('state', '=', 'pending')
      .orderBy('next_attempt_at')
      .executeTakeFirst();
    if (next && !closed) {
      if (timer) clearTimeout(timer);
      timer = setTimeout(
        () => {
          timer = undefined;
          kick();
        },
        Math.max(10, Date.parse(next.next_attempt_at) - deps.now().getTime()),
      );
      timer.unref();
    }
  }

  function kick(): void {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        await pump();
      } while (again && !closed);
    })()
      .catch((error: unknown) => {
        const e = error as { code?: string; message?: string };
        deps.warn({ code: e.code, reason: e.message }, 'alert delivery: a pass failed; trying again');
        // The store failed us, not a channel: come back later rather than wait for the next alert.
        if (!closed && !timer) {
          timer = setTimeout(() => {
            timer = undefined;
            kick();
          }, PASS_RETRY_MS);
          timer.unref();
        }
      })
      .finally(() => {
        running = undefined;
      });
  }

  return {
    async enqueueIn(trx, alertId) {
      if (deps.channels.length === 0) return;
      const at = deps.now().toISOString();
      await trx
        .insertInto('alert_deliveries')
        .values(
          deps.channels.map((c) => ({
            alert: alertId,
            channel: c.name,
            state: 'pending' as const,
            attempts: 0,
            last_error: null,
            updated_at: at,
            next_attempt_at: at,
          })),
        )
        .execute();
    },
    kick,
    async settled(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const pending = await deps.control.db
          .selectFrom('alert_deliveries')
          .select('alert')
          .where('state', '=', 'pending')
          .executeTakeFirst();
        if (!pending) return;
        if (Date.now() > deadline) throw new Error(`alert deliveries still pending after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await running;
      await Promise.allSettled(deps.channels.map((c) => c.close()));
    },
  };
}
