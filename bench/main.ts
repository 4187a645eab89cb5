/**
 * `npm run bench`: Tresor's speed, measured on this machine against baselines run in the same
 * process tree, printed as a table (or JSON with --json). No test asserts a time; this is where
 * speed is looked at. Sections:
 *   a. envelope encryption in process, 1 KiB values, vs raw AES-256-GCM      (in-process.ts)
 *   b. keyd round trips over the Unix socket and mTLS, vs an echo            (round-trips.ts)
 *   c. cache hit ratio of the data keyring under a mixed load                (mixed-load.ts)
 *   d. store group commit vs one transaction per write                       (store-group-commit.ts)
 *   e. the HTTPS API under autocannon vs a plain Fastify + SQLite server     (http.ts)
 *      and the same on PostgreSQL, both servers on one PostgreSQL server   (http-pg)
 *   f. the audit log: audited vs raw durable writes, proofs, verify          (audit.ts)
 *   g. start time of `tresor --help`, compiled vs through tsx                (startup.ts)
 *   h. backup and restore of 100,000 records; writes during a backup vs none  (backup.ts)
 *      and writes during a backup on PostgreSQL (a fresh database)             (backup-pg)
 *   j. scale: reads and writes by tenant count (1 … 10,000), SQLite and PostgreSQL (scale-tenants.ts),
 *      run only when named, like scale-size: one collection (10k–1M records) and the audit log (100k–10M entries) growing,
 *      on SQLite and PostgreSQL; rates and times with ratios to the smallest size (scale-size.ts)
 * keyd, the echo servers and the HTTP servers run as child processes; every child is stopped and
 * the temporary folder removed at the end, also after an error or Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { KeydConfig } from '../src/keyd/config.ts';
import type { KeydOperationName, KeyService, OpArgs } from '../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../src/keyd/root/dev-file.ts';
import { initPassphrase } from '../src/keyd/root/passphrase.ts';
import { createKeyService, SYSTEM_CALLER } from '../src/keyd/service.ts';
import { benchAudit } from './audit.ts';
import { benchAuditStream } from './audit-stream.ts';
import { backupSection, benchBackup } from './backup.ts';

import { type BenchPki, createBenchPki, LOOPBACK, startEcho, startKeyd } from './children.ts';
import { benchHttp, HTTP_EXTRA_OPERATIONS, HTTP_OPERATIONS, type HttpOperation } from './http.ts';
import { benchInProcess } from './in-process.ts';
import { benchMixedLoad } from './mixed-load.ts';
import { benchDatabase, DEFAULT_PG_URL } from './pg-database.ts';
import { benchPgNodes } from './pg-nodes.ts';
import {
  type BenchReport,
  baselineFigure,
  compared,
  formatTable,
  type Machine,
  type Section,
} from './report.ts';
import { benchRoundTrips, type Transport } from './round-trips.ts';
import {
  benchScaleSize,
  DEFAULT_SCALE_AUDIT,
  DEFAULT_SCALE_RECORDS,
  scaleSizeSection,
} from './scale-size.ts';
import {
  benchScaleTenants,
  DEFAULT_SCALE_TENANTS,
  SCALE_OPERATIONS,
  type ScaleOperation,
} from './scale-tenants.ts';
import { benchStartup, startupSection } from './startup.ts';
import { benchGroupCommit } from './store-group-commit.ts';

const round1 = (x: number) => Math.round(x * 10) / 10;

const SECTIONS = [
  'in-process',
  'round-trips',
  'mixed-load',
  'store',
  'http',
  'http-pg',
  'pg-nodes',
  'audit',
  'startup',
  'backup',
  'backup-pg',
  'scale',
  'scale-size',
] as const;
/** Sections run only when named in --only (they take many minutes at their default sizes). */
const ON_REQUEST: readonly SectionId[] = ['scale', 'scale-size'];
type SectionId = (typeof SECTIONS)[number];

