/**
 * Throughput by tenant count: audited reads and writes of 1 KiB records at a bounded concurrency,
 * spread uniformly over 1, 100, 1,000, 10,000 tenants, and concentrated (90 % of requests on 10 % of
 * them), each size's rate shown as a ratio to the 1-tenant rate of the same run and operation.
 *
 * One server child (scale-tenants-child.ts) per backend holds the largest count of tenants, made in
 * the stores through its services (not HTTP); a size of n loads the first n of them, so every size
 * runs on the same files, keyd and server, and a size differs from the next only in how many tenants
 * the requests touch. Each request carries its tenant's own API key.
 *
 * Beside each rate: the server's group-commit transactions per request — SQLite: one fsync of a file
 * each (tenant files summed, plus the control store), PostgreSQL: one WAL flush each (the writer all
 * tenants share, plus the control store's) — and tenant stores opened and evicted per second, read
 * from the server's metrics listener (tresor_tenant_store_commit_batches_total and the others,
 * src/monitor/store-metrics.ts) before and after the measured window. Not counted: the audit
 * sequencer's own commits on its worker thread (batches of 64 entries and more) and SQLite's
 * checkpoints. Before each warm-up the bench waits until the server's writers have committed nothing
 * for 1.5 s (settle), so no figure pays for the fixtures' or the previous window's background work
 * (outbox removal in every store written, pending marks cleared).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDevTls } from '../src/config/dev-tls.ts';
import { startChild, startDevKeyd } from './children.ts';
import { COLLECTION, load, recordTemplate, type Target } from './http.ts';
import type { Rate } from './measure.ts';
import type { Fact, Figure, FigureGroup, Section } from './report.ts';
import type { ScaleTenant, ScaleTenantsChildAddress, ScaleTenantsChildArgs } from './scale-tenants-child.ts';

export const DEFAULT_SCALE_TENANTS = [1, 100, 1_000, 10_000];
export const SCALE_OPERATIONS = ['read', 'write'] as const;
export type ScaleOperation = (typeof SCALE_OPERATIONS)[number];
export type Spread = 'uniform' | 'concentrated';

/** Concentrated load: this share of requests goes to the hot tenants… */
const HOT_SHARE = 0.9;
/** …which are this share of the tenants. */
const HOT_TENANTS = 0.1;
/** Making 10,000 tenants takes minutes: the child's start is given this long. */
const MAKE_TIMEOUT_MS = 60 * 60_000;

export interface ScaleTenantsOptions {
  /** A private temporary folder (data folder, logs). */
  dir: string;
  /** Tenant counts, ascending; the first is the baseline of the ratios. */
  sizes: number[];
  /** Measured seconds per figure, after a warm-up. */
  seconds: number;
  concurrency: number;
  recordsPerTenant: number;
  operations: readonly ScaleOperation[];
  logLevel: string;
  /** A fresh PostgreSQL database for the server's stores; absent: SQLite files in `dir`. */
  databaseUrl?: string;
  progress(message: string): void;
  onCleanup(step: () => Promise<void>): void;
}

export interface ScaleRun {
  operation: ScaleOperation;
  spread: Spread;
  tenants: number;
  rate: Rate;
  p99Ms: number;
  /** Group-commit transactions of the server's writers per request (tenant stores, control store). */
  commitsPerRequest: { tenant: number; control: number };
  /** Tenant stores opened and evicted per second during the window. */
  opensPerSecond: number;
  evictionsPerSecond: number;
  /** Mean writes per tenant-store transaction. */
  meanTenantBatch: number;
}

export interface ScaleTenantsSection extends Section {
  runs: ScaleRun[];
}

/** Picks a tenant index in [0, n): uniformly, or 90 % of picks among the first 10 %. */
export function tenantPicker(n: number, spread: Spread, random = Math.random): () => number {
  if (spread === 'uniform' || n < 2) return () => Math.floor(random() * n);
  const hot = Math.max(1, Math.round(n * HOT_TENANTS));
  return () => (random() < HOT_SHARE ? Math.floor(random() * hot) : hot + Math.floor(random() * (n - hot)));
}

const COUNTERS = [
  'tresor_tenant_store_commit_batches_total',
  'tresor_tenant_store_commit_jobs_total',
  'tresor_store_commit_batches_total',
  'tresor_tenant_stores_opened_total',
  'tresor_tenant_stores_evicted_total',
] as const;
type Counters = Record<(typeof COUNTERS)[number], number>;

/** The store counters of one scrape of the server's metrics listener. */
async function readCounters(metricsUrl: string): Promise<Counters> {
  const res = await fetch(new URL('/metrics', metricsUrl));
  if (!res.ok) throw new Error(`metrics listener answered ${res.status}`);
  const text = await res.text();
  const out = {} as Counters;
  for (const name of COUNTERS) {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    if (line === undefined) throw new Error(`the scrape has no ${name}`);
    out[name] = Number(line.slice(name.length + 1));
  }
  return out;
}

