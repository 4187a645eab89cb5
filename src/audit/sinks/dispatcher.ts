/**
 * The sink dispatcher: carries every committed audit entry and checkpoint to every outside sink,
 * at least once, in index order, with no gaps — and never lets a sink slow down the log.
 *
 * Model. The log in the control store is the source of truth; a sink only ever lags behind it.
 * Each sink has its own loop and its own durable cursor (cursors.ts: a file in `stateDir`, or the
 * control store's table):
 *
 *   {"nextIndex": n, "checkpointSize": s}   entries [0, n) and checkpoints of size ≤ s are delivered
 *
 * A loop reads from its cursor, delivers, and only then saves the cursor, so a crash between the
 * two re-delivers the last batch: duplicates are possible, loss is not. Destinations de-duplicate by `index` (entries) or `size` (checkpoints).
 * A checkpoint is delivered only once every entry it covers has been, so a SIEM never holds a
 * signed tree head for entries it has not seen; entry batches stop at the next checkpoint so the
 * two interleave as they were committed.
 *
 * notify() only wakes idle loops and returns at once; a failing sink retries with exponential
 * backoff and full jitter, forever, and shows as failing in status() and the logger. What
 * status() and the logger say about a failure is the error's code and message, which the sinks
 * keep free of secrets and entry contents.
 *
 * Several processes on one database (PostgreSQL): only the process that `leads()` (the sequencer's
 * lease holder) delivers, from the cursor in the database, read again each time it takes the lead;
 * before each delivery it confirms the lead with the database (`confirmLead`), so a process that
 * lost it delivers nothing more. What a takeover may deliver twice is the one delivery in flight
 * when the old holder died or lost the lease, not yet recorded in the cursor: at most `batchSize`
 * entries (or one checkpoint) per sink.
 */
import { fileSinkCursors, type SinkCursor, type SinkCursors } from './cursors.ts';
import {
  type AuditSink,
  type SequencedCheckpoint,
  type SequencedEntry,
  SINK_NAME_PATTERN,
  type SinkLogger,
} from './types.ts';

export interface SinkDispatcherOptions {
  sinks: readonly AuditSink[];
  /** Folder for the cursor files (created 0700 if missing), when `cursors` is not given. */
  stateDir?: string;
  /** Where the cursors are kept; default: files in `stateDir`. */
  cursors?: SinkCursors;
  /** Whether this process delivers now (the sequencer's lease holder); default always. */
  leads?: () => boolean;
  /**
   * Asked before each delivery while leads() says yes: false when the database says this process no
   * longer leads (it then delivers nothing until it leads again); a rejection is a failed attempt.
   */
  confirmLead?: () => Promise<boolean>;
  /** Committed entries with index ≥ fromIndex, ascending, at most `limit`. */
  readEntries(fromIndex: number, limit: number): Promise<SequencedEntry[]>;
  /** Committed checkpoints with size > afterSize, ascending by size, at most `limit`. */
  readCheckpoints(afterSize: number, limit: number): Promise<SequencedCheckpoint[]>;
  logger?: SinkLogger;
  /** Entries per delivery; default 256. */
  batchSize?: number;
  /** Backoff between failed attempts; default 500 ms doubling up to 60 s. */
  retry?: { initialMs: number; maxMs: number };
}

export interface SinkStatus {
  name: string;
  /** Index of the last entry the sink has accepted; -1 before the first. */
  deliveredIndex: number;
  /** Size of the last checkpoint the sink has accepted; 0 before the first. */
  lastCheckpointSize: number;
  failing: boolean;
  /** Code and message of the last failure while failing (no secrets, no entry contents). */
  lastError?: string;
}

export interface SinkDispatcher {
  /** New entries or checkpoints were committed: wake idle sinks. Never blocks, never throws. */
  notify(): void;
  /**
   * Resolves when every sink has delivered everything committed when flush() was called. Waits
   * as long as a sink keeps failing (race it with a timeout at shutdown); rejects on close().
   */
  flush(): Promise<void>;
  status(): SinkStatus[];
  /** Stops the loops (an in-flight delivery is allowed to finish), then closes every sink. */
  close(): Promise<void>;
}

type Cursor = SinkCursor;

interface FlushWaiter {
  /** The wake-up generation the flush asked for; any idle pass that began at or after it satisfies it. */
  generation: number;
  resolve(): void;
  reject(error: Error): void;
}

