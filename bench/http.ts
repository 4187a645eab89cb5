import { mkdirSync, readFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { ensureDevTls } from '../src/config/dev-tls.ts';
import { logTail, startChild, startDevKeyd } from './children.ts';
import type { BaselineChildAddress, BaselineChildArgs } from './http-baseline-child.ts';
import type { TresorChildAddress, TresorChildArgs } from './http-tresor-child.ts';
import type { Rate } from './measure.ts';
import type { Fact, Figure, FigureGroup, Section } from './report.ts';

// --- autocannon (CommonJS, no types of its own): the part of its API used here -------------------

interface LoadRequest {
  method?: 'GET' | 'POST';
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (request: LoadRequest, context: Record<string, unknown>) => LoadRequest;
  onResponse?: (status: number, body: string, context: Record<string, unknown>) => void;
}

interface LoadOptions {
  url: string;
  connections: number;
  pipelining: number;
  duration?: number;
  amount?: number;
  timeout: number;
  headers: Record<string, string>;
  requests: LoadRequest[];
  tlsOptions: ConnectionOptions;
}

interface LoadResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  mismatches: number;
  statusCodeStats: Record<string, { count: number }>;
}

interface LoadInstance {
  on(
    event: 'response',
    listener: (client: unknown, status: number, bytes: number, responseTimeMs: number) => void,
  ): void;
}

type Autocannon = (
  options: LoadOptions,
  done: (error: Error | null, result: LoadResult) => void,
) => LoadInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

// --- options and results ------------------------------------------------------------------------

export const HTTP_OPERATIONS = ['write', 'read', 'search'] as const;
/** Also measurable, not by default: GET /healthz — TLS, HTTP and the framework, no auth, no store. */
export const HTTP_EXTRA_OPERATIONS = ['healthz'] as const;
export type HttpOperation = (typeof HTTP_OPERATIONS)[number] | (typeof HTTP_EXTRA_OPERATIONS)[number];

export interface HttpBenchOptions {
  /** A private temporary folder (data folders, logs). */
  dir: string;
  /** Measured seconds per run, after a warm-up. */
  seconds: number;
  concurrencies: number[];
  operations: readonly HttpOperation[];
  /** Records written into each server before measuring (the read and search targets). */
  records: number;
  /** Pino level of both servers' logs (`info`: one line per request, as Tresor runs by default). */
  logLevel: string;
  /** Folder for V8 CPU profiles of the two servers (`node --cpu-prof`), written when they stop. */
  cpuProfDir?: string;
  /**
   * PostgreSQL databases for the two servers' stores (Tresor's `database.url`; the baseline's
   * openPgStore), on the same server; absent: both on SQLite files in `dir`.
   */
  databases?: { tresor: string; baseline: string };
  progress(message: string): void;
  /** Registers an undo step (stop a child), run at the end whatever happens. */
  onCleanup(step: () => Promise<void>): void;
}

export type ServerKind = 'baseline' | 'tresor';

export interface HttpRun {
  server: ServerKind;
  operation: HttpOperation;
  concurrency: number;
  /** 2xx responses completed within the measured seconds, per second. */
  requestsPerSecond: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** CPU time per request (µs) of the server process, keyd (Tresor only) and the load generator; Linux only. */
  cpuUsPerRequest?: { server: number; keyd?: number; loadGenerator: number };
  rate: Rate;
}

export interface HttpTarget {
  name: string;
  value: number;
  unit: string;
  met: boolean;
}

export interface HttpSection extends Section {
  runs: HttpRun[];
  targets: HttpTarget[];
}

// --- records of 1 KiB ---------------------------------------------------------------------------

export const COLLECTION = 'people';
/** UTF-8 bytes of field values per record, framing not counted. */
export const FIELD_BYTES = 1024;

export const COLLECTION_DECLARATION = {
  fields: {
    name: { type: 'string', classification: 'personal', required: true },
    email: { type: 'string', classification: 'personal', required: true, searchable: true },
    phone: { type: 'string', classification: 'personal' },
    street: { type: 'string', classification: 'personal' },
    city: { type: 'string', classification: 'personal' },
    notes: { type: 'string', classification: 'confidential' },
  },
};