/** Quiet: no commit of the server's writers for this long (the last window's outbox removals done). */
const SETTLED_MS = 1_500;
/** Waited for quiet at most before a window (then it is measured anyway). */
const SETTLE_TIMEOUT_MS = 120_000;

/**
 * Waits until the server's writers commit nothing for SETTLED_MS: after the fixtures (the sequencer's
 * outbox removal in every tenant store, the pending marks' clears) and after each window, so no
 * figure pays for the previous one's background work. Gives up after SETTLE_TIMEOUT_MS.
 */
async function settle(metricsUrl: string): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  const commits = async () => {
    const c = await readCounters(metricsUrl);
    return c.tresor_tenant_store_commit_batches_total + c.tresor_store_commit_batches_total;
  };
  let last = await commits();
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, SETTLED_MS));
    const now = await commits();
    if (now === last) return;
    last = now;
  }
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

const recordsPath = `/v1/collections/${COLLECTION}/records`;

function requestsOf(
  operation: ScaleOperation,
  tenants: ScaleTenant[],
  pick: () => number,
  template: ReturnType<typeof recordTemplate>,
  emails: { next: number },
) {
  const tenantAt = () => tenants[pick()] as ScaleTenant;
  if (operation === 'read') {
    return [
      {
        method: 'GET' as const,
        setupRequest: (request: { headers?: Record<string, string> }) => {
          const t = tenantAt();
          const id = t.records[Math.floor(Math.random() * t.records.length)];
          return {
            ...request,
            path: `${recordsPath}/${id}`,
            headers: { ...request.headers, authorization: `Bearer ${t.apiKey}` },
          };
        },
      },
    ];
  }
  return [
    {
      method: 'POST' as const,
      path: recordsPath,
      headers: { 'content-type': 'application/json' },
      setupRequest: (request: { headers?: Record<string, string> }) => ({
        ...request,
        body: template.body(emails.next++),
        headers: { ...request.headers, authorization: `Bearer ${tenantAt().apiKey}` },
      }),
    },
  ];
}

export async function benchScaleTenants(options: ScaleTenantsOptions): Promise<ScaleTenantsSection> {
  const { dir, progress } = options;
  const backend = options.databaseUrl ? 'PostgreSQL' : 'SQLite';
  const largest = Math.max(...options.sizes);
  const template = recordTemplate();

  progress(`scale-tenants (${backend}): starting keyd`);
  const { keyd, socket: keydSocket } = await startDevKeyd('keyd (scale-tenants)', dir, 'scale-keyd');
  options.onCleanup(() => keyd.stop());
  const dataDir = join(dir, 'tresor');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tls = await ensureDevTls(dataDir);
  const ca = readFileSync(tls.caFile);
  const logFile = join(dir, 'scale-tresor.log');
  const childArgs: ScaleTenantsChildArgs = {
    dataDir,
    keydSocket,
    tenants: largest,
    recordsPerTenant: options.recordsPerTenant,
    logLevel: options.logLevel,
    ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
  };
  progress(
    `scale-tenants (${backend}): making ${largest.toLocaleString('en')} tenants in the server's stores`,
  );
  const made = Date.now();
  const child = await startChild<ScaleTenantsChildAddress>(
    'Tresor server (scale-tenants)',
    'bench/scale-tenants-child.ts',
    childArgs,
    logFile,
    [],
    MAKE_TIMEOUT_MS,
  );
  options.onCleanup(() => child.stop());
  const makeSeconds = (Date.now() - made) / 1000;
  const { tenants, metricsUrl } = child.address;
  const target: Target = {
    kind: 'tresor',
    label: `Tresor server (scale-tenants, ${backend})`,
    url: new URL(child.address.url),
    authorization: `Bearer ${(tenants[0] as ScaleTenant).apiKey}`,
    pid: child.pid,
    keydPid: keyd.pid,
    logFile,
    filled: [],
    next: 0,
  };
  const emails = { next: largest * options.recordsPerTenant };

  const runs: ScaleRun[] = [];
  const warmUp = Math.min(1, options.seconds / 4);
  for (const operation of options.operations) {
    for (const size of options.sizes) {
      for (const spread of ['uniform', 'concentrated'] as const) {
        // One tenant, or fewer than ten: concentrated is the uniform load again.
        if (spread === 'concentrated' && size < 10) continue;
        const what = `${operation}, ${size.toLocaleString('en')} tenants, ${spread}`;
        progress(`scale-tenants (${backend}): ${what}`);
        const requests = requestsOf(
          operation,
          tenants.slice(0, size),
          tenantPicker(size, spread),
          template,
          emails,
        );
        await settle(metricsUrl);
        await load(target, `${what} warm-up`, requests, options.concurrency, { seconds: warmUp }, ca);
        const before = await readCounters(metricsUrl);
        const measured = await load(
          target,
          what,
          requests,
          options.concurrency,
          { seconds: options.seconds },
          ca,
        );
        const after = await readCounters(metricsUrl);
        if (measured.requests === 0) {
          throw new Error(
            `scale-tenants (${backend}), ${what}: no request completed within the ${options.seconds} s window ` +
              '(each took longer): the figures would be meaningless; raise --scale-seconds',
          );
        }
        const delta = (name: keyof Counters) => after[name] - before[name];
        const n = measured.requests;
        const seconds = measured.rate.seconds;
        const tenantBatches = delta('tresor_tenant_store_commit_batches_total');
        runs.push({
          operation,
          spread,
          tenants: size,
          rate: measured.rate,
          p99Ms: percentile(measured.latenciesMs.sort(), 0.99),
          commitsPerRequest: {
            tenant: tenantBatches / n,
            control: delta('tresor_store_commit_batches_total') / n,
          },
          opensPerSecond: delta('tresor_tenant_stores_opened_total') / seconds,
          evictionsPerSecond: delta('tresor_tenant_stores_evicted_total') / seconds,
          meanTenantBatch: delta('tresor_tenant_store_commit_jobs_total') / Math.max(1, tenantBatches),
        });
      }
    }
  }
  return scaleSection(options, backend, runs, makeSeconds);
}

