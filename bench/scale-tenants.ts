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
  /**
   * Rounds: every figure is measured once per round, the sizes in ascending order in even rounds and
   * descending in odd ones, and each round's ratios are to that round's baseline — so a machine whose
   * speed drifts during the run (a shared one drifts by a fifth within minutes) moves a ratio's
   * numerator and denominator together. Reported: the median rate and the median of the rounds' ratios.
   */
  rounds: number;
  concurrency: number;
  recordsPerTenant: number;
  operations: readonly ScaleOperation[];
  logLevel: string;
  /** Folder for a V8 CPU profile of the server child (`node --cpu-prof`), written when it stops. */
  cpuProfDir?: string;
  /** A fresh PostgreSQL database for the server's stores; absent: SQLite files in `dir`. */
  databaseUrl?: string;
  progress(message: string): void;
  onCleanup(step: () => Promise<void>): void;
}

export interface ScaleRun {
  /** The round (0-based) this window was measured in. */
  round: number;
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
/**
 * Waited for quiet at most before a window (then it is measured anyway, and the progress says so):
 * at least this long, and more with the tenants made — after the fixtures every tenant's outbox is
 * drained and its removed rows deleted in its own store, one open and commit per tenant.
 */
const SETTLE_TIMEOUT_MS = 120_000;
const SETTLE_TIMEOUT_PER_TENANT_MS = 60;

/**
 * Waits until the server's writers commit nothing for SETTLED_MS: after the fixtures (the sequencer's
 * outbox removal in every tenant store, the pending marks' clears) and after each window, so no
 * figure pays for the previous one's background work. Gives up after `timeoutMs` (false).
 */
async function settle(metricsUrl: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const commits = async () => {
    const c = await readCounters(metricsUrl);
    return c.tresor_tenant_store_commit_batches_total + c.tresor_store_commit_batches_total;
  };
  let last = await commits();
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, SETTLED_MS));
    const now = await commits();
    if (now === last) return true;
    last = now;
  }
  return false;
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
    options.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`],
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
  /** Seconds the first touch of every tenant of a size took (stores opened, keys unwrapped). */
  const touched = new Map<number, number>();
  const warmUp = Math.min(1, options.seconds / 4);
  for (let round = 0; round < options.rounds; round++) {
    for (const operation of options.operations) {
      const sizes = round % 2 === 0 ? options.sizes : [...options.sizes].reverse();
      for (const size of sizes) {
        for (const spread of ['uniform', 'concentrated'] as const) {
          // One tenant, or fewer than ten: concentrated is the uniform load again.
          if (spread === 'concentrated' && size < 10) continue;
          const what = `${operation}, ${size.toLocaleString('en')} tenants, ${spread}${
            options.rounds > 1 ? ` (round ${round + 1} of ${options.rounds})` : ''
          }`;
          progress(`scale-tenants (${backend}): ${what}`);
          const requests = requestsOf(
            operation,
            tenants.slice(0, size),
            tenantPicker(size, spread),
            template,
            emails,
          );
          // Every tenant of the size is touched once (a read of its first record) before the warm-up,
          // so the window measures the steady state, not the first opening of stores and unwrapping
          // of keys the fixtures' making left cold; the first touch of each size is reported apart.
          const touchStarted = Date.now();
          const sequential = { next: 0 };
          await load(
            target,
            `${what} touch`,
            requestsOf('read', tenants.slice(0, size), () => sequential.next++ % size, template, emails),
            Math.min(options.concurrency, size),
            { amount: size },
            ca,
          );
          if (!touched.has(size)) {
            touched.set(size, (Date.now() - touchStarted) / 1000);
            progress(
              `scale-tenants (${backend}): first touch of ${size.toLocaleString('en')} tenants: ${touched.get(size)?.toFixed(1)} s`,
            );
          }
          const settleMs = Math.max(SETTLE_TIMEOUT_MS, largest * SETTLE_TIMEOUT_PER_TENANT_MS);
          if (!(await settle(metricsUrl, settleMs)))
            progress(
              `scale-tenants (${backend}): ${what}: the writers were still committing after ${settleMs / 1000} s; measured anyway`,
            );
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
            // The run's folder goes at cleanup: the server log's tail is what is left of it.
            const tail = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-20).join('\n');
            progress(
              `scale-tenants (${backend}): ${what}: no request completed; the server log ends:\n${tail}`,
            );
            throw new Error(
              `scale-tenants (${backend}), ${what}: no request completed within the ${options.seconds} s window ` +
                '(each took longer): the figures would be meaningless; raise --scale-seconds',
            );
          }
          const delta = (name: keyof Counters) => after[name] - before[name];
          const n = measured.requests;
          const seconds = measured.rate.seconds;
          const tenantBatches = delta('tresor_tenant_store_commit_batches_total');
          // Each figure as it is measured: a run stopped later still leaves what it measured.
          progress(
            `scale-tenants (${backend}): ${what}: ${measured.rate.opsPerSecond.toFixed(1)}/s, ` +
              `p99 ${percentile(measured.latenciesMs.slice().sort(), 0.99).toFixed(0)} ms, ` +
              `${((tenantBatches + delta('tresor_store_commit_batches_total')) / n).toFixed(2)} commits/req, ` +
              `${(delta('tresor_tenant_stores_opened_total') / seconds).toFixed(0)} opens/s`,
          );
          runs.push({
            round,
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
  }
  return scaleSection(options, backend, runs, makeSeconds, touched);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The run of median rate among `runs` (one per round). */
function medianRun(runs: readonly ScaleRun[]): ScaleRun {
  const sorted = [...runs].sort((a, b) => a.rate.opsPerSecond - b.rate.opsPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)] as ScaleRun;
}

function scaleSection(
  options: ScaleTenantsOptions,
  backend: string,
  runs: ScaleRun[],
  makeSeconds: number,
  touched: ReadonlyMap<number, number>,
): ScaleTenantsSection {
  const groups: FigureGroup[] = [];
  const facts: Fact[] = [];
  const smallest = options.sizes[0] as number;
  const tenantsText = (n: number) => `${n.toLocaleString('en')} tenant${n === 1 ? '' : 's'}`;
  const roundsText = options.rounds > 1 ? ` (median of ${options.rounds} rounds)` : '';
  for (const operation of options.operations) {
    const baseRuns = runs.filter(
      (r) => r.operation === operation && r.tenants === smallest && r.spread === 'uniform',
    );
    if (baseRuns.length === 0) continue;
    const base = medianRun(baseRuns);
    const baseOf = (round: number) => baseRuns.find((r) => r.round === round);
    const baseName = `${tenantsText(smallest)}, uniform`;
    for (const spread of ['uniform', 'concentrated'] as const) {
      const figures: Figure[] = [];
      const sizes = options.sizes.filter((size) =>
        runs.some((r) => r.operation === operation && r.spread === spread && r.tenants === size),
      );
      for (const size of sizes) {
        const sizeRuns = runs.filter(
          (r) => r.operation === operation && r.spread === spread && r.tenants === size,
        );
        const run = medianRun(sizeRuns);
        // Each round's ratio is to the same round's baseline (see ScaleTenantsOptions.rounds).
        const ratios = sizeRuns.flatMap((r) => {
          const b = baseOf(r.round);
          return b ? [r.rate.opsPerSecond / b.rate.opsPerSecond] : [];
        });
        const spreadText =
          ratios.length > 1
            ? `, ratios ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} over ${ratios.length} rounds`
            : '';
        const name =
          `${tenantsText(size)}: ${(run.commitsPerRequest.tenant + run.commitsPerRequest.control).toFixed(2)} ` +
          `commits/req, ${Math.round(run.opensPerSecond)} opens/s, p99 ${run.p99Ms.toFixed(0)} ms${spreadText}`;
        figures.push({ name, rate: run.rate, baseline: baseName, ratio: median(ratios) });
        facts.push({
          name: `${operation}, ${tenantsText(size)}, ${spread}: tenant-store commits per request`,
          value: run.commitsPerRequest.tenant,
          unit: `(control store ${run.commitsPerRequest.control.toFixed(3)}; ${run.meanTenantBatch.toFixed(1)} writes per tenant commit; evictions ${Math.round(run.evictionsPerSecond)}/s)`,
        });
      }
      if (figures.length === 0) continue;
      groups.push({
        title: `${operation === 'read' ? 'audited reads, GET' : 'writes, POST'} ${recordsPath}${operation === 'read' ? '/:id' : ''}, ${spread}${
          spread === 'concentrated' ? ` (${HOT_SHARE * 100} % on ${HOT_TENANTS * 100} % of tenants)` : ''
        }, c=${options.concurrency}${roundsText}`,
        // The baseline's own row in the uniform group says its commits and opens; its ratio is 1.
        figures: [{ name: baseName, rate: base.rate, isBaseline: true }, ...figures],
      });
    }
  }
  for (const [size, seconds] of touched) {
    facts.push({
      name: `first touch of ${tenantsText(size)} after the fixtures (one read each, c=${options.concurrency})`,
      value: seconds,
      unit: `s (${(size / seconds).toFixed(0)} tenants/s)`,
    });
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
      `Ratios: to the ${tenantsText(smallest)} rate of the same run, round and operation${
        options.rounds > 1
          ? "; with rounds, the median of the rounds' ratios and the median round's rate"
          : ''
      }. Target (scale issue): uniform load over 1,000 and 10,000 tenants ≥ 0.7× the 1-tenant rate.`,
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
