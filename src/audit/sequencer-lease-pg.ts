/**
 * The sequencer's lease on PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held
 * on a connection of its own, so the log has one writer across every server process on the
 * database — PostgreSQL's own lock, no election of ours.
 *
 * - Not held: one try a second (`retryMs`), on a kept connection; never blocking (`try`), so a
 *   standby process starts and serves while another sequences.
 * - Held: the connection is pinged each second; an error or end of that connection (the database
 *   restarted, the backend was terminated, the network cut) loses the lease AT ONCE — the session
 *   lock died with the session, and another process may already hold it.
 * - Fence: the sequencer's write transaction checks in pg_locks that this very backend (by pid)
 *   still holds the lock, so a pass that began before a loss commits nothing; and the log's primary
 *   keys refuse an index written twice, whatever happens.
 *
 * Advisory locks are per database: two deployments on one cluster do not see each other's.
 */
import { sql, type Transaction } from 'kysely';
import pg from 'pg';
import { TresorError } from '../errors.ts';
import type { SequencerLease } from './sequencer-lease.ts';

/** The advisory lock's two keys: 'Trsr' and the audit sequencer's number. */
export const SEQUENCER_LOCK_KEYS = [0x54727372, 1] as const;

export interface PgSequencerLeaseOptions {
  /** The database URL (it may hold a password: never shown). */
  url: string;
  /** Between tries to take the lock, and between pings while held (default 1 s). */
  retryMs?: number;
  /** A try or ping failed (for the operator's log: the reason, never the URL). */
  onProblem?: (reason: string) => void;
}

export function createPgSequencerLease(options: PgSequencerLeaseOptions): SequencerLease {
  const retryMs = options.retryMs ?? 1_000;
  const [classKey, objectKey] = SEQUENCER_LOCK_KEYS;
  const listeners = new Set<(held: boolean) => void>();
  let client: pg.Client | undefined;
  let pid: number | undefined;
  let held = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;

  function emit(now: boolean): void {
    for (const listener of listeners) {
      try {
        listener(now);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  /** The connection is gone or unusable: drop it, and the lease with it. */
  function drop(connection: pg.Client | undefined, reason?: string): void {
    if (connection === undefined || connection !== client) return;
    client = undefined;
    pid = undefined;
    connection.end().catch(() => undefined);
    if (reason !== undefined) options.onProblem?.(reason);
    if (held) {
      held = false;
      emit(false);
    }
  }

  async function connect(): Promise<pg.Client> {
    const connection = new pg.Client({
      connectionString: options.url,
      connectionTimeoutMillis: 10_000,
      query_timeout: 10_000,
      keepAlive: true,
      application_name: 'tresor-sequencer-lease',
    });
    connection.on('error', (error) => drop(connection, reasonOf(error)));
    connection.on('end', () => drop(connection, 'the lock connection ended'));
    await connection.connect();
    return connection;
  }

  async function tick(): Promise<void> {
    if (closed) return;
    const connection = client;
    try {
      if (connection !== undefined && held) {
        await connection.query('SELECT 1');
        return;
      }
      let c = connection;
      if (c === undefined) {
        c = await connect();
        client = c;
      }
      const taken = await c.query<{ ok: boolean; pid: number }>(
        'SELECT pg_try_advisory_lock($1, $2) AS ok, pg_backend_pid() AS pid',
        [classKey, objectKey],
      );
      const row = taken.rows[0];
      if (closed || c !== client) {
        await c.end().catch(() => undefined);
        return;
      }
      if (row?.ok === true) {
        pid = row.pid;
        held = true;
        emit(true);
      }
    } catch (error) {
      const c = client;
      if (c === undefined) return;
      drop(c, reasonOf(error));
    }
  }

  function schedule(): void {
    if (closed) return;
    timer = setTimeout(() => {
      ticking = tick().finally(() => {
        ticking = undefined;
        schedule();
      });
    }, retryMs);
    timer.unref();
  }

  return {
    held: () => held,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async fence(trx: Transaction<unknown>) {
      const owner = pid;
      const found =
        held && owner !== undefined
          ? await sql<{ one: number }>`
              SELECT 1 AS one FROM pg_locks
               WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND classid = ${classKey} AND objid = ${objectKey} AND objsubid = 2
                 AND pid = ${owner}`.execute(trx)
          : { rows: [] };
      if (found.rows.length === 0)
        throw new TresorError(
          'TRESOR_ERR_UNAVAILABLE',
          'this process does not hold the audit sequencer lock',
        );
    },
    async start() {
      ticking = tick().finally(() => {
        ticking = undefined;
      });
      await ticking;
      schedule();
    },
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await ticking;
      const c = client;
      client = undefined;
      pid = undefined;
      if (held) {
        held = false;
        emit(false);
      }
      // Ending the session releases its advisory locks.
      await c?.end().catch(() => undefined);
    },
  };
}

function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const safe = message.replace(/postgres(?:ql)?:\/\/\S*/gi, '[database url]');
  return typeof code === 'string' ? `${safe} (${code})` : safe;
}
