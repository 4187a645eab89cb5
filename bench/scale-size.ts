/**
 * The size half of the scale bench (`npm run bench -- --only scale-size`): how Tresor's speed and
 * costs change as one collection and the audit log grow, on SQLite or on PostgreSQL (a fresh
 * database per run, bench/pg-database.ts). Each curve is shown with ratios to its smallest size.
 *
 *   1. Records: one tenant, one collection of 1 KiB records (the HTTPS bench's) grown to each size
 *      in turn (10k, 100k, 1M by default) directly in the tenant's store (fixtures-records.ts: the
 *      vault's own sealing and blind index in the server's process, no HTTP — a million POSTs
 *      would take hours), then the real server as a child process over HTTPS under autocannon at
 *      concurrency 32: reads by id, searches by the blind-indexed email, writes, each for a bounded
 *      time. The server restarts between sizes (the fill happens before it announces itself).
 *   2. Audit log: a deployment of its own (its own keyd: keyd signs one log's checkpoints only)
 *      whose log is grown to each size in turn (100k, 1M, 10M by default) directly in the control
 *      store while its server is stopped (fixtures-audit.ts: the sequencer's own sequenceBatch and
 *      INSERTs); the next start's checkpointer signs the grown tree with keyd. Measured:
 *      `tresor audit verify` (the CLI as its own process, time from spawn to exit), disk per entry
 *      (SQLite: control.sqlite and its WAL; PostgreSQL: the audit tables with their indexes and
 *      TOAST, ÷ entries), and server restarts: spawn → listening, spawn → /readyz 200.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ensureDevTls } from '../src/config/dev-tls.ts';
import type { DatabaseConfig } from '../src/config/server-config.ts';
import { openControlOf } from '../src/server/backend.ts';
import { CONTROL_SCHEMA } from '../src/server/control-store.ts';
import { type Child, REPO_ROOT, startChild, startDevKeyd } from './children.ts';
import { growAuditLog } from './fixtures-audit.ts';
import { fixtureRecordId } from './fixtures-records.ts';
import { COLLECTION, load, recordTemplate, type Target } from './http.ts';
import type { Rate } from './measure.ts';
import type { Fact, Figure, FigureGroup, Section } from './report.ts';
import type { ScaleSizeChildAddress, ScaleSizeChildArgs } from './scale-size-tresor-child.ts';

export const DEFAULT_SCALE_RECORDS = [10_000, 100_000, 1_000_000];
export const DEFAULT_SCALE_AUDIT = [100_000, 1_000_000, 10_000_000];

export interface ScaleSizeOptions {
  /** A private temporary folder (data folders, logs). */
  dir: string;
  /** A fresh PostgreSQL database for each deployment (records, audit); absent: SQLite files in `dir`. */
  database?: (label: string) => Promise<string>;
  records: number[];
  audit: number[];
  /** Measured seconds per operation and size, after a warm-up. */
  seconds: number;
  concurrency: number;
  /** Server restarts measured per audit-log size. */
  restarts: number;
  logLevel: string;
  /** Folder for V8 CPU profiles of the server processes (`node --cpu-prof`), written when they stop. */
  cpuProfDir?: string;
  progress(message: string): void;
  onCleanup(step: () => Promise<void>): void;
}

export const SCALE_OPERATIONS = ['read', 'search', 'write'] as const;
export type ScaleOperation = (typeof SCALE_OPERATIONS)[number];

export interface RecordsPoint {
  records: number;
  /** Seconds the fixture took to grow the collection to this size (from the previous size). */
  fillSeconds: number;
  filledNow: number;
  runs: Record<ScaleOperation, { rate: Rate; p50Ms: number; p99Ms: number }>;
}

export interface AuditPoint {
  entries: number;
  /** Entries appended for this size and the seconds it took (not timed into anything else). */
  generated: number;
  generateSeconds: number;
  /** First start after the fixture: spawn → listening, and → a checkpoint of the grown tree signed. */
  firstStart: { listeningSeconds: number; signedSeconds: number };
  verifySeconds: number;
  /** What the disk figure counts, and its bytes. */
  diskBytes: number;
  restarts: { listeningSeconds: number; readySeconds: number }[];
}