const USAGE = `Usage: npm run bench -- [options]

  --seconds <n>            measured seconds per figure, after a warm-up (default 2)
  --only <ids>             comma-separated: ${SECTIONS.join(', ')} (default all)
  --json                   print JSON instead of the table
  --concurrency <n>        high concurrency for keyd round trips, store and http (default 64)
  --pool <n>               keyd client connections (default 2, as the server uses)
  --tenants <n>            mixed load: tenants (default 200)
  --keys-per-tenant <n>    mixed load: data keys per tenant (default 8)
  --zipf <s>               mixed load: Zipf exponent of tenant popularity (default 1)
  --mixed-concurrency <n>  mixed load: operations in flight (default 32)
  --http-seconds <n>       http: measured seconds per run, after a warm-up (default 5)
  --http-records <n>       http: records filled into each server first (default 5000)
  --http-ops <ops>         http: comma-separated from ${[...HTTP_OPERATIONS, ...HTTP_EXTRA_OPERATIONS].join(', ')}
                           (default ${HTTP_OPERATIONS.join(',')})
  --http-log-level <level> http: both servers' log level (default info: a line per request)
  --pg-url <url>           http-pg, backup-pg: the PostgreSQL server whose fresh databases the servers use
                           (default ${DEFAULT_PG_URL})
  --cpu-prof <folder>      http, scale, scale-size: write V8 CPU profiles of the servers there (node --cpu-prof)
  --startup-runs <n>       startup: starts measured of each kind, after 2 warm-ups (default 10)
  --backup-records <n>     backup: records in the store backed up and restored (default 100000)
  --backup-rounds <n>      backup: rounds of writes during a backup vs none (default 3)
  --backup-concurrency <n> backup: writes in flight during those rounds (default 32)
  --backup-destinations <n> backup: folder destinations, each written and read back (default 2, as npm start)
  --scale-tenants <sizes>  scale: comma-separated tenant counts, ascending (default ${DEFAULT_SCALE_TENANTS.join(',')})
  --scale-seconds <n>      scale: measured seconds per figure, after a warm-up (default 5)
  --scale-rounds <n>       scale: rounds of every figure, sizes ascending then descending; ratios per
                           round to that round's baseline, medians reported (default 1)
  --scale-concurrency <n>  scale: requests in flight (default 32)
  --scale-records <n>      scale: records made per tenant (default 4)
  --scale-ops <ops>        scale: comma-separated from ${SCALE_OPERATIONS.join(', ')} (default both)
  --scale-backends <list>  scale: sqlite, postgres (default both)
  --size-records <sizes>   scale-size: collection sizes, comma-separated (default ${DEFAULT_SCALE_RECORDS.join(',')}; 0: none)
  --size-audit <sizes>     scale-size: audit-log sizes, comma-separated (default ${DEFAULT_SCALE_AUDIT.join(',')}; 0: none)
                           (scale-size takes its backends from --scale-backends)
  --size-seconds <n>       scale-size: measured seconds per operation and size (default 10)
  --size-concurrency <n>   scale-size: requests in flight (default 32)
  --size-restarts <n>      scale-size: server restarts timed per audit-log size (default 3)
  --dir <folder>           where the temporary folder goes (default the OS temp folder)
`;

function numberOption(value: string | undefined, fallback: number, name: string, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}`);
  return n;
}

/** Comma-separated sizes (positive integers; `0` alone: none). */
function sizesOption(value: string | undefined, fallback: number[], name: string): number[] {
  if (value === undefined) return fallback;
  if (value.trim() === '0') return [];
  const sizes = value.split(',').map((s) => Number(s.trim().replaceAll('_', '')));
  for (const n of sizes) {
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name}: sizes must be positive integers`);
  }
  return [...new Set(sizes)].sort((a, b) => a - b);
}