const DEFAULT_BATCH_SIZE = 256;
const DEFAULT_RETRY = { initialMs: 500, maxMs: 60_000 };
const MAX_ERROR_LENGTH = 300;

export function createSinkDispatcher(options: SinkDispatcherOptions): SinkDispatcher {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new TypeError('batchSize must be a positive integer');
  const retry = options.retry ?? DEFAULT_RETRY;
  if (!(retry.initialMs > 0 && retry.maxMs >= retry.initialMs)) {
    throw new TypeError('retry needs 0 < initialMs <= maxMs');
  }
  const names = new Set<string>();
  for (const sink of options.sinks) {
    if (!SINK_NAME_PATTERN.test(sink.name))
      throw new TypeError(`sink name must match [a-z0-9-]{1,32}: ${sink.name}`);
    if (names.has(sink.name)) throw new TypeError(`duplicate sink name: ${sink.name}`);
    names.add(sink.name);
  }

  let cursors = options.cursors;
  if (cursors === undefined) {
    if (options.stateDir === undefined)
      throw new TypeError('the sink dispatcher needs cursors or a stateDir');
    cursors = fileSinkCursors(options.stateDir);
  }
  let generation = 0;
  let closed = false;
  const store = cursors;
  const loops = options.sinks.map(
    (sink) => new SinkLoop(sink, options, store, batchSize, retry, () => generation),
  );
  const running = loops.map((loop) => loop.run());

  return {
    notify() {
      if (closed) return;
      generation += 1;
      for (const loop of loops) loop.wake();
    },
    flush() {
      if (closed) return Promise.reject(new Error('the sink dispatcher is closed'));
      generation += 1;
      const target = generation;
      return Promise.all(loops.map((loop) => loop.waitUntilIdleSince(target))).then(() => undefined);
    },
    status() {
      return loops.map((loop) => loop.status());
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const loop of loops) loop.stop();
      await Promise.all(running);
      const results = await Promise.allSettled(options.sinks.map((sink) => sink.close()));
      for (const [i, result] of results.entries()) {
        if (result.status === 'rejected') {
          options.logger?.warn(
            { sink: options.sinks[i]?.name, err: describeError(result.reason) },
            'audit sink close failed',
          );
        }
      }
    },
  };
}

/** One sink's delivery loop: owns its cursor, its backoff and its status. */
class SinkLoop {
  private cursor: Cursor = { nextIndex: 0, checkpointSize: 0 };
  private failing = false;
  private lastError: string | undefined;
  private stopped = false;
  private wakeUp: (() => void) | undefined;
  private flushWaiters: FlushWaiter[] = [];
  private readonly stopListeners = new Set<() => void>();

  constructor(
    private readonly sink: AuditSink,
    private readonly options: SinkDispatcherOptions,
    private readonly cursors: SinkCursors,
    private readonly batchSize: number,
    private readonly retry: { initialMs: number; maxMs: number },
    private readonly currentGeneration: () => number,
  ) {}

  status(): SinkStatus {
    const status: SinkStatus = {
      name: this.sink.name,
      deliveredIndex: this.cursor.nextIndex - 1,
      lastCheckpointSize: this.cursor.checkpointSize,
      failing: this.failing,
    };
    if (this.failing && this.lastError !== undefined) status.lastError = this.lastError;
    return status;
  }

  wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  stop(): void {
    this.stopped = true;
    this.wake();
    for (const listener of [...this.stopListeners]) listener();
    const error = new Error('the sink dispatcher is closed');
    for (const waiter of this.flushWaiters.splice(0)) waiter.reject(error);
  }

  waitUntilIdleSince(generation: number): Promise<void> {
    if (this.stopped) return Promise.reject(new Error('the sink dispatcher is closed'));
    return new Promise((resolve, reject) => {
      this.flushWaiters.push({ generation, resolve, reject });
      this.wake();
    });
  }