export interface ScaleSizeResult {
  backend: 'sqlite' | 'postgres';
  concurrency: number;
  seconds: number;
  records: RecordsPoint[];
  audit: AuditPoint[];
  /** Why a curve stopped before its largest size (the figures up to there are kept). */
  problems: string[];
}

const NS_PER_S = 1e9;
const now = (): number => Number(process.hrtime.bigint());
const since = (t0: number) => (now() - t0) / NS_PER_S;
/** Fixture fills of a million records take minutes on a loaded machine. */
const FILL_START_TIMEOUT_MS = 60 * 60_000;
const START_TIMEOUT_MS = 120_000;
/** The first start after the log grew: measured, however long it takes (within reason). */
const FIRST_START_TIMEOUT_MS = 30 * 60_000;
const READY_TIMEOUT_MS = 120_000;
const SIGN_TIMEOUT_MS = 120_000;
const VERIFY_TIMEOUT_MS = 60 * 60_000;
/** Email numbers of records written through the API: far above any fixture's. */
const WRITE_NUMBERS_FROM = 1_000_000_000;

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

/** One HTTPS GET trusting only the dev CA: status and body text. */
function get(agent: Agent, url: string, authorization?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method: 'GET', agent, headers: authorization ? { authorization } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function poll(what: string, timeoutMs: number, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await done().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(25);
  }
}