function readOptions() {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      only: { type: 'string' },
      json: { type: 'boolean', default: false },
      concurrency: { type: 'string' },
      pool: { type: 'string' },
      tenants: { type: 'string' },
      'keys-per-tenant': { type: 'string' },
      zipf: { type: 'string' },
      'mixed-concurrency': { type: 'string' },
      'http-seconds': { type: 'string' },
      'http-records': { type: 'string' },
      'http-ops': { type: 'string' },
      'http-log-level': { type: 'string' },
      'pg-url': { type: 'string' },
      'cpu-prof': { type: 'string' },
      'startup-runs': { type: 'string' },
      'backup-records': { type: 'string' },
      'backup-rounds': { type: 'string' },
      'backup-concurrency': { type: 'string' },
      'backup-destinations': { type: 'string' },
      'scale-tenants': { type: 'string' },
      'scale-seconds': { type: 'string' },
      'scale-rounds': { type: 'string' },
      'scale-concurrency': { type: 'string' },
      'scale-records': { type: 'string' },
      'scale-ops': { type: 'string' },
      'scale-backends': { type: 'string' },
      'size-records': { type: 'string' },
      'size-audit': { type: 'string' },
      'size-seconds': { type: 'string' },
      'size-concurrency': { type: 'string' },
      'size-restarts': { type: 'string' },
      dir: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  const only = (values.only ?? SECTIONS.filter((id) => !ON_REQUEST.includes(id)).join(','))
    .split(',')
    .map((s) => s.trim());
  for (const id of only) {
    if (!(SECTIONS as readonly string[]).includes(id)) throw new Error(`--only: unknown section ${id}`);
  }
  const httpOps = (values['http-ops'] ?? HTTP_OPERATIONS.join(',')).split(',').map((s) => s.trim());
  for (const op of httpOps) {
    if (!([...HTTP_OPERATIONS, ...HTTP_EXTRA_OPERATIONS] as readonly string[]).includes(op)) {
      throw new Error(`--http-ops: unknown ${op}`);
    }
  }
  const scaleTenants = (values['scale-tenants'] ?? DEFAULT_SCALE_TENANTS.join(',')).split(',').map(Number);
  if (
    scaleTenants.some(
      (n, i) => !Number.isSafeInteger(n) || n < 1 || (i > 0 && n <= (scaleTenants[i - 1] ?? 0)),
    )
  ) {
    throw new Error('--scale-tenants: positive whole tenant counts, ascending');
  }
  const scaleOps = (values['scale-ops'] ?? SCALE_OPERATIONS.join(',')).split(',').map((s) => s.trim());
  for (const op of scaleOps) {
    if (!(SCALE_OPERATIONS as readonly string[]).includes(op)) throw new Error(`--scale-ops: unknown ${op}`);
  }
  const scaleBackends = (values['scale-backends'] ?? 'sqlite,postgres').split(',').map((s) => s.trim());
  for (const b of scaleBackends) {
    if (b !== 'sqlite' && b !== 'postgres') throw new Error(`--scale-backends: unknown ${b}`);
  }
  const httpLogLevel = values['http-log-level'] ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(httpLogLevel)) {
    throw new Error(`--http-log-level: unknown level ${httpLogLevel}`);
  }
  return {
    help: values.help,
    json: values.json,
    sections: new Set(only as SectionId[]),
    seconds: numberOption(values.seconds, 2, 'seconds', 0.05),
    concurrency: Math.floor(numberOption(values.concurrency, 64, 'concurrency', 1)),
    pool: Math.floor(numberOption(values.pool, 2, 'pool', 1)),
    tenants: Math.floor(numberOption(values.tenants, 200, 'tenants', 1)),
    keysPerTenant: Math.floor(numberOption(values['keys-per-tenant'], 8, 'keys-per-tenant', 1)),
    zipf: numberOption(values.zipf, 1, 'zipf', 0),
    mixedConcurrency: Math.floor(numberOption(values['mixed-concurrency'], 32, 'mixed-concurrency', 1)),
    httpSeconds: numberOption(values['http-seconds'], 5, 'http-seconds', 0.5),
    httpRecords: Math.floor(numberOption(values['http-records'], 5000, 'http-records', 1)),
    httpOps: httpOps as HttpOperation[],
    httpLogLevel,
    pgUrl: values['pg-url'] ?? DEFAULT_PG_URL,
    cpuProf: values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']),
    startupRuns: Math.floor(numberOption(values['startup-runs'], 10, 'startup-runs', 1)),
    backupRecords: Math.floor(numberOption(values['backup-records'], 100_000, 'backup-records', 1)),
    backupRounds: Math.floor(numberOption(values['backup-rounds'], 3, 'backup-rounds', 1)),
    backupConcurrency: Math.floor(numberOption(values['backup-concurrency'], 32, 'backup-concurrency', 1)),
    backupDestinations: Math.floor(numberOption(values['backup-destinations'], 2, 'backup-destinations', 1)),
    scaleTenants,
    scaleSeconds: numberOption(values['scale-seconds'], 5, 'scale-seconds', 0.5),
    scaleRounds: Math.floor(numberOption(values['scale-rounds'], 1, 'scale-rounds', 1)),
    scaleConcurrency: Math.floor(numberOption(values['scale-concurrency'], 32, 'scale-concurrency', 1)),
    scaleRecords: Math.floor(numberOption(values['scale-records'], 4, 'scale-records', 1)),
    scaleOps: scaleOps as ScaleOperation[],
    scaleBackends: scaleBackends as ('sqlite' | 'postgres')[],
    sizeRecords: sizesOption(values['size-records'], DEFAULT_SCALE_RECORDS, 'size-records'),
    sizeAudit: sizesOption(values['size-audit'], DEFAULT_SCALE_AUDIT, 'size-audit'),
    sizeSeconds: numberOption(values['size-seconds'], 10, 'size-seconds', 0.5),
    sizeConcurrency: Math.floor(numberOption(values['size-concurrency'], 32, 'size-concurrency', 1)),
    sizeRestarts: Math.floor(numberOption(values['size-restarts'], 3, 'size-restarts', 1)),
    dir: resolve(values.dir ?? os.tmpdir()),
  };
}

