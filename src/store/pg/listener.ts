/**
 * LISTEN on a PostgreSQL database, for the processes of one deployment to wake each other: one
 * dedicated connection (outside every pool) that LISTENs on the given channels and hands each
 * notification's payload on. PostgreSQL delivers a NOTIFY only when its transaction commits, so a
 * notification always names something already durable.
 *
 * Notifications are a wake-up, never the only way: while the connection is down (a server restart,
 * a network cut) they are lost, so every user keeps a bounded sweep of its own, and `onConnected`
 * runs each time the connection is (re)established so the user looks at once at what it may have
 * missed. The connection is retried every `retryMs` until close().
 */
import pg from 'pg';
import { quoteIdent } from './pool.ts';

export interface PgListenerOptions {
  /** The database URL (it may hold a password: never shown). */
  url: string;
  channels: readonly string[];
  onNotification(channel: string, payload: string): void;
  /** The LISTENs are in place (first time, and after each reconnection). */
  onConnected?(): void;
  /** The connection failed or ended (for the operator's log: the reason, never the URL). */
  onProblem?(reason: string): void;
  /** Between tries to connect (default 1 s). */
  retryMs?: number;
}

export interface PgListener {
  /** Resolves once the first connection is listening (or failed: the retries go on). */
  readonly ready: Promise<void>;
  /** Whether the LISTENs are in place now. */
  listening(): boolean;
  close(): Promise<void>;
}

export function listenPg(options: PgListenerOptions): PgListener {
  const retryMs = options.retryMs ?? 1_000;
  let client: pg.Client | undefined;
  let listening = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  function drop(connection: pg.Client, reason: string): void {
    if (connection !== client) return;
    client = undefined;
    listening = false;
    connection.end().catch(() => undefined);
    if (!closed) {
      options.onProblem?.(reason);
      schedule();
    }
  }

  async function connect(): Promise<void> {
    if (closed || client !== undefined) return;
    const connection = new pg.Client({
      connectionString: options.url,
      connectionTimeoutMillis: 10_000,
      keepAlive: true,
      application_name: 'tresor-listener',
    });
    client = connection;
    connection.on('error', (error) => drop(connection, reasonOf(error)));
    connection.on('end', () => drop(connection, 'the listening connection ended'));
    connection.on('notification', (message) => {
      if (connection !== client) return;
      try {
        options.onNotification(message.channel, message.payload ?? '');
      } catch {
        // the handler's failure is its own
      }
    });
    try {
      await connection.connect();
      await connection.query(options.channels.map((c) => `LISTEN ${quoteIdent(c)}`).join('; '));
    } catch (error) {
      drop(connection, reasonOf(error));
      return;
    }
    if (closed || connection !== client) return;
    listening = true;
    try {
      options.onConnected?.();
    } catch {
      // the handler's failure is its own
    }
  }

  function schedule(): void {
    if (closed || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, retryMs);
    timer.unref();
  }

  const ready = connect();
  return {
    ready,
    listening: () => listening,
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await ready;
      const c = client;
      client = undefined;
      listening = false;
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