/** Emails are all the same length, so every record carries exactly FIELD_BYTES of values. */
function emailOf(n: number): string {
  return `customer${String(n).padStart(10, '0')}@bench.example.com`;
}

/** JSON bodies built around a changing email: one concatenation per request. */
export function recordTemplate(): {
  body(n: number): string;
  data(n: number): Record<string, string> & { email: string };
} {
  const fixed = {
    name: 'Ada Augusta King, Countess of Lovelace',
    phone: '+44 20 7946 0958',
    street: '12 St James’s Square, Westminster',
    city: 'London SW1Y 4LB, United Kingdom',
  };
  const used = Object.values(fixed).reduce((sum, v) => sum + Buffer.byteLength(v), 0);
  const notes = 'Prefers contact by letter. '.repeat(40).slice(0, FIELD_BYTES - used - emailOf(0).length);
  // In the collection's field order, which is the order Tresor returns them in.
  const data = (n: number) => ({
    name: fixed.name,
    email: emailOf(n),
    phone: fixed.phone,
    street: fixed.street,
    city: fixed.city,
    notes,
  });
  const sample = data(0);
  const bytes = Object.values(sample).reduce((sum, v) => sum + Buffer.byteLength(v), 0);
  if (bytes !== FIELD_BYTES) throw new Error(`record template holds ${bytes} bytes, not ${FIELD_BYTES}`);
  const marker = emailOf(0);
  const [before, after] = JSON.stringify(sample).split(marker) as [string, string];
  return { body: (n) => `${before}${emailOf(n)}${after}`, data };
}

// --- children -----------------------------------------------------------------------------------

// --- a verified HTTPS client for set-up and checks ----------------------------------------------

export interface Target {
  kind: ServerKind;
  label: string;
  url: URL;
  authorization: string;
  /** Server and keyd pids, for CPU accounting. */
  pid: number;
  keydPid?: number;
  logFile: string;
  /** Filled records: their ids and email numbers. */
  filled: { id: string; n: number }[];
  /** The next email number for a write. */
  next: number;
}