function describeMachine(): Machine {
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverage: os.loadavg(),
  };
}

function progress(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** A fresh private keyd folder with a dev-file root key (what `tresor keyd init` does for dev). */
function keydFolder(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  initDevFile(dir);
  return dir;
}

/**
 * A keyd folder for a TCP keyd, which refuses the dev file: a passphrase provider unsealed from a
 * file (a random passphrase of this run, in the bench's private temporary folder).
 */
async function passphraseKeydFolder(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const passphrase = randomBytes(24).toString('base64url');
  await initPassphrase(dir, passphrase);
  const file = join(dir, 'passphrase');
  writeFileSync(file, passphrase, { mode: 0o600 });
  return file;
}

function keydConfig(dir: string, listen: KeydConfig['listen'], passphraseFile?: string): KeydConfig {
  return {
    dir,
    ...(passphraseFile === undefined
      ? { provider: 'dev-file', insecureDevKeyFile: true }
      : { provider: 'passphrase', insecureDevKeyFile: false, passphraseFile }),
    listen,
    tenantKeyCryptoperiodDays: 365,
    destroyGraceSeconds: 7 * 86400,
    maintenanceIntervalSeconds: 3600,
  };
}

/** Undo steps, run last-first whatever happens. */
class Cleanup {
  readonly #steps: (() => unknown)[] = [];
  #done: Promise<void> | undefined;

  add(step: () => unknown): void {
    this.#steps.push(step);
  }

  run(): Promise<void> {
    this.#done ??= (async () => {
      for (const step of this.#steps.reverse()) {
        try {
          await step();
        } catch (error) {
          progress(`cleanup step failed: ${(error as Error).message}`);
        }
      }
    })();
    return this.#done;
  }
}