function nodeArgsOf(options: ScaleSizeOptions): string[] {
  if (options.cpuProfDir === undefined) return [];
  mkdirSync(options.cpuProfDir, { recursive: true });
  return ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`];
}

function childArgs(
  dataDir: string,
  keydSocket: string,
  databaseUrl: string | undefined,
  logLevel: string,
  more: Partial<ScaleSizeChildArgs>,
): ScaleSizeChildArgs {
  return { dataDir, keydSocket, logLevel, ...(databaseUrl === undefined ? {} : { databaseUrl }), ...more };
}

// --- 1. records ---------------------------------------------------------------------------------

async function recordsCurve(
  options: ScaleSizeOptions,
  databaseUrl: string | undefined,
  points: RecordsPoint[],
): Promise<void> {
  const { progress } = options;
  const dir = join(options.dir, 'records');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { keyd, socket } = await startDevKeyd('keyd (scale records)', dir, 'keyd');
  options.onCleanup(() => keyd.stop());
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const ca = readFileSync((await ensureDevTls(dataDir)).caFile);
  const template = recordTemplate();
  const seed = `scale-${process.pid}-${Date.now()}`;
  const logFile = join(dir, 'server.log');
  let tenant: { id: string; apiKey: string } | undefined;
  let filled = 0;
  let written = 0;
  for (const size of [...options.records].sort((a, b) => a - b)) {
    progress(`scale-size: growing the collection to ${size.toLocaleString('en')} records (fixture)`);
    const child: Child<ScaleSizeChildAddress> = await startChild<ScaleSizeChildAddress>(
      'Tresor server (scale records)',
      'bench/scale-size-tresor-child.ts',
      childArgs(dataDir, socket, databaseUrl, options.logLevel, {
        records: size,
        filled,
        seed,
        ...(tenant ? { tenant } : {}),
      }),
      logFile,
      nodeArgsOf(options),
      FILL_START_TIMEOUT_MS,
    );
    options.onCleanup(() => child.stop());
    try {
      tenant = { id: child.address.tenant, apiKey: child.address.apiKey };
      const fillSeconds = child.address.fillSeconds;
      const filledNow = size - filled;
      filled = size;
      progress(
        `scale-size: ${filledNow.toLocaleString('en')} records made in ${fillSeconds.toFixed(1)} s ` +
          `(${Math.round(filledNow / Math.max(fillSeconds, 1e-9)).toLocaleString('en')}/s)`,
      );
      const target: Target = {
        kind: 'tresor',
        label: `Tresor server, ${size} records`,
        url: new URL(child.address.url),
        authorization: `Bearer ${child.address.apiKey}`,
        pid: child.pid,
        keydPid: keyd.pid,
        logFile,
        filled: [],
        next: 0,
      };
      const pick = () => Math.floor(Math.random() * size);
      const recordsPath = `/v1/collections/${COLLECTION}/records`;
      const requests = {
        read: [
          {
            method: 'GET' as const,
            setupRequest: <R>(request: R) => ({
              ...request,
              path: `${recordsPath}/${fixtureRecordId(seed, pick())}`,
            }),
          },
        ],
        search: [
          {
            method: 'POST' as const,
            path: `${recordsPath}/search`,
            headers: { 'content-type': 'application/json' },
            setupRequest: <R>(request: R) => ({
              ...request,
              body: JSON.stringify({ where: { email: template.data(pick()).email } }),
            }),
          },
        ],
        write: [
          {
            method: 'POST' as const,
            path: recordsPath,
            headers: { 'content-type': 'application/json' },
            setupRequest: <R>(request: R) => ({
              ...request,
              body: template.body(WRITE_NUMBERS_FROM + written++),
            }),
          },
        ],
      };
      await checkFixture(target, ca, seed, size, template);
      const runs = {} as RecordsPoint['runs'];
      const warmUp = Math.min(1, options.seconds / 4);
      for (const operation of SCALE_OPERATIONS) {
        progress(
          `scale-size: ${operation}, ${size.toLocaleString('en')} records, concurrency ${options.concurrency}`,
        );
        await load(
          target,
          `${operation} warm-up`,
          requests[operation],
          options.concurrency,
          { seconds: warmUp },
          ca,
        );
        const measured = await load(
          target,
          operation,
          requests[operation],
          options.concurrency,
          { seconds: options.seconds },
          ca,
        );
        const sorted = measured.latenciesMs.sort();
        runs[operation] = {
          rate: measured.rate,
          p50Ms: percentile(sorted, 0.5),
          p99Ms: percentile(sorted, 0.99),
        };
      }
      points.push({ records: size, fillSeconds, filledNow, runs });
    } finally {
      await child.stop();
    }
  }
}

/** One fixture record read back and found by its email, through a client that trusts only the dev CA. */
async function checkFixture(
  target: Target,
  ca: Buffer,
  seed: string,
  size: number,
  template: ReturnType<typeof recordTemplate>,
): Promise<void> {
  const agent = new Agent({ ca, keepAlive: false, rejectUnauthorized: true });
  try {
    const n = size - 1;
    const id = fixtureRecordId(seed, n);
    const read = await get(
      agent,
      new URL(`/v1/collections/${COLLECTION}/records/${id}`, target.url).href,
      target.authorization,
    );
    if (read.status !== 200) throw new Error(`${target.label}: fixture record ${n} answered ${read.status}`);
    const data = (JSON.parse(read.text) as { data: Record<string, string> }).data;
    if (data.email !== template.data(n).email)
      throw new Error(`${target.label}: fixture record ${n} reads back wrong`);
  } finally {
    agent.destroy();
  }
}

// --- 2. audit log -------------------------------------------------------------------------------

/** Bytes the log takes: SQLite's control store files, or PostgreSQL's audit tables. */
async function auditDiskBytes(dataDir: string, databaseUrl: string | undefined): Promise<number> {
  if (databaseUrl === undefined) {
    const file = join(dataDir, 'control.sqlite');
    const wal = `${file}-wal`;
    return statSync(file).size + (existsSync(wal) ? statSync(wal).size : 0);
  }
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const r = await client.query<{ bytes: string }>(
      `SELECT sum(pg_total_relation_size(format('%I.%I', $1::text, t)::regclass))::text AS bytes
         FROM unnest(ARRAY['audit_leaves', 'audit_tenants', 'audit_tenant_entries', 'audit_nodes', 'audit_checkpoints']) AS t`,
      [CONTROL_SCHEMA],
    );
    return Number(r.rows[0]?.bytes ?? 0);
  } finally {
    await client.end();
  }
}

/** The size in a C2SP checkpoint note (its second line). */
function checkpointSize(note: string): number {
  return Number(note.split('\n')[1]);
}

async function auditCurve(
  options: ScaleSizeOptions,
  databaseUrl: string | undefined,
  points: AuditPoint[],
): Promise<void> {
  const { progress } = options;
  const dir = join(options.dir, 'audit');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { keyd, socket } = await startDevKeyd('keyd (scale audit)', dir, 'keyd');
  options.onCleanup(() => keyd.stop());
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const ca = readFileSync((await ensureDevTls(dataDir)).caFile);
  const agent = new Agent({ ca, keepAlive: false, rejectUnauthorized: true });
  options.onCleanup(async () => agent.destroy());
  const logFile = join(dir, 'server.log');
  const database: DatabaseConfig =
    databaseUrl === undefined ? { kind: 'sqlite' } : { kind: 'postgres', url: databaseUrl };

  const start = (tenant?: { id: string; apiKey: string }, timeoutMs = START_TIMEOUT_MS) =>
    startChild<ScaleSizeChildAddress>(
      'Tresor server (scale audit)',
      'bench/scale-size-tresor-child.ts',
      childArgs(dataDir, socket, databaseUrl, options.logLevel, tenant ? { tenant } : {}),
      logFile,
      nodeArgsOf(options),
      timeoutMs,
    );

  // The deployment: its control store, keyd's checkpoint key, a tenant, the verifier key.
  const first = await start();
  let tenant: { id: string; apiKey: string };
  let publicKey: string;
  try {
    tenant = { id: first.address.tenant, apiKey: first.address.apiKey };
    const key = await get(agent, new URL('/v1/audit/public-key', first.address.url).href);
    if (key.status !== 200) throw new Error(`GET /v1/audit/public-key answered ${key.status}`);
    publicKey = key.text.trim();
  } finally {
    await first.stop();
  }

  for (const size of [...options.audit].sort((a, b) => a - b)) {
    progress(`scale-size: growing the audit log to ${size.toLocaleString('en')} entries (fixture)`);
    const control = await openControlOf({ dataDir, database });
    let grown: Awaited<ReturnType<typeof growAuditLog>>;
    try {
      let shown = 0;
      grown = await growAuditLog({
        control,
        size,
        tenant: tenant.id,
        numberedParameters: databaseUrl !== undefined,
        progress: (at) => {
          if (at - shown >= 1_000_000) {
            shown = at;
            progress(`scale-size: audit log at ${at.toLocaleString('en')} entries`);
          }
        },
      });
    } finally {
      await control.close();
    }
    const generated = grown.size - grown.from;
    progress(
      `scale-size: ${generated.toLocaleString('en')} entries made in ${grown.seconds.toFixed(1)} s ` +
        `(${Math.round(generated / Math.max(grown.seconds, 1e-9)).toLocaleString('en')}/s)`,
    );

    // The first start signs a checkpoint of the grown tree (keyd checks the consistency proof).
    let t0 = now();
    const signer = await start(tenant, FIRST_START_TIMEOUT_MS);
    let firstStart: AuditPoint['firstStart'];
    try {
      const listeningSeconds = since(t0);
      progress(`scale-size: first start listening after ${listeningSeconds.toFixed(1)} s`);
      await poll(`a checkpoint of ${size} entries`, SIGN_TIMEOUT_MS, async () => {
        const r = await get(
          agent,
          new URL('/v1/audit/checkpoint', signer.address.url).href,
          `Bearer ${tenant.apiKey}`,
        );
        return r.status === 200 && checkpointSize(r.text) >= grown.size;
      });
      firstStart = { listeningSeconds, signedSeconds: since(t0) };
    } finally {
      await signer.stop();
    }

    progress(`scale-size: tresor audit verify, ${grown.size.toLocaleString('en')} entries`);
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    for (const k of Object.keys(env)) if (k.startsWith('TRESOR_')) delete env[k];
    if (databaseUrl !== undefined) env.TRESOR_DATABASE_URL = databaseUrl;
    t0 = now();
    const verify = spawnSync(
      process.execPath,
      [
        join(REPO_ROOT, 'bin', 'tresor.js'),
        'audit',
        'verify',
        '--data-dir',
        dataDir,
        '--public-key',
        publicKey,
        '--json',
      ],
      { encoding: 'utf8', env, timeout: VERIFY_TIMEOUT_MS, maxBuffer: 16 * 2 ** 20 },
    );
    const verifySeconds = since(t0);
    const report = (() => {
      try {
        return JSON.parse(verify.stdout) as { ok: boolean; size: number; verifiedSize: number };
      } catch {
        return undefined;
      }
    })();
    if (verify.status !== 0 || !report?.ok || report.verifiedSize < grown.size) {
      throw new Error(
        `tresor audit verify did not accept the ${grown.size}-entry log (exit ${verify.status ?? verify.signal}): ` +
          `${verify.stdout.slice(0, 2000)}${verify.stderr.slice(0, 2000)}`,
      );
    }
    const diskBytes = await auditDiskBytes(dataDir, databaseUrl);

    const restarts: AuditPoint['restarts'] = [];
    for (let i = 0; i < options.restarts; i++) {
      progress(
        `scale-size: restart ${i + 1} of ${options.restarts}, ${grown.size.toLocaleString('en')} entries`,
      );
      t0 = now();
      const server = await start(tenant);
      try {
        const listeningSeconds = since(t0);
        await poll('/readyz 200', READY_TIMEOUT_MS, async () => {
          const r = await get(agent, new URL('/readyz', server.address.url).href);
          return r.status === 200;
        });
        restarts.push({ listeningSeconds, readySeconds: since(t0) });
      } finally {
        await server.stop();
      }
    }
    points.push({
      entries: grown.size,
      generated,
      generateSeconds: grown.seconds,
      firstStart,
      verifySeconds,
      diskBytes,
      restarts,
    });
  }
}

export async function benchScaleSize(options: ScaleSizeOptions): Promise<ScaleSizeResult> {
  const problems: string[] = [];
  const records: RecordsPoint[] = [];
  const audit: AuditPoint[] = [];
  // A curve that fails keeps the sizes it measured; the failure is reported with them.
  const curve = async (what: string, run: () => Promise<void>) => {
    try {
      await run();
    } catch (error) {
      const [first, ...rest] = (error as Error).message.split('\n');
      const message = `${what} stopped: ${first}`;
      // The report keeps the first line; the progress shows the rest (a child's log tail).
      options.progress(`scale-size: ${message}${rest.length > 0 ? `\n${rest.join('\n')}` : ''}`);
      problems.push(message);
    }
  };
  if (options.records.length > 0) {
    await curve('records curve', async () =>
      recordsCurve(options, options.database ? await options.database('records') : undefined, records),
    );
  }
  if (options.audit.length > 0) {
    await curve('audit curve', async () =>
      auditCurve(options, options.database ? await options.database('audit') : undefined, audit),
    );
  }
  return {
    problems,
    backend: options.database ? 'postgres' : 'sqlite',
    concurrency: options.concurrency,
    seconds: options.seconds,
    records,
    audit,
  };
}

// --- the section --------------------------------------------------------------------------------

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const round2 = (x: number) => Math.round(x * 100) / 100;
const ratioText = (value: number, smallest: number, label: string) =>
  smallest > 0 ? ` (${(value / smallest).toFixed(2)}× ${label})` : '';

const ROUTES: Record<ScaleOperation, string> = {
  read: 'GET …/records/:id',
  search: 'POST …/records/search {where: {email}}',
  write: 'POST …/records',
};

export function scaleSizeSection(r: ScaleSizeResult): Section {
  const groups: FigureGroup[] = [];
  const facts: Fact[] = [];
  const on = r.backend === 'postgres' ? 'PostgreSQL' : 'SQLite';
  const smallestRecords = r.records[0];
  if (smallestRecords) {
    const baseName = `${smallestRecords.records.toLocaleString('en')} records`;
    for (const operation of SCALE_OPERATIONS) {
      const figures: Figure[] = r.records.map((p, i) => {
        const run = p.runs[operation];
        const name = `${p.records.toLocaleString('en')} records, p50 ${run.p50Ms.toFixed(1)} ms, p99 ${run.p99Ms.toFixed(1)} ms`;
        if (i === 0) return { name, rate: run.rate, isBaseline: true };
        return {
          name,
          rate: run.rate,
          baseline: baseName,
          ratio: run.rate.opsPerSecond / smallestRecords.runs[operation].rate.opsPerSecond,
        };
      });
      groups.push({ title: `${operation}: ${ROUTES[operation]}, concurrency ${r.concurrency}`, figures });
    }
    for (const p of r.records) {
      facts.push({
        name: `records fixture: to ${p.records.toLocaleString('en')} (${p.filledNow.toLocaleString('en')} made)`,
        value: round2(p.fillSeconds),
        unit: `s, ${Math.round(p.filledNow / Math.max(p.fillSeconds, 1e-9)).toLocaleString('en')} records/s`,
      });
    }
  }
  const smallestAudit = r.audit[0];
  if (smallestAudit) {
    const label = `${smallestAudit.entries.toLocaleString('en')}`;
    const verifyRate = (p: AuditPoint): Rate => ({
      opsPerSecond: p.entries / p.verifySeconds,
      min: p.entries / p.verifySeconds,
      max: p.entries / p.verifySeconds,
      operations: p.entries,
      seconds: p.verifySeconds,
    });
    groups.push({
      title: 'tresor audit verify (the CLI, spawn to exit): entries per second',
      figures: r.audit.map((p, i) => {
        const name = `${p.entries.toLocaleString('en')} entries`;
        if (i === 0) return { name, rate: verifyRate(p), isBaseline: true };
        return {
          name,
          rate: verifyRate(p),
          baseline: `${label} entries`,
          ratio: verifyRate(p).opsPerSecond / verifyRate(smallestAudit).opsPerSecond,
        };
      }),
    });
    const base = {
      verify: smallestAudit.verifySeconds,
      disk: smallestAudit.diskBytes / smallestAudit.entries,
      listening: median(smallestAudit.restarts.map((x) => x.listeningSeconds)),
      ready: median(smallestAudit.restarts.map((x) => x.readySeconds)),
    };
    for (const p of r.audit) {
      const n = p.entries.toLocaleString('en');
      const perEntry = p.diskBytes / p.entries;
      const listening = median(p.restarts.map((x) => x.listeningSeconds));
      const ready = median(p.restarts.map((x) => x.readySeconds));
      facts.push(
        {
          name: `${n} entries: tresor audit verify`,
          value: round2(p.verifySeconds),
          unit: `s${ratioText(p.verifySeconds, base.verify, label)}`,
        },
        {
          name: `${n} entries: disk per entry`,
          value: round2(perEntry),
          unit: `bytes${ratioText(perEntry, base.disk, label)}`,
        },
        {
          name: `${n} entries: restart → listening, median of ${p.restarts.length}`,
          value: round2(listening),
          unit: `s${ratioText(listening, base.listening, label)}`,
        },
        {
          name: `${n} entries: restart → /readyz 200, median of ${p.restarts.length}`,
          value: round2(ready),
          unit: `s${ratioText(ready, base.ready, label)}`,
        },
        {
          name: `${n} entries: first start after growing → checkpoint signed`,
          value: round2(p.firstStart.signedSeconds),
          unit: 's',
        },
        {
          name: `audit fixture: ${p.generated.toLocaleString('en')} entries appended`,
          value: round2(p.generateSeconds),
          unit: `s, ${Math.round(p.generated / Math.max(p.generateSeconds, 1e-9)).toLocaleString('en')} entries/s`,
        },
      );
    }
  }
  return {
    id: r.backend === 'postgres' ? 'scale-size-pg' : 'scale-size',
    title: `Scale, size: one collection and the audit log growing, on ${on}`,
    groups,
    facts,
    notes: [
      ...r.problems.map((p) => `FAILED: ${p}`),
      `Records: the collection is grown to each size directly in the tenant's store (bench/fixtures-records.ts: ` +
        "the vault's own sealValues, envelope framing and blind index, in the server's process; no HTTP, no " +
        'record.create audit entries), then the server restarts over it and serves HTTPS under autocannon: ' +
        `${r.seconds} s per figure after a warm-up, concurrency ${r.concurrency}; writes (measured last) add to the ` +
        'collection. Ratios are to the smallest size.',
      'Audit log: grown directly in the control store with the server stopped (bench/fixtures-audit.ts: the ' +
        "sequencer's sequenceBatch and INSERT statements); the next start's checkpointer has keyd sign the grown " +
        'tree. tresor audit verify runs as its own process (spawn to exit, default worker threads). Disk: ' +
        (r.backend === 'postgres'
          ? 'pg_total_relation_size of audit_leaves, audit_tenants, audit_tenant_entries, audit_nodes and audit_checkpoints (indexes and TOAST included).'
          : 'control.sqlite and its -wal (the whole control store; the rest of it is a few hundred KB).') +
        ' Restart: spawn of the server process (node + tsx) to its listening line, and to the first /readyz 200.',
    ],
  };
}