function scaleSection(
  options: ScaleTenantsOptions,
  backend: string,
  runs: ScaleRun[],
  makeSeconds: number,
): ScaleTenantsSection {
  const groups: FigureGroup[] = [];
  const facts: Fact[] = [];
  const smallest = options.sizes[0] as number;
  const tenantsText = (n: number) => `${n.toLocaleString('en')} tenant${n === 1 ? '' : 's'}`;
  for (const operation of options.operations) {
    const base = runs.find(
      (r) => r.operation === operation && r.tenants === smallest && r.spread === 'uniform',
    );
    if (!base) continue;
    const baseName = `${tenantsText(smallest)}, uniform`;
    for (const spread of ['uniform', 'concentrated'] as const) {
      const figures: Figure[] = [];
      for (const run of runs.filter((r) => r.operation === operation && r.spread === spread)) {
        const name =
          `${tenantsText(run.tenants)}: ${(run.commitsPerRequest.tenant + run.commitsPerRequest.control).toFixed(2)} ` +
          `commits/req, ${Math.round(run.opensPerSecond)} opens/s, p99 ${run.p99Ms.toFixed(0)} ms`;
        figures.push({
          name,
          rate: run.rate,
          baseline: baseName,
          ratio: run.rate.opsPerSecond / base.rate.opsPerSecond,
        });
      }
      if (figures.length === 0) continue;
      groups.push({
        title: `${operation === 'read' ? 'audited reads, GET' : 'writes, POST'} ${recordsPath}${operation === 'read' ? '/:id' : ''}, ${spread}${
          spread === 'concentrated' ? ` (${HOT_SHARE * 100} % on ${HOT_TENANTS * 100} % of tenants)` : ''
        }, c=${options.concurrency}`,
        // The baseline's own row in the uniform group says its commits and opens; its ratio is 1.
        figures: [{ name: baseName, rate: base.rate, isBaseline: true }, ...figures],
      });
      for (const run of runs.filter((r) => r.operation === operation && r.spread === spread)) {
        facts.push({
          name: `${operation}, ${tenantsText(run.tenants)}, ${spread}: tenant-store commits per request`,
          value: run.commitsPerRequest.tenant,
          unit: `(control store ${run.commitsPerRequest.control.toFixed(3)}; ${run.meanTenantBatch.toFixed(1)} writes per tenant commit; evictions ${Math.round(run.evictionsPerSecond)}/s)`,
        });
      }
    }
  }
  facts.push({
    name: `tenants made in the stores (${Math.max(...options.sizes).toLocaleString('en')}, ${options.recordsPerTenant} records each)`,
    value: makeSeconds,
    unit: 's',
  });
  return {
    id: options.databaseUrl ? 'scale-tenants-pg' : 'scale-tenants',
    title: `Scale by tenant count on ${backend}: 1 KiB records, every request with its tenant's own API key`,
    groups,
    facts,
    notes: [
      `One server holds ${Math.max(...options.sizes).toLocaleString('en')} tenants, made through its services in its own ` +
        'process (keyd key, store, first API key, collection, records: what the HTTP routes write), not over HTTP, which ' +
        `would take far longer; a size of n loads the first n. Each figure ${options.seconds} s after a ` +
        `${Math.min(1, options.seconds / 4)} s warm-up; every response was 2xx (the run fails otherwise).`,
      `Ratios: to the ${tenantsText(smallest)} rate of the same run and operation. Target (scale issue): uniform load ` +
        'over 1,000 and 10,000 tenants ≥ 0.7× the 1-tenant rate.',
      `commits/req: group-commit transactions of the server's writers per request, from its metrics listener — ${
        backend === 'SQLite'
          ? 'on SQLite each is one fsync of one file (tenant files summed, plus the control store)'
          : 'on PostgreSQL each is one WAL flush (the writer all tenants share, plus the control store)'
      }; the sequencer thread's own commits (batches ≥ 64 entries) and checkpoints are not counted. opens/s: tenant ` +
        'stores opened per second (an eviction makes the next use reopen).',
    ],
    runs,
  };
}