async function run(options: ReturnType<typeof readOptions>, cleanup: Cleanup): Promise<BenchReport> {
  const started = Date.now();
  const report: BenchReport = {
    startedAt: new Date(started).toISOString(),
    durationSeconds: 0,
    machine: describeMachine(),
    settings: {
      seconds: options.seconds,
      concurrency: options.concurrency,
      pool: options.pool,
      tenants: options.tenants,
      keysPerTenant: options.keysPerTenant,
      zipf: options.zipf,
      mixedConcurrency: options.mixedConcurrency,
      httpSeconds: options.httpSeconds,
      httpRecords: options.httpRecords,
      httpOps: options.httpOps.join(','),
      httpLogLevel: options.httpLogLevel,
      startupRuns: options.startupRuns,
      backupRecords: options.backupRecords,
      backupRounds: options.backupRounds,
      backupConcurrency: options.backupConcurrency,
      backupDestinations: options.backupDestinations,
      scaleTenants: options.scaleTenants.join(','),
      scaleSeconds: options.scaleSeconds,
      scaleRounds: options.scaleRounds,
      scaleConcurrency: options.scaleConcurrency,
      scaleRecords: options.scaleRecords,
      scaleOps: options.scaleOps.join(','),
      scaleBackends: options.scaleBackends.join(','),
      sizeRecords: options.sizeRecords.join(','),
      sizeAudit: options.sizeAudit.join(','),
      sizeSeconds: options.sizeSeconds,
      sizeConcurrency: options.sizeConcurrency,
      sizeRestarts: options.sizeRestarts,
    },
    sections: [],
  };
  const tmp = mkdtempSync(join(options.dir, 'tresor-bench-'));
  cleanup.add(() => rmSync(tmp, { recursive: true, force: true }));
  const sections: Section[] = report.sections;

  if (options.sections.has('in-process')) {
    progress('a. in process');
    sections.push(benchInProcess(options.seconds));
  }

  const needsKeyd = options.sections.has('round-trips') || options.sections.has('mixed-load');
  if (needsKeyd) await keydSections(options, cleanup, tmp, sections);

  if (options.sections.has('audit')) {
    progress('f. audit log');
    sections.push(await auditSection(options.seconds, options.concurrency, tmp));
  }
  if (options.sections.has('store')) {
    progress('d. store group commit');
    sections.push(await storeSection(options.seconds, options.concurrency, tmp));
  }

  if (options.sections.has('http')) {
    progress('e. HTTPS API');
    const httpDir = join(tmp, 'http');
    mkdirSync(httpDir, { mode: 0o700 });
    sections.push(
      await benchHttp({
        dir: httpDir,
        seconds: options.httpSeconds,
        concurrencies: [...new Set([1, options.concurrency])],
        operations: options.httpOps,
        records: options.httpRecords,
        logLevel: options.httpLogLevel,
        ...(options.cpuProf ? { cpuProfDir: options.cpuProf } : {}),
        progress,
        onCleanup: (step) => cleanup.add(step),
      }),
    );
  }
  if (options.sections.has('http-pg')) {
    progress('e. HTTPS API on PostgreSQL');
    const httpDir = join(tmp, 'http-pg');
    mkdirSync(httpDir, { mode: 0o700 });
    const tresorDb = await benchDatabase(options.pgUrl, 'tresor');
    cleanup.add(() => tresorDb.drop());
    const baselineDb = await benchDatabase(options.pgUrl, 'baseline');
    cleanup.add(() => baselineDb.drop());
    sections.push(
      await benchHttp({
        dir: httpDir,
        seconds: options.httpSeconds,
        concurrencies: [...new Set([1, options.concurrency])],
        operations: options.httpOps,
        records: options.httpRecords,
        logLevel: options.httpLogLevel,
        databases: { tresor: tresorDb.url, baseline: baselineDb.url },
        progress,
        onCleanup: (step) => cleanup.add(step),
      }),
    );
  }
  if (options.sections.has('pg-nodes')) {
    progress('e. two server nodes on one PostgreSQL database');
    const nodesDir = join(tmp, 'pg-nodes');
    mkdirSync(nodesDir, { mode: 0o700 });
    const db = await benchDatabase(options.pgUrl, 'nodes');
    cleanup.add(() => db.drop());
    sections.push(
      await benchPgNodes({
        dir: nodesDir,
        databaseUrl: db.url,
        seconds: options.httpSeconds,
        concurrency: options.concurrency,
        logLevel: options.httpLogLevel,
        progress,
        onCleanup: (step) => cleanup.add(step),
      }),
    );
  }
  if (options.sections.has('startup')) {
    progress('g. start time (builds into the temporary folder first)');
    const startupDir = join(tmp, 'startup');
    mkdirSync(startupDir, { mode: 0o700 });
    sections.push(startupSection(benchStartup({ dir: startupDir, runs: options.startupRuns })));
  }
  if (options.sections.has('backup')) {
    progress('h. backups');
    const backupDir = join(tmp, 'backup');
    mkdirSync(backupDir, { mode: 0o700 });
    sections.push(
      backupSection(
        await benchBackup({
          dir: backupDir,
          records: options.backupRecords,
          concurrency: options.backupConcurrency,
          rounds: options.backupRounds,
          destinations: options.backupDestinations,
          logLevel: options.httpLogLevel,
          ...(options.cpuProf ? { cpuProfDir: options.cpuProf } : {}),
          progress,
          onCleanup: (step) => cleanup.add(step),
        }),
      ),
    );
  }
  if (options.sections.has('backup-pg')) {
    progress('h. backups on PostgreSQL');
    const backupDir = join(tmp, 'backup-pg');
    mkdirSync(backupDir, { mode: 0o700 });
    const db = await benchDatabase(options.pgUrl, 'backup');
    cleanup.add(() => db.drop());
    sections.push(
      backupSection(
        await benchBackup({
          dir: backupDir,
          records: options.backupRecords,
          concurrency: options.backupConcurrency,
          rounds: options.backupRounds,
          destinations: options.backupDestinations,
          logLevel: options.httpLogLevel,
          databaseUrl: db.url,
          ...(options.cpuProf ? { cpuProfDir: options.cpuProf } : {}),
          progress,
          onCleanup: (step) => cleanup.add(step),
        }),
      ),
    );
  }
  if (options.sections.has('scale')) await scaleSections(options, cleanup, tmp, sections);
  if (options.sections.has('scale-size') || options.sections.has('scale')) {
    for (const backend of options.scaleBackends) {
      progress(`scale-size on ${backend}`);
      const scaleDir = join(tmp, `scale-size-${backend}`);
      mkdirSync(scaleDir, { mode: 0o700 });
      const result = await benchScaleSize({
        dir: scaleDir,
        ...(backend === 'postgres'
          ? {
              database: async (label: string) => {
                const db = await benchDatabase(options.pgUrl, `scale_${label}`);
                cleanup.add(() => db.drop());
                return db.url;
              },
            }
          : {}),
        records: options.sizeRecords,
        audit: options.sizeAudit,
        seconds: options.sizeSeconds,
        concurrency: options.sizeConcurrency,
        restarts: options.sizeRestarts,
        logLevel: options.httpLogLevel,
        ...(options.cpuProf ? { cpuProfDir: join(options.cpuProf, `scale-size-${backend}`) } : {}),
        progress,
        onCleanup: (step) => cleanup.add(step),
      });
      sections.push(scaleSizeSection(result));
    }
  }
  return { ...report, durationSeconds: (Date.now() - started) / 1000 };
}

