/**
 * Audit stream latency, end to end on real processes: a `tresor server` and its keyd (the test
 * stack's helper starts them), a tenant's admin key holding `GET /v1/audit/stream` open over HTTPS,
 * and record creates through the API. For every create, the time from its 201 arriving at the
 * client to its entry (found by record id) arriving on the stream — what the audit issue bounds
 * at one second. Measured idle (one create at a time, a pause between) and under load (creates at
 * concurrency `concurrency`).
 *
 *   npx tsx bench/audit-stream.ts [creates] [concurrency]
 */
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { pathToFileURL } from 'node:url';
import { operatorToken } from '../test/helpers/console.ts';
import { startTresorStack } from '../test/helpers/tresor-stack.ts';

export interface LatencyFigures {
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface AuditStreamBench {
  idle: LatencyFigures;
  loaded: LatencyFigures & { concurrency: number };
}

function figures(samples: number[]): LatencyFigures {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return {
    samples: sorted.length,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

export async function benchAuditStream(options: {
  creates: number;
  concurrency: number;
}): Promise<AuditStreamBench> {
  const s = await startTresorStack({ logLevel: 'warn' });
  try {
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Stream Bench' },
    });
    const key = created.json<{ apiKey: string }>().apiKey;
    await s.request('PUT', '/v1/collections/notes', {
      token: key,
      body: { fields: { text: { type: 'string', classification: 'internal' } } },
    });

    // recordId → when its entry arrived on the stream (ms, performance.now()).
    const seen = new Map<string, number>();
    const waiters = new Map<string, () => void>();
    const url = new URL('/v1/audit/stream', s.url);
    const stream = httpsRequest(url, {
      ca: readFileSync(s.caFile),
      headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' },
    });
    await new Promise<void>((resolve, reject) => {
      stream.on('response', (res) => {
        if (res.statusCode !== 200) reject(new Error(`stream answered ${res.statusCode}`));
        res.setEncoding('utf8');
        let buffered = '';
        res.on('data', (chunk: string) => {
          const now = performance.now();
          buffered += chunk;
          let end = buffered.indexOf('\n\n');
          while (end >= 0) {
            const block = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            const data = block.split('\n').find((l) => l.startsWith('data: '));
            if (data) {
              const entry = JSON.parse(data.slice(6)) as {
                entry: { action: string; target?: { recordIds?: string[] } };
              };
              if (entry.entry.action === 'record.create') {
                for (const id of entry.entry.target?.recordIds ?? []) {
                  seen.set(id, now);
                  waiters.get(id)?.();
                }
              }
            }
            end = buffered.indexOf('\n\n');
          }
        });
        resolve();
      });
      stream.on('error', reject);
      stream.end();
    });

    const createOne = async (): Promise<number> => {
      const res = await s.request('POST', '/v1/collections/notes/records', {
        token: key,
        body: { text: 'x' },
      });
      const acked = performance.now();
      if (res.status !== 201) throw new Error(`create answered ${res.status}`);
      const id = res.json<{ id: string }>().id;
      if (!seen.has(id)) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('entry not on the stream within 10 s')), 10_000);
          waiters.set(id, () => {
            clearTimeout(timer);
            resolve();
          });
        });
        waiters.delete(id);
      }
      return (seen.get(id) as number) - acked;
    };

    for (let i = 0; i < 20; i++) await createOne(); // warm-up
    const idle: number[] = [];
    for (let i = 0; i < options.creates; i++) {
      idle.push(await createOne());
      await new Promise((r) => setTimeout(r, 20));
    }
    const loaded: number[] = [];
    let left = options.creates * 4;
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (left-- > 0) loaded.push(await createOne());
      }),
    );
    stream.destroy();
    return { idle: figures(idle), loaded: { ...figures(loaded), concurrency: options.concurrency } };
  } finally {
    await s.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const creates = Number(process.argv[2] ?? 200);
  const concurrency = Number(process.argv[3] ?? 16);
  const r = await benchAuditStream({ creates, concurrency });
  const f = (x: LatencyFigures) =>
    `p50 ${x.p50Ms.toFixed(1)} ms  p99 ${x.p99Ms.toFixed(1)} ms  max ${x.maxMs.toFixed(1)} ms  (${x.samples})`;
  console.log(`create acknowledged → entry on the stream, idle:            ${f(r.idle)}`);
  console.log(`create acknowledged → entry on the stream, c=${r.loaded.concurrency} load:   ${f(r.loaded)}`);
  process.exit(0);
}
