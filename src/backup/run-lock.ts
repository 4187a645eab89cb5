/**
 * Who is still making a backup run (issue 18): the node taking a backup holds its run's lock for
 * the run's whole life; recovery (recoverInterrupted) marks a `running` run interrupted only when
 * that run's maker is gone.
 *
 *   PostgreSQL (createPgRunLock): a session-level advisory lock keyed to the run
 *     (`pg_advisory_lock(RUN_LOCK_CLASS, hashtext(id))`) on a connection of its own, held from the
 *     run's start to its end. A node killed mid-backup loses its connection, and PostgreSQL frees a
 *     session's locks when it ends; so `pg_try_advisory_lock` succeeding means the maker is gone
 *     (the lock is released again at once). A live node's run keeps its lock: another node starting,
 *     or the lease holder's periodic recovery, leaves it alone.
 *   SQLite (createLocalRunLock): one process owns the data folder, so the only maker is this
 *     process: a run is gone unless this process is making it now (at start: every run, as always).
 *
 * A hash collision of two run ids only makes recovery wait for the other run to end: never a live
 * run marked interrupted.
 */
import pg from 'pg';

/** The advisory locks' class key for backup runs: 'Tbkr' (the run id's hashtext is the other key). */
export const RUN_LOCK_CLASS = 0x54626b72;

export interface RunLock {
  /** Holds the lock of run `id` until the answer is called (once; it never rejects). */
  hold(id: string): Promise<() => Promise<void>>;
  /** Whether run `id`'s maker is gone (no live process holds its lock). */
  makerGone(id: string): Promise<boolean>;
  /** Ends the lock connections (held locks are released with them). */
  close(): Promise<void>;
}

/** SQLite (one process per data folder): the runs this process is making now. */
export function createLocalRunLock(): RunLock {
  const held = new Set<string>();
  return {
    async hold(id) {
      held.add(id);
      return async () => {
        held.delete(id);
      };
    },
    makerGone: async (id) => !held.has(id),
    close: async () => undefined,
  };
}

const LOCK = `SELECT pg_advisory_lock(${RUN_LOCK_CLASS}, hashtext($1))`;
const TRY_LOCK = `SELECT pg_try_advisory_lock(${RUN_LOCK_CLASS}, hashtext($1)) AS locked`;
const UNLOCK = `SELECT pg_advisory_unlock(${RUN_LOCK_CLASS}, hashtext($1))`;

/** PostgreSQL: each held run on a connection of its own; a try on a short-lived one. */
export function createPgRunLock(options: { url: string }): RunLock {
  const open = new Set<pg.Client>();

  async function connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: options.url,
      connectionTimeoutMillis: 10_000,
      query_timeout: 10_000,
      keepAlive: true,
      application_name: 'tresor-backup-run',
    });
    // A lost connection has lost its lock with it: nothing to do here (the run goes on; at worst a
    // recovery elsewhere marks it interrupted, which is what the run's end then finds recorded).
    client.on('error', () => undefined);
    await client.connect();
    open.add(client);
    return client;
  }

  async function end(client: pg.Client): Promise<void> {
    open.delete(client);
    await client.end().catch(() => undefined);
  }

  return {
    async hold(id) {
      const client = await connect();
      try {
        // The id is new (its run was just recorded): nobody else holds this lock but a colliding id.
        await client.query(LOCK, [id]);
      } catch (error) {
        await end(client);
        throw error;
      }
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        await client.query(UNLOCK, [id]).catch(() => undefined);
        await end(client);
      };
    },
    async makerGone(id) {
      const client = await connect();
      try {
        const { rows } = await client.query<{ locked: boolean }>(TRY_LOCK, [id]);
        if (rows[0]?.locked !== true) return false;
        await client.query(UNLOCK, [id]);
        return true;
      } finally {
        await end(client);
      }
    },
    async close() {
      await Promise.all([...open].map((c) => end(c)));
    },
  };
}