/** j. Scale: by tenant count (scale-tenants.ts), on each backend asked for. */
async function scaleSections(
  options: ReturnType<typeof readOptions>,
  cleanup: Cleanup,
  tmp: string,
  sections: Section[],
): Promise<void> {
  for (const backend of options.scaleBackends) {
    progress(`j. scale by tenant count (${backend})`);
    const dir = join(tmp, `scale-tenants-${backend}`);
    mkdirSync(dir, { mode: 0o700 });
    let databaseUrl: string | undefined;
    if (backend === 'postgres') {
      const db = await benchDatabase(options.pgUrl, 'scale');
      cleanup.add(() => db.drop());
      databaseUrl = db.url;
    }
    sections.push(
      await benchScaleTenants({
        dir,
        sizes: options.scaleTenants,
        seconds: options.scaleSeconds,
        rounds: options.scaleRounds,
        ...(options.cpuProf ? { cpuProfDir: join(options.cpuProf, `scale-tenants-${backend}`) } : {}),
        concurrency: options.scaleConcurrency,
        recordsPerTenant: options.scaleRecords,
        operations: options.scaleOps,
        logLevel: options.httpLogLevel,
        ...(databaseUrl ? { databaseUrl } : {}),
        progress,
        onCleanup: (step) => cleanup.add(step),
      }),
    );
  }
}