  async run(): Promise<void> {
    let attempt = 0;
    let cursorLoaded = false;
    while (!this.stopped) {
      // Read before the pass starts: a notify() during the pass bumps it, so we pass again.
      const passGeneration = this.currentGeneration();
      try {
        if (!(this.options.leads?.() ?? true)) {
          // Another process delivers: nothing is due here, and the cursor is read again on taking the lead.
          cursorLoaded = false;
          this.failing = false;
          this.lastError = undefined;
          attempt = 0;
          this.settleFlushes(passGeneration);
          if (this.currentGeneration() === passGeneration) await this.idle();
          continue;
        }
        if (!cursorLoaded) {
          // Inside the retry loop: a cursor that cannot be read yet is a failure to report and retry.
          this.cursor = await this.cursors.load(this.sink.name);
          cursorLoaded = true;
        }
        const delivered = await this.deliverOnce();
        if (delivered === 'not-leading') {
          cursorLoaded = false;
          continue;
        }
        if (this.failing) {
          this.options.logger?.info({ sink: this.sink.name }, 'audit sink recovered');
        }
        this.failing = false;
        this.lastError = undefined;
        attempt = 0;
        if (delivered) continue;
        this.settleFlushes(passGeneration);
        if (this.currentGeneration() === passGeneration) await this.idle();
      } catch (error) {
        if (this.stopped) break;
        this.failing = true;
        this.lastError = describeError(error);
        const delay = backoff(attempt, this.retry);
        attempt += 1;
        this.options.logger?.warn(
          { sink: this.sink.name, err: this.lastError, attempt, retryInMs: delay },
          'audit sink delivery failed; retrying',
        );
        await this.pause(delay);
      }
    }
  }

  /**
   * One step: the next due checkpoint, else the next batch of entries. False when nothing was due;
   * 'not-leading' when the database says another process delivers now.
   */
  private async deliverOnce(): Promise<boolean | 'not-leading'> {
    const { nextIndex, checkpointSize } = this.cursor;
    const [pending] = await this.options.readCheckpoints(checkpointSize, 1);
    if (pending !== undefined && pending.size <= checkpointSize) {
      throw new Error(`readCheckpoints returned size ${pending.size} after ${checkpointSize}`);
    }
    if (pending !== undefined && pending.size <= nextIndex) {
      if (!(await this.stillLeads())) return 'not-leading';
      await this.sink.deliverCheckpoint(pending.note, pending.size);
      await this.saveCursor({ nextIndex, checkpointSize: pending.size });
      return true;
    }
    // Stop the batch at the next checkpoint so it can follow the entries it covers right away.
    const limit = pending === undefined ? this.batchSize : Math.min(this.batchSize, pending.size - nextIndex);
    const entries = await this.options.readEntries(nextIndex, limit);
    if (entries.length === 0) return false;
    for (const [i, entry] of entries.entries()) {
      if (entry.index !== nextIndex + i) {
        throw new Error(`readEntries returned index ${entry.index} where ${nextIndex + i} was expected`);
      }
    }
    const batch = entries.length > limit ? entries.slice(0, limit) : entries;
    if (!(await this.stillLeads())) return 'not-leading';
    await this.sink.deliverEntries(batch);
    await this.saveCursor({ nextIndex: nextIndex + batch.length, checkpointSize });
    return true;
  }

  private async stillLeads(): Promise<boolean> {
    return this.options.confirmLead === undefined || (await this.options.confirmLead());
  }

  private async saveCursor(next: Cursor): Promise<void> {
    await this.cursors.save(this.sink.name, next);
    this.cursor = next;
  }

  private settleFlushes(passGeneration: number): void {
    const remaining: FlushWaiter[] = [];
    for (const waiter of this.flushWaiters) {
      if (waiter.generation <= passGeneration) waiter.resolve();
      else remaining.push(waiter);
    }
    this.flushWaiters = remaining;
  }

  private idle(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      this.wakeUp = resolve;
    });
  }

  /** Waits out a backoff; stop() cuts it short, notify() and flush() do not (the sink is down, not idle). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.stopListeners.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.stopListeners.add(done);
    });
  }
}

/** Exponential backoff with "equal jitter" (uniform in [cap/2, cap]): spread out, yet never a hot loop. */
function backoff(attempt: number, retry: { initialMs: number; maxMs: number }): number {
  const cap = Math.min(retry.maxMs, retry.initialMs * 2 ** Math.min(attempt, 30));
  return Math.max(1, Math.round(cap / 2 + (Math.random() * cap) / 2));
}

/** `CODE: message`, one line, bounded: sinks keep secrets and entry contents out of their errors. */
function describeError(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(error);
  const code = typeof e?.code === 'string' ? `${e.code}: ` : '';
  return `${code}${message}`.replace(/\s+/g, ' ').slice(0, MAX_ERROR_LENGTH);
}