export async function httpsJson(
  agent: Agent,
  target: Target,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(path, target.url),
      {
        method,
        agent,
        headers: {
          authorization: target.authorization,
          ...(payload
            ? { 'content-type': 'application/json', 'content-length': String(payload.length) }
            : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, json: text ? (JSON.parse(text) as unknown) : undefined });
          } catch (error) {
            reject(error);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export function expectStatus(
  target: Target,
  what: string,
  got: { status: number; json: unknown },
  status: number,
) {
  if (got.status !== status) {
    throw new Error(
      `${target.label}: ${what} answered ${got.status}, not ${status}: ${JSON.stringify(got.json)}`,
    );
  }
}

const recordsPath = `/v1/collections/${COLLECTION}/records`;
/** Searches send the searched value in a POST body, never in the URL (ASVS 14.2.1). */
const searchPath = `${recordsPath}/search`;
const searchBody = (email: string) => JSON.stringify({ where: { email } });

/** One write, read and search through a client that trusts only the dev CA; the data must round-trip. */
async function checkRoundTrip(agent: Agent, target: Target, template: ReturnType<typeof recordTemplate>) {
  const n = target.next++;
  const data = template.data(n);
  const created = await httpsJson(agent, target, 'POST', recordsPath, data);
  expectStatus(target, 'POST record', created, 201);
  const id = (created.json as { id: string }).id;
  const read = await httpsJson(agent, target, 'GET', `${recordsPath}/${id}`);
  expectStatus(target, 'GET record', read, 200);
  const got = (read.json as { data: Record<string, unknown> }).data;
  const sameData = (a: Record<string, unknown>, b: Record<string, unknown>) =>
    JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
  if (!sameData(got, data)) {
    throw new Error(`${target.label}: the record read back differs from the one written`);
  }
  const found = await httpsJson(agent, target, 'POST', searchPath, { where: { email: data.email } });
  expectStatus(target, 'search', found, 200);
  const records = (found.json as { records: { id: string }[] }).records;
  if (records.length !== 1 || records[0]?.id !== id) {
    throw new Error(`${target.label}: search by email found ${records.length} records, not the one written`);
  }
}

// --- load ---------------------------------------------------------------------------------------

const NS_PER_S = 1e9;
const SLICES = 5;
const LOAD_TIMEOUT_S = 30;
const now = (): number => Number(process.hrtime.bigint());

/** User + system CPU seconds of a process so far (Linux /proc), or undefined elsewhere. */
function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of proc(5), in clock ticks (USER_HZ, 100 on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

export function requestsFor(
  operation: HttpOperation,
  target: Target,
  template: ReturnType<typeof recordTemplate>,
): LoadRequest[] {
  const pick = () => {
    const record = target.filled[Math.floor(Math.random() * target.filled.length)];
    if (!record) throw new Error('no filled records to read');
    return record;
  };
  switch (operation) {
    case 'write':
      return [
        {
          method: 'POST',
          path: recordsPath,
          headers: { 'content-type': 'application/json' },
          setupRequest: (request) => ({ ...request, body: template.body(target.next++) }),
        },
      ];
    case 'read':
      return [
        { method: 'GET', setupRequest: (request) => ({ ...request, path: `${recordsPath}/${pick().id}` }) },
      ];
    case 'search':
      return [
        {
          method: 'POST',
          path: searchPath,
          headers: { 'content-type': 'application/json' },
          setupRequest: (request) => ({ ...request, body: searchBody(emailOf(pick().n)) }),
        },
      ];
    case 'healthz':
      return [{ method: 'GET', path: '/healthz' }];
  }
}

export interface LoadRun {
  requests: number;
  latenciesMs: Float64Array;
  rate: Rate;
  cpu?: { server: number; keyd?: number; loadGenerator: number };
}

function failOnErrors(target: Target, what: string, result: LoadResult): void {
  if (result.errors + result.timeouts + result.non2xx + result.mismatches === 0) return;
  const tail = logTail(target.logFile);
  throw new Error(
    `${target.label}, ${what}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx ` +
      `answers (status codes ${JSON.stringify(result.statusCodeStats)}); the figures would be meaningless` +
      `${tail ? `\n--- ${target.label} log (${target.logFile}) ---\n${tail}` : ''}`,
  );
}

/** Runs autocannon for `seconds` (or `amount` requests) and measures what it got. */
export async function load(
  target: Target,
  what: string,
  requests: LoadRequest[],
  concurrency: number,
  limit: { seconds: number } | { amount: number },
  ca: Buffer,
): Promise<LoadRun> {
  const seconds = 'seconds' in limit ? limit.seconds : Number.POSITIVE_INFINITY;
  const latencies: number[] = [];
  const sliceCounts = new Array<number>(SLICES).fill(0);
  const cpuBefore = {
    server: processCpuSeconds(target.pid),
    keyd: processCpuSeconds(target.keydPid),
    self: process.cpuUsage(),
  };
  const start = now();
  const end = start + seconds * NS_PER_S;
  const sliceNs = (seconds * NS_PER_S) / SLICES;
  const result = await new Promise<LoadResult>((resolve, reject) => {
    const instance = autocannon(
      {
        url: target.url.origin,
        connections: concurrency,
        pipelining: 1,
        ...('seconds' in limit ? { duration: limit.seconds } : { amount: limit.amount }),
        timeout: LOAD_TIMEOUT_S,
        headers: { authorization: target.authorization },
        requests,
        tlsOptions: { ca },
      },
      (error, res) => (error ? reject(error) : resolve(res)),
    );
    instance.on('response', (_client, status, _bytes, responseTimeMs) => {
      const t = now();
      if (t > end || status < 200 || status > 299) return;
      latencies.push(responseTimeMs);
      if (!Number.isFinite(sliceNs)) return;
      const slice = Math.min(SLICES - 1, Math.floor((t - start) / sliceNs));
      sliceCounts[slice] = (sliceCounts[slice] ?? 0) + 1;
    });
  });
  const elapsedS = Math.min(now() - start, end - start) / NS_PER_S;
  failOnErrors(target, what, result);

  const server = processCpuSeconds(target.pid);
  const keyd = processCpuSeconds(target.keydPid);
  const self = process.cpuUsage(cpuBefore.self);
  const n = latencies.length;
  const perRequestUs = (cpuSeconds: number) => (n > 0 ? (cpuSeconds * 1e6) / n : 0);
  let cpu: LoadRun['cpu'];
  if (server !== undefined && cpuBefore.server !== undefined) {
    cpu = {
      server: perRequestUs(server - cpuBefore.server),
      loadGenerator: perRequestUs((self.user + self.system) / 1e6),
    };
    if (keyd !== undefined && cpuBefore.keyd !== undefined) cpu.keyd = perRequestUs(keyd - cpuBefore.keyd);
  }
  const slices = Number.isFinite(sliceNs) ? sliceCounts.map((c) => (c * NS_PER_S) / sliceNs) : [];
  const opsPerSecond = n / elapsedS;
  return {
    requests: n,
    latenciesMs: Float64Array.from(latencies),
    rate: {
      opsPerSecond,
      min: slices.length > 0 ? Math.min(...slices) : opsPerSecond,
      max: slices.length > 0 ? Math.max(...slices) : opsPerSecond,
      operations: n,
      seconds: elapsedS,
    },
    ...(cpu ? { cpu } : {}),
  };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

/** Writes `count` records through the server (64 at a time) and remembers their ids. */
async function fill(target: Target, count: number, template: ReturnType<typeof recordTemplate>, ca: Buffer) {
  const pending = new Map<string, number>();
  let unknown = 0;
  await load(
    target,
    'filling',
    [
      {
        method: 'POST',
        path: recordsPath,
        headers: { 'content-type': 'application/json' },
        setupRequest: (request) => {
          const n = target.next++;
          pending.set(emailOf(n), n);
          return { ...request, body: template.body(n) };
        },
        onResponse: (status, body) => {
          if (status !== 201) return;
          const record = JSON.parse(body) as { id: string; data: { email: string } };
          const n = pending.get(record.data.email);
          if (n === undefined) {
            unknown++;
            return;
          }
          pending.delete(record.data.email);
          target.filled.push({ id: record.id, n });
        },
      },
    ],
    64,
    { amount: count },
    ca,
  );
  if (unknown > 0)
    throw new Error(`${target.label}: ${unknown} created records came back with an email never sent`);
  if (target.filled.length < count) {
    throw new Error(`${target.label}: filled ${target.filled.length} of ${count} records`);
  }
}

// --- the section --------------------------------------------------------------------------------

const LABEL: Record<ServerKind, string> = { baseline: 'plain server', tresor: 'Tresor' };

const ROUTES: Record<HttpOperation, string> = {
  write: `POST ${recordsPath}`,
  read: `GET ${recordsPath}/:id`,
  search: `POST ${searchPath} {where: {email}}`,
  healthz: 'GET /healthz (no auth, no store: the floor)',
};

function latencyText(run: HttpRun): string {
  const ms = (v: number) => (v >= 10 ? v.toFixed(1) : v.toFixed(2));
  return `p50 ${ms(run.p50Ms)} ms, p99 ${ms(run.p99Ms)} ms`;
}

/** The issue's targets at the highest concurrency measured (64 by default). */
function targetsOf(runs: HttpRun[], concurrency: number): HttpTarget[] {
  const get = (server: ServerKind, operation: HttpOperation) =>
    runs.find((r) => r.server === server && r.operation === operation && r.concurrency === concurrency);
  const targets: HttpTarget[] = [];
  for (const [operation, floor] of [
    ['write', 8_000],
    ['read', 12_000],
  ] as const) {
    const tresor = get('tresor', operation);
    const baseline = get('baseline', operation);
    if (!tresor || !baseline) continue;
    const ratio = tresor.requestsPerSecond / baseline.requestsPerSecond;
    targets.push({
      name: `c=${concurrency} ${operation}s ≥ 0.50× baseline`,
      value: ratio,
      unit: '×',
      met: ratio >= 0.5,
    });
    targets.push({
      name: `c=${concurrency} ${operation}s ≥ ${floor.toLocaleString('en-US')}/s`,
      value: tresor.requestsPerSecond,
      unit: '/s',
      met: tresor.requestsPerSecond >= floor,
    });
  }
  for (const operation of HTTP_OPERATIONS) {
    const tresor = get('tresor', operation);
    if (!tresor) continue;
    targets.push({
      name: `c=${concurrency} ${operation} p99 < 25 ms`,
      value: tresor.p99Ms,
      unit: 'ms',
      met: tresor.p99Ms < 25,
    });
  }
  return targets;
}

export async function benchHttp(options: HttpBenchOptions): Promise<HttpSection> {
  const { dir, progress } = options;
  const template = recordTemplate();
  const nodeArgs = options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] : [];
  if (options.cpuProfDir) mkdirSync(options.cpuProfDir, { recursive: true });

  progress('http: starting keyd, the Tresor server and the baseline server');
  const { keyd, socket: keydSocket } = await startDevKeyd('keyd (http)', dir, 'http-keyd');
  options.onCleanup(() => keyd.stop());

  const tresorDir = join(dir, 'http-tresor');
  mkdirSync(tresorDir, { recursive: true, mode: 0o700 });
  const tls = await ensureDevTls(tresorDir); // the server reuses these; the baseline gets the same files
  const ca = readFileSync(tls.caFile);
  const tresorLog = join(dir, 'http-tresor.log');
  const tresorArgs: TresorChildArgs = {
    dataDir: tresorDir,
    keydSocket,
    logLevel: options.logLevel,
    ...(options.databases ? { databaseUrl: options.databases.tresor } : {}),
  };
  const tresor = await startChild<TresorChildAddress>(
    'Tresor server',
    'bench/http-tresor-child.ts',
    tresorArgs,
    tresorLog,
    nodeArgs,
  );
  options.onCleanup(() => tresor.stop());

  const baselineDir = join(dir, 'http-baseline');
  mkdirSync(baselineDir, { recursive: true, mode: 0o700 });
  const baselineLog = join(dir, 'http-baseline.log');
  const baselineArgs: BaselineChildArgs = {
    dataDir: baselineDir,
    certFile: tls.certFile,
    keyFile: tls.keyFile,
    logLevel: options.logLevel,
    ...(options.databases ? { databaseUrl: options.databases.baseline } : {}),
  };
  const baseline = await startChild<BaselineChildAddress>(
    'baseline server',
    'bench/http-baseline-child.ts',
    baselineArgs,
    baselineLog,
    nodeArgs,
  );
  options.onCleanup(() => baseline.stop());

  const targets: Record<ServerKind, Target> = {
    baseline: {
      kind: 'baseline',
      label: 'baseline server',
      url: new URL(baseline.address.url),
      authorization: `Bearer ${baseline.address.token}`,
      pid: baseline.pid,
      logFile: baselineLog,
      filled: [],
      next: 0,
    },
    tresor: {
      kind: 'tresor',
      label: 'Tresor server',
      url: new URL(tresor.address.url),
      authorization: `Bearer ${tresor.address.apiKey}`,
      pid: tresor.pid,
      keydPid: keyd.pid,
      logFile: tresorLog,
      filled: [],
      next: 0,
    },
  };

  // Set-up and checks through a client that verifies the certificate against the dev CA only.
  const agent = new Agent({ ca, keepAlive: true, rejectUnauthorized: true });
  try {
    const put = await httpsJson(
      agent,
      targets.tresor,
      'PUT',
      `/v1/collections/${COLLECTION}`,
      COLLECTION_DECLARATION,
    );
    expectStatus(targets.tresor, 'PUT collection', put, 201);
    for (const target of Object.values(targets)) await checkRoundTrip(agent, target, template);
  } finally {
    agent.destroy();
  }

  for (const target of Object.values(targets)) {
    progress(`http: filling the ${LABEL[target.kind]} with ${options.records} records`);
    await fill(target, options.records, template, ca);
  }

  const runs: HttpRun[] = [];
  const warmUp = Math.min(1, options.seconds / 4);
  for (const operation of options.operations) {
    for (const concurrency of options.concurrencies) {
      for (const kind of ['baseline', 'tresor'] as const) {
        const target = targets[kind];
        progress(`http: ${operation}, concurrency ${concurrency}, ${LABEL[kind]}`);
        const requests = requestsFor(operation, target, template);
        await load(target, `${operation} warm-up`, requests, concurrency, { seconds: warmUp }, ca);
        const measured = await load(
          target,
          operation,
          requests,
          concurrency,
          { seconds: options.seconds },
          ca,
        );
        const sorted = measured.latenciesMs.sort();
        const mean = sorted.reduce((sum, v) => sum + v, 0) / Math.max(1, sorted.length);
        runs.push({
          server: kind,
          operation,
          concurrency,
          requestsPerSecond: measured.rate.opsPerSecond,
          requests: measured.requests,
          p50Ms: percentile(sorted, 0.5),
          p99Ms: percentile(sorted, 0.99),
          meanMs: mean,
          ...(measured.cpu ? { cpuUsPerRequest: measured.cpu } : {}),
          rate: measured.rate,
        });
      }
    }
  }

  const groups: FigureGroup[] = [];
  const facts: Fact[] = [];
  for (const operation of options.operations) {
    for (const concurrency of options.concurrencies) {
      const of = (server: ServerKind) =>
        runs.find((r) => r.server === server && r.operation === operation && r.concurrency === concurrency);
      const b = of('baseline');
      const t = of('tresor');
      if (!b || !t) continue;
      const base: Figure = { name: `${LABEL.baseline}, ${latencyText(b)}`, rate: b.rate, isBaseline: true };
      const figure: Figure = {
        name: `Tresor, ${latencyText(t)}`,
        rate: t.rate,
        baseline: LABEL.baseline,
        ratio: t.requestsPerSecond / b.requestsPerSecond,
      };
      groups.push({
        title: `${operation}: ${ROUTES[operation]}, concurrency ${concurrency}`,
        figures: [base, figure],
      });
      if (t.cpuUsPerRequest && b.cpuUsPerRequest) {
        const keydText =
          t.cpuUsPerRequest.keyd === undefined ? '' : ` + keyd ${Math.round(t.cpuUsPerRequest.keyd)}`;
        facts.push({
          name: `server CPU per request, ${operation}, concurrency ${concurrency}`,
          value: t.cpuUsPerRequest.server,
          unit:
            `µs Tresor${keydText}; plain ${Math.round(b.cpuUsPerRequest.server)} µs; load generator ` +
            `${Math.round(t.cpuUsPerRequest.loadGenerator)} / ${Math.round(b.cpuUsPerRequest.loadGenerator)} µs`,
        });
      }
    }
  }
  const high = Math.max(...options.concurrencies);
  const targetChecks = targetsOf(runs, high);
  for (const target of targetChecks) {
    facts.push({
      name: `target: ${target.name}`,
      value: target.value,
      unit: `${target.unit}  ${target.met ? 'met' : 'MISSED'}`,
    });
  }
  const pgNote = options.databases
    ? [
        'On PostgreSQL: both servers on databases of one PostgreSQL server on this machine (Tresor: database.url; ' +
          'the plain server: the same openPgStore — pool, group commit, synchronous_commit on); PostgreSQL shares ' +
          'the 2 cores with the servers and the load generator.',
      ]
    : [];
  return {
    id: options.databases ? 'http-pg' : 'http',
    title: `e. HTTPS API${options.databases ? ' on PostgreSQL' : ''}, 1 KiB records (autocannon, keep-alive)`,
    groups,
    facts,
    notes: [
      `${options.records} records filled per server first; each figure ${options.seconds} s after a ${warmUp} s ` +
        'warm-up; baseline and Tresor measured back to back. Latency: autocannon per-request time, full resolution. ' +
        'Every response was 2xx (the run fails otherwise).',
      `Plain server: Fastify 5 + HTTPS (same certificate and TLS policy) + the same group-commit ${
        options.databases ? 'PostgreSQL store (openPgStore)' : 'SQLite store (WAL, synchronous=FULL)'
      }, a constant bearer token, plaintext JSON column, indexed email column; ` +
        'no encryption, no blind index, no audit, no rate limit.',
      'autocannon does not verify the server certificate (rejectUnauthorized is hard-wired off); each server ' +
        'was first checked with a client that trusts only the dev CA.',
      'CPU per request: user+system time of the server process (and keyd) during the run ÷ requests; the ' +
        'load generator is the bench process (Tresor / plain). Targets are information, not assertions.',
      ...pgNote,
    ],
    runs,
    targets: targetChecks,
  };
}