/** f. The audit log (audit.ts), as a section. */
async function auditSection(seconds: number, concurrency: number, dir: string): Promise<Section> {
  const r = await benchAudit({ seconds, concurrency, dir });
  const stream = await benchAuditStream({ creates: 200, concurrency: 16 });
  const raw1 = baselineFigure('raw durable insert, no audit', r.raw.c1);
  const rawN = baselineFigure('raw durable insert, no audit', r.raw.cN);
  return {
    id: 'audit',
    title: 'f. Audit log: writes with their entry sequenced into the Merkle log (WAL, synchronous=FULL)',
    groups: [
      {
        title: 'concurrency 1',
        figures: [raw1, compared('audited write, entry in the log (outbox + sequencer)', r.audited.c1, raw1)],
      },
      {
        title: `concurrency ${r.concurrency}`,
        figures: [rawN, compared('audited write, entry in the log (outbox + sequencer)', r.audited.cN, rawN)],
      },
      {
        title: `proofs from stored tree nodes, log of ${r.proofs.logSize.toLocaleString('en')} entries (in process)`,
        figures: [
          { name: 'inclusion proof, concurrency 1', rate: r.proofs.inclusionC1 },
          { name: `inclusion proof, concurrency ${r.concurrency}`, rate: r.proofs.inclusionCN },
          { name: `consistency proof, concurrency ${r.concurrency}`, rate: r.proofs.consistencyCN },
        ],
      },
    ],
    facts: [
      {
        name: `tresor audit verify, ${r.verify.entries.toLocaleString('en')} entries`,
        value: r.verify.seconds,
        unit: 's',
      },
      { name: 'tresor audit verify rate', value: Math.round(r.verify.entriesPerSecond), unit: 'entries/s' },
      {
        name: 'create acknowledged → entry on the SSE stream, idle, p50',
        value: round1(stream.idle.p50Ms),
        unit: 'ms',
      },
      {
        name: 'create acknowledged → entry on the SSE stream, idle, p99',
        value: round1(stream.idle.p99Ms),
        unit: 'ms',
      },
      {
        name: `create acknowledged → entry on the SSE stream, ${stream.loaded.concurrency} writers, p99`,
        value: round1(stream.loaded.p99Ms),
        unit: 'ms',
      },
      {
        name: 'create acknowledged → entry on the SSE stream, slowest of all',
        value: round1(Math.max(stream.idle.maxMs, stream.loaded.maxMs)),
        unit: 'ms',
      },
      {
        name: `audited ÷ raw at concurrency ${r.concurrency}, median of ${r.ratiosN.length} interleaved rounds`,
        value: Number((r.audited.cN.opsPerSecond / r.raw.cN.opsPerSecond).toFixed(2)),
        unit: '×',
      },
      {
        name: `audited ÷ raw at concurrency ${r.concurrency}, lowest round`,
        value: Number((r.ratiosN[0] ?? 0).toFixed(2)),
        unit: '×',
      },
      {
        name: `audited ÷ raw at concurrency ${r.concurrency}, highest round`,
        value: Number((r.ratiosN[r.ratiosN.length - 1] ?? 0).toFixed(2)),
        unit: '×',
      },
    ],
    notes: [
      'Audited rates count only writes whose entry reached the log: the time includes the final sequencer drain.',
      'At high concurrency raw and audited alternate in interleaved rounds; the figures shown are the round with the median ratio.',
      'The sequencer canonicalises, hashes and writes batches of ≥ 64 entries on its own worker thread (src/audit/sequencer-thread.ts), so the main thread keeps only the outbox insert and the outbox read.',
      'Stream latency: real tresor server and keyd (bench/audit-stream.ts), a tenant admin key on GET /v1/audit/stream over HTTPS; target: within 1 s.',
      'Target (audit issue): audited ≥ 0.5× raw at high concurrency; verify ≥ 200,000 entries/s.',
    ],
  };
}

/** d. Group commit against one transaction per write (store-group-commit.ts), as a section. */
async function storeSection(seconds: number, concurrency: number, dir: string): Promise<Section> {
  const r = await benchGroupCommit({ seconds, concurrency, dir });
  const naive = baselineFigure('one transaction (one fsync) per write', r.rates.naive);
  return {
    id: 'store',
    title: 'd. Store: 1 KiB record + audit event per write',
    groups: [
      {
        title: `WAL, synchronous=FULL, concurrency ${r.concurrency}`,
        figures: [naive, compared('group commit (openSqliteStore)', r.rates.grouped, naive)],
      },
    ],
    facts: [{ name: 'group commit: mean writes per transaction', value: r.meanBatch, unit: '' }],
    notes: [
      'Acknowledged writes per second: each resolves only once its COMMIT is durable. Same connection ' +
        'settings and statement cache in both; only the transaction policy differs.',
    ],
  };
}

