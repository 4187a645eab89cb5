/**
 * keyd as the server sees it: the latency and outcome of every call (by operation, and by error
 * code when it fails), and at each scrape whether keyd answers at all and whether it is sealed.
 * `observedKeydClient` wraps the client the server hands to every domain, so each call is measured
 * without the domains knowing; the arguments and results (tenant ids, wrapped keys) are never looked
 * at. The scrape asks keyd's `health` with a short deadline, so a hung keyd makes the scrape say
 * `tresor_keyd_up 0` instead of making it hang.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { KeydClient } from '../keyd/client.ts';
import { ERROR_CODE, labelVocabulary, PLAIN_NAME } from './label-values.ts';

/** A key unwrap on a warm connection takes about a millisecond; a reconnect with retries, seconds. */
const CALL_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** How long a scrape waits for keyd's health answer. */
export const KEYD_HEALTH_DEADLINE_MS = 2_000;

export interface KeydMetrics {
  /** The client, each call measured. */
  observe(client: KeydClient): KeydClient;
  /** Where the scrape asks keyd's health (set once the client exists). */
  watch(health: () => Promise<{ status: 'ok' | 'sealed' }>): void;
}

export function keydMetrics(registry: Registry): KeydMetrics {
  const operations = labelVocabulary(PLAIN_NAME, 64);
  const codes = labelVocabulary(ERROR_CODE, 64);
  const calls = new Counter({
    name: 'tresor_keyd_calls_total',
    help: 'Calls to keyd by operation and outcome (ok, or the error code).',
    labelNames: ['operation', 'outcome'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tresor_keyd_call_duration_seconds',
    help: 'Duration of calls to keyd, retries included, by operation.',
    labelNames: ['operation'] as const,
    buckets: CALL_BUCKETS,
    registers: [registry],
  });
  let health: (() => Promise<{ status: 'ok' | 'sealed' }>) | undefined;
  // One health call serves both gauges of a scrape.
  let asked: Promise<'ok' | 'sealed' | 'down'> | undefined;
  const ask = (): Promise<'ok' | 'sealed' | 'down'> => {
    asked ??= withDeadline(health, KEYD_HEALTH_DEADLINE_MS).finally(() => {
      asked = undefined;
    });
    return asked;
  };
  new Gauge({
    name: 'tresor_keyd_up',
    help: '1 when keyd answered its health check at this scrape (sealed or not), else 0.',
    registers: [registry],
    async collect() {
      this.set((await ask()) === 'down' ? 0 : 1);
    },
  });
  new Gauge({
    name: 'tresor_keyd_sealed',
    help: '1 when keyd answered that it is sealed (no key can be used), else 0.',
    registers: [registry],
    async collect() {
      this.set((await ask()) === 'sealed' ? 1 : 0);
    },
  });

  return {
    observe(client) {
      return {
        ...client,
        async call(op, args, caller) {
          const operation = operations.of(String(op));
          const end = duration.startTimer({ operation });
          try {
            const result = await client.call(op, args, caller);
            calls.inc({ operation, outcome: 'ok' });
            return result;
          } catch (error) {
            const code = (error as { code?: unknown } | null)?.code;
            calls.inc({ operation, outcome: typeof code === 'string' ? codes.of(code) : 'other' });
            throw error;
          } finally {
            end();
          }
        },
        close: () => client.close(),
      };
    },
    watch(source) {
      health = source;
    },
  };
}

async function withDeadline(
  health: (() => Promise<{ status: 'ok' | 'sealed' }>) | undefined,
  ms: number,
): Promise<'ok' | 'sealed' | 'down'> {
  if (!health) return 'down';
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'down'>((resolve) => {
    timer = setTimeout(() => resolve('down'), ms);
  });
  try {
    return await Promise.race([health().then((h) => (h.status === 'sealed' ? 'sealed' : 'ok')), late]);
  } catch {
    return 'down';
  } finally {
    clearTimeout(timer);
  }
}