/** b. and c.: the sections that talk to a keyd on the Unix socket. */
async function keydSections(
  options: ReturnType<typeof readOptions>,
  cleanup: Cleanup,
  tmp: string,
  sections: Section[],
): Promise<void> {
  progress('starting keyd (Unix socket)');
  const unixDir = keydFolder(join(tmp, 'keyd-unix'));
  const unixKeyd = await startKeyd(
    'keyd (Unix socket)',
    keydConfig(unixDir, { kind: 'unix', path: join(unixDir, 'keyd.sock') }),
    join(tmp, 'keyd-unix.log'),
  );
  cleanup.add(() => unixKeyd.stop());
  const unixTarget = { kind: 'unix', path: join(unixDir, 'keyd.sock') } as const;

  if (options.sections.has('round-trips')) {
    progress('starting keyd (mTLS) and the echo servers');
    const pki: BenchPki = await createBenchPki(join(tmp, 'pki'));
    const tlsDir = join(tmp, 'keyd-tls');
    const tlsPassphraseFile = await passphraseKeydFolder(tlsDir);
    const tlsKeyd = await startKeyd(
      'keyd (mTLS)',
      keydConfig(
        tlsDir,
        {
          kind: 'tls',
          host: LOOPBACK,
          port: 0,
          certFile: pki.certFile,
          keyFile: pki.keyFile,
          caFile: pki.caFile,
          allowlist: pki.allowlist,
        },
        tlsPassphraseFile,
      ),
      join(tmp, 'keyd-tls.log'),
    );
    cleanup.add(() => tlsKeyd.stop());
    const echoDir = join(tmp, 'echo');
    mkdirSync(echoDir, { mode: 0o700 });
    const unixEcho = await startEcho(
      'echo (Unix socket)',
      { kind: 'unix', path: join(echoDir, 'echo.sock') },
      join(tmp, 'echo-unix.log'),
    );
    cleanup.add(() => unixEcho.stop());
    const tlsEcho = await startEcho(
      'echo (mTLS)',
      {
        kind: 'tls',
        host: LOOPBACK,
        certFile: pki.certFile,
        keyFile: pki.keyFile,
        caFile: pki.caFile,
      },
      join(tmp, 'echo-tls.log'),
    );
    cleanup.add(() => tlsEcho.stop());
    const portOf = (address: { kind: string; port?: number }) => {
      if (address.kind !== 'tls' || address.port === undefined) throw new Error('expected a TLS address');
      return address.port;
    };

    const inProcessDir = keydFolder(join(tmp, 'keyd-in-process'));
    const service = createKeyService({ dir: inProcessDir, provider: new DevFileProvider(inProcessDir) });
    cleanup.add(() => service.close());
    await service.call('unseal', { secret: '' }, SYSTEM_CALLER);
    const caller = { id: 'bench:in-process', role: 'server' } as const;
    const inProcess: KeyService = {
      call: <K extends KeydOperationName>(op: K, args: OpArgs<K>) => service.call(op, args, caller),
    };

    const transports: Transport[] = [
      { label: 'Unix socket', keyd: unixTarget, echo: { kind: 'unix', path: join(echoDir, 'echo.sock') } },
      {
        label: `mTLS (TLS 1.3, ${LOOPBACK})`,
        keyd: { ...pki.client, port: portOf(tlsKeyd.address) },
        echo: { ...pki.client, port: portOf(tlsEcho.address) },
      },
    ];
    progress('b. keyd round trips');
    sections.push(
      await benchRoundTrips({
        transports,
        inProcess,
        seconds: options.seconds,
        concurrencies: [...new Set([1, options.concurrency])],
        poolSize: options.pool,
        diskDir: tmp,
      }),
    );
  }

  if (options.sections.has('mixed-load')) {
    progress('c. mixed load');
    const dataDir = join(tmp, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    sections.push(
      await benchMixedLoad({
        keyd: unixTarget,
        dataDir,
        seconds: options.seconds,
        tenants: options.tenants,
        keysPerTenant: options.keysPerTenant,
        zipf: options.zipf,
        readShare: 0.8,
        concurrency: options.mixedConcurrency,
        poolSize: options.pool,
        cache: { ttlMs: 5 * 60_000, maxUses: 100_000, maxEntries: 1000 },
        seed: 20_240_601,
      }),
    );
  }
}

async function main(): Promise<number> {
  let options: ReturnType<typeof readOptions>;
  try {
    options = readOptions();
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const cleanup = new Cleanup();
  let interrupted = false;
  const interrupt = () => {
    interrupted = true;
    progress('interrupted; stopping keyd and removing temporary files');
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  if (options.cpuProf) mkdirSync(options.cpuProf, { recursive: true });
  try {
    const report = await run(options, cleanup);
    process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatTable(report));
    return 0;
  } catch (error) {
    // After Ctrl-C the run fails because its keyd was stopped: that is not news.
    if (!interrupted) process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  } finally {
    await cleanup.run();
  }
}

process.exitCode = await main();
