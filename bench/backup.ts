/**
 * h. Backups (issue 16): a real `tresor server` (backup-tresor-child.ts) with keyd as its own
 * process and a folder destination, its store filled with `records` 1 KiB records (100,000 by
 * default). Measured:
 *   1. a backup at rest, as `tresor backup now` takes it (POST /v1/backups): the backup itself
 *      (snapshot, encryption, writes read back, manifest signed: the run's start to its end) and
 *      then its verification (the trial restore and the other checks), time and MB/s of the store
 *      files backed up (the snapshot's plaintext bytes);
 *   2. a restore of that backup into an empty folder (`tresor restore`'s restoreDeployment, here in
 *      process with a keyd client), time and MB/s, and the start of a server on the restored folder:
 *      together the recovery time;
 *   3. the API's write throughput (POST records over HTTPS, autocannon, fixed concurrency) without
 *      a backup and while one runs, in interleaved rounds: the ratio (target ≥ 0.8×).
 * Every loop is bounded (a round ends when its backup is verified, at most `maxBackupSeconds`).
 *
 * With `databaseUrl` (`--only backup-pg`) the server's stores are in a fresh PostgreSQL database:
 * 1 and 3 as above (the backup is the database's snapshot, its trial restore a scratch database);
 * 2 is left out (a restore into a folder is SQLite's).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createFolderDestination } from '../src/backup/index.ts';
import { ensureDevTls } from '../src/config/dev-tls.ts';
import { resolveServerConfig } from '../src/config/server-config.ts';
import { createKeydClient } from '../src/keyd/client.ts';
import { resetKeydCheckpointTree, restoreDeployment } from '../src/server/restore-deployment.ts';
import { startTresorServer } from '../src/server/tresor-server.ts';
import { BENCH_COLLECTION, benchRecord } from './backup-record.ts';
import type { BackupChildAddress, BackupChildArgs } from './backup-tresor-child.ts';
import { logTail, REPO_ROOT, startDevKeyd } from './children.ts';
import type { Rate } from './measure.ts';
import type { Fact, FigureGroup, Section } from './report.ts';

export interface BackupBenchOptions {
  /** A private temporary folder (data folders, backups, logs). */
  dir: string;
  records: number;
  /** Writes in flight during the throughput rounds. */
  concurrency: number;
  /** Rounds of (no backup, backup) write load. */
  rounds: number;
  /** Folder destinations (default 1): each written and read back; the trial restore at the first, the others verified. */
  destinations?: number;
  logLevel: string;
  /** Folder for a V8 CPU profile of the server (node --cpu-prof), written when it stops. */
  cpuProfDir?: string;
  /**
   * The server's stores in this fresh PostgreSQL database instead of SQLite files (`--only
   * backup-pg`): the backup is the database's snapshot, its trial restore a scratch database.
   * The restore into an empty folder (step 2) is SQLite's and is left out.
   */
  databaseUrl?: string;
  progress(message: string): void;
  onCleanup(step: () => Promise<void>): void;
}

export interface BackupRound {
  withoutBackup: Rate;
  /** From the backup's request to its end. */
  duringBackup: Rate;
  /** From its end to its verification (trial restore). */
  duringVerify: Rate;
  /** duringBackup ÷ withoutBackup. */
  ratio: number;
  verifyRatio: number;
  backupSeconds: number;
  verifySeconds: number;
}

export interface BackupBenchResult {
  backend: 'sqlite' | 'postgres';
  records: number;
  destinations: number;
  fillSeconds: number;
  storeBytes: number;
  backup: { seconds: number; verifySeconds: number; plaintextBytes: number; storedBytes: number };
  /** Absent on PostgreSQL (step 2 is SQLite's). */
  restore?: { seconds: number; startSeconds: number; plaintextBytes: number };
  concurrency: number;
  rounds: BackupRound[];
  medianRatio: number;
}

/** Longest a backup (with its verification) may take before the bench gives up. */
const MAX_BACKUP_SECONDS = 600;
const START_TIMEOUT_MS = 30 * 60_000;
const POLL_MS = 100;
const NS_PER_S = 1e9;
const MB = 1e6;
const now = (): number => Number(process.hrtime.bigint());

// --- autocannon (CommonJS, no types of its own): the part used here ------------------------------

interface LoadInstance {
  on(event: 'response', listener: (client: unknown, status: number) => void): void;
  stop(): void;
}
type Autocannon = (
  options: Record<string, unknown>,
  done: (error: Error | null, result: { errors: number; timeouts: number; non2xx: number }) => void,
) => LoadInstance;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

// --- the server child ---------------------------------------------------------------------------

interface ServerChild {
  address: BackupChildAddress;
  pid: number;
  /** Closes a load tenant at once (grace 0: its key is destroyed and its store removed). */
  closeTenant(id: string): Promise<void>;
  stop(): Promise<void>;
}

/** Starts backup-tresor-child.ts and waits (it fills its store first) for its one JSON line. */
async function startServerChild(
  args: BackupChildArgs,
  logFile: string,
  nodeArgs: readonly string[],
): Promise<ServerChild> {
  const log = openSync(logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(
      process.execPath,
      [...nodeArgs, '--import', 'tsx', join(REPO_ROOT, 'bench/backup-tresor-child.ts'), JSON.stringify(args)],
      {
        cwd: REPO_ROOT,
        stdio: ['pipe', 'pipe', log],
        // As `tresor server` runs: bin/tresor.js gives libuv's pool 64 threads.
        env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '64' },
      },
    );
  } finally {
    closeSync(log);
  }
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    try {
      await gone;
    } finally {
      clearTimeout(timer);
    }
  };
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the backup bench server did not start within ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
      lines.once('line', (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the backup bench server exited before listening (${signal ?? `code ${code}`})`));
      });
    });
    // Later lines answer `close <tenant>` requests: `closed <tenant>` or `failed <tenant> <code>`.
    const waiting = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
    lines.on('line', (text) => {
      const [verb, id, code] = text.split(' ');
      const w = waiting.get(id ?? '');
      if (!w) return;
      waiting.delete(id ?? '');
      if (verb === 'closed') w.resolve();
      else w.reject(new Error(`closing load tenant ${id} failed (${code})`));
    });
    const closeTenant = (id: string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`closing load tenant ${id} took over 120 s`)),
          120_000,
        );
        waiting.set(id, {
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        child.stdin?.write(`close ${id}\n`);
      });
    return { address: JSON.parse(line) as BackupChildAddress, pid: child.pid ?? 0, closeTenant, stop };
  } catch (error) {
    await stop();
    const tail = logTail(logFile);
    throw new Error(`${(error as Error).message}${tail ? `\n--- server log (${logFile}) ---\n${tail}` : ''}`);
  }
}

// --- HTTPS --------------------------------------------------------------------------------------

interface BackupView {
  id: string;
  startedAt: string;
  endedAt: string | null;
  outcome: string;
  plaintextBytes: number | null;
  storedBytes: number | null;
  verification: { result: string; at: string } | null;
}

async function httpsJson(
  agent: Agent,
  url: URL,
  token: string,
  method: 'GET' | 'POST',
  path: string,
): Promise<{ status: number; json: unknown }> {
  const { status, text } = await httpsText(agent, url, token, path, method);
  return { status, json: text ? (JSON.parse(text) as unknown) : undefined };
}

function httpsText(
  agent: Agent,
  url: URL,
  token: string,
  path: string,
  method: 'GET' | 'POST' = 'GET',
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(path, url),
      { method, agent, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path}: no answer in 60 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** POST /v1/backups, then polls the run until it is verified; `onEnded` when the backup itself ended. */
async function takeBackup(
  agent: Agent,
  server: BackupChildAddress,
  onEnded: () => void = () => undefined,
): Promise<BackupView> {
  const url = new URL(server.url);
  const started = await httpsJson(agent, url, server.runToken, 'POST', '/v1/backups');
  if (started.status !== 202) {
    throw new Error(`POST /v1/backups answered ${started.status}: ${JSON.stringify(started.json)}`);
  }
  const { id } = started.json as { id: string };
  const deadline = Date.now() + MAX_BACKUP_SECONDS * 1000;
  let ended = false;
  while (Date.now() < deadline) {
    const res = await httpsJson(agent, url, server.readToken, 'GET', `/v1/backups/${id}`);
    if (res.status === 503) {
      // The audit log not taking entries for a moment (seen at a load average near 30): ask again.
      await new Promise((r) => setTimeout(r, POLL_MS));
      continue;
    }
    if (res.status !== 200) throw new Error(`GET /v1/backups/${id} answered ${res.status}`);
    const view = res.json as BackupView;
    if (view.endedAt !== null && !ended) {
      ended = true;
      onEnded();
    }
    if (view.endedAt !== null && view.verification !== null) {
      if (view.outcome !== 'done' || view.verification.result !== 'passed') {
        throw new Error(`backup ${id}: ${view.outcome}, verification ${view.verification.result}`);
      }
      return view;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`backup ${id} was not verified within ${MAX_BACKUP_SECONDS} s`);
}

/** Sets keyd's checkpoint tree to the live server's latest signed checkpoint. */
async function giveTreeBack(agent: Agent, server: BackupChildAddress, keydSocket: string): Promise<void> {
  const res = await httpsText(agent, new URL(server.url), server.apiKey, '/v1/audit/checkpoint');
  if (res.status !== 200) throw new Error(`GET /v1/audit/checkpoint answered ${res.status}`);
  const keys = createKeydClient({
    connect: { kind: 'unix', path: keydSocket },
    clientName: 'tresor-restore',
  });
  try {
    await resetKeydCheckpointTree(keys, res.text);
  } finally {
    await keys.close();
  }
}

const seconds = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / 1000;

// --- write load ---------------------------------------------------------------------------------

interface Load {
  /** 2xx responses so far. */
  count(): number;
  /** Stops the load and waits for it; throws if any request failed. */
  finish(): Promise<void>;
}

/** POST records at `concurrency` in flight until finish() (or `maxSeconds`). */
function writeLoad(
  server: BackupChildAddress,
  apiKey: string,
  ca: Buffer,
  concurrency: number,
  first: number,
): Load {
  let ok = 0;
  const refused = new Map<number, number>(); // status → count, for the failure message
  let n = first;
  let result: { errors: number; timeouts: number; non2xx: number } | undefined;
  let failure: Error | undefined;
  let instance: LoadInstance | undefined;
  const settled = new Promise<void>((resolve) => {
    instance = autocannon(
      {
        url: new URL(server.url).origin,
        connections: concurrency,
        pipelining: 1,
        duration: MAX_BACKUP_SECONDS,
        timeout: 60,
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        requests: [
          {
            method: 'POST',
            path: `/v1/collections/${BENCH_COLLECTION}/records`,
            setupRequest: (request: Record<string, unknown>) => ({
              ...request,
              body: JSON.stringify(benchRecord(n++)),
            }),
          },
        ],
        tlsOptions: { ca },
      },
      (error, res) => {
        if (error) failure = error;
        else result = res;
        resolve();
      },
    );
    instance.on('response', (_client, status) => {
      if (status >= 200 && status < 300) ok += 1;
      else refused.set(status, (refused.get(status) ?? 0) + 1);
    });
  });
  return {
    count: () => ok,
    async finish() {
      instance?.stop();
      await settled;
      if (failure) throw failure;
      if (result && result.errors + result.timeouts > 0) {
        throw new Error(`write load: ${result.errors} errors, ${result.timeouts} timeouts`);
      }
      // Refused answers (32 × 503 seen once at a load average near 30, the machine overloaded) are not
      // counted in the rate, which counts 2xx only; they are reported, not fatal to the run.
      if (result && result.non2xx > 0) {
        process.stderr.write(
          `bench: backup: write load: ${result.non2xx} non-2xx answers (${[...refused].map(([status, n]) => `${n}× ${status}`).join(', ')}), not counted\n`,
        );
      }
    },
  };
}

function rateOf(operations: number, elapsedNs: number): Rate {
  const opsPerSecond = (operations * NS_PER_S) / elapsedNs;
  return { opsPerSecond, min: opsPerSecond, max: opsPerSecond, operations, seconds: elapsedNs / NS_PER_S };
}

/** Write load for `durationS` seconds with no backup: the baseline of a round. */
async function loadAlone(
  server: BackupChildAddress,
  apiKey: string,
  ca: Buffer,
  concurrency: number,
  first: number,
  durationS: number,
): Promise<Rate> {
  const load = writeLoad(server, apiKey, ca, concurrency, first);
  await new Promise((r) => setTimeout(r, 1000)); // warm-up: connections open, caches hot
  const from = load.count();
  const t0 = now();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  const rate = rateOf(load.count() - from, now() - t0);
  await load.finish();
  return rate;
}

/**
 * Write load while a backup runs: from its request to its end (the backup itself), and from its
 * end to its verification (the trial restore and the other checks), as two rates.
 */
async function loadDuringBackup(
  agent: Agent,
  server: BackupChildAddress,
  apiKey: string,
  ca: Buffer,
  concurrency: number,
  first: number,
): Promise<{ backup: Rate; verify: Rate; whole: Rate; view: BackupView }> {
  const load = writeLoad(server, apiKey, ca, concurrency, first);
  try {
    await new Promise((r) => setTimeout(r, 1000)); // the same warm-up as loadAlone
    const from = load.count();
    const t0 = now();
    let ended = { count: from, at: t0 };
    const view = await takeBackup(agent, server, () => {
      ended = { count: load.count(), at: now() };
    });
    const to = { count: load.count(), at: now() };
    return {
      backup: rateOf(ended.count - from, ended.at - t0),
      verify: rateOf(to.count - ended.count, to.at - ended.at),
      whole: rateOf(to.count - from, to.at - t0),
      view,
    };
  } finally {
    await load.finish();
  }
}

/** Bytes of the store files (control store and tenant stores, WAL included) in a data folder. */
function storeBytes(dataDir: string): number {
  let total = 0;
  for (const entry of readdirSync(dataDir, { recursive: true }) as string[]) {
    if (!/\.sqlite(-wal)?$/.test(entry)) continue;
    total += statSync(join(dataDir, entry)).size;
  }
  return total;
}

/** 2. The backup restored into an empty folder, then a server started on it (SQLite). */
async function restoreAndStart(
  agent: Agent,
  server: BackupChildAddress,
  atRest: BackupView,
  where: { dir: string; backupDir: string; keydSocket: string },
  progress: (message: string) => void,
): Promise<NonNullable<BackupBenchResult['restore']>> {
  const { dir, backupDir, keydSocket } = where;
  progress('backup: restoring it into an empty folder');
  const keys = createKeydClient({
    connect: { kind: 'unix', path: keydSocket },
    clientName: 'tresor-restore',
  });
  const restoredDir = join(dir, 'backup-restored');
  let restoreSeconds: number;
  let restoredBytes: number;
  try {
    const t0 = now();
    const restored = await restoreDeployment({
      destination: createFolderDestination({ root: join(backupDir, 'd0'), name: 'd0' }),
      backupId: atRest.id,
      keys,
      target: restoredDir,
    });
    restoreSeconds = (now() - t0) / NS_PER_S;
    restoredBytes = restored.plaintextBytes;
  } finally {
    await keys.close();
  }
  await ensureDevTls(restoredDir); // an operator's certificates are in place before the start
  const t1 = now();
  const restoredServer = await startTresorServer(
    resolveServerConfig(
      { dataDir: restoredDir, host: '127.0.0.1', port: '0' },
      { TRESOR_KEYD_SOCKET: keydSocket, TRESOR_LOG_LEVEL: 'warn', TRESOR_BACKUP_INTERVAL_MINUTES: '0' },
    ),
    { jobIntervalMs: 0 },
  );
  const startSeconds = (now() - t1) / NS_PER_S;
  await restoredServer.close();
  // The restore set keyd's checkpoint tree back to the backup's (and the restored server may have
  // signed past it): the live log, still running on this keyd, could sign nothing more — a fork. An
  // operator ends a restore drill on the production keyd the same way: keyd's tree goes back to the
  // live log's latest checkpoint (docs/keyd.md, restoring a deployment).
  await giveTreeBack(agent, server, keydSocket);
  return { seconds: restoreSeconds, startSeconds, plaintextBytes: restoredBytes };
}

export async function benchBackup(options: BackupBenchOptions): Promise<BackupBenchResult> {
  const { dir, progress } = options;
  const { keyd, socket: keydSocket } = await startDevKeyd('keyd (backup)', dir, 'backup-keyd');
  options.onCleanup(() => keyd.stop());

  const dataDir = join(dir, 'backup-data');
  const backupDir = join(dir, 'backup-destination');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  mkdirSync(backupDir, { recursive: true, mode: 0o700 });
  const tls = await ensureDevTls(dataDir);
  const ca = readFileSync(tls.caFile);
  progress(`backup: starting the server and filling it with ${options.records.toLocaleString('en')} records`);
  const nodeArgs = options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] : [];
  const child = await startServerChild(
    {
      dataDir,
      keydSocket,
      backupDir,
      destinations: options.destinations ?? 1,
      records: options.records,
      logLevel: options.logLevel,
      loadTenants: 2 * options.rounds,
      ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    },
    join(dir, 'backup-server.log'),
    nodeArgs,
  );
  options.onCleanup(() => child.stop());
  const server = child.address;
  // No keep-alive: between the phases the server closes idle connections, and a reused one resets.
  const agent = new Agent({ ca, keepAlive: false });
  options.onCleanup(async () => agent.destroy());
  const onPg = options.databaseUrl !== undefined;
  if (!onPg)
    progress(
      `backup: filled in ${server.fillSeconds.toFixed(1)} s; store files ${(storeBytes(dataDir) / MB).toFixed(1)} MB`,
    );
  else progress(`backup: filled the PostgreSQL database in ${server.fillSeconds.toFixed(1)} s`);

  // 1. A backup at rest.
  progress('backup: a backup at rest');
  const atRest = await takeBackup(agent, server);
  // On PostgreSQL the stores' size is the snapshot's (the dump files' plaintext bytes).
  const bytesAtRest = onPg ? (atRest.plaintextBytes ?? 0) : storeBytes(dataDir);
  const backupSeconds = seconds(atRest.startedAt, atRest.endedAt as string);
  const verifySeconds = seconds(atRest.endedAt as string, (atRest.verification as { at: string }).at);
  progress(`backup: at rest ${backupSeconds.toFixed(1)} s, verified in ${verifySeconds.toFixed(1)} s`);

  const restore = onPg
    ? undefined
    : await restoreAndStart(agent, server, atRest, { dir, backupDir, keydSocket }, progress);
  if (restore)
    progress(
      `backup: restored in ${restore.seconds.toFixed(1)} s, a server started on it in ${restore.startSeconds.toFixed(1)} s`,
    );

  // 3. Write throughput without and during a backup, interleaved.
  const rounds: BackupRound[] = [];
  // Each load writes emails of its own range, so no two records share one.
  const firstOf = (load: number) => options.records + load * 10_000_000;
  for (let i = 0; i < options.rounds; i++) {
    // Each window writes into a load tenant of its own, closed (shredded, its store removed) when
    // the window ends, so every round backs up the same filled store. The windows alternate in
    // order: the WAL a snapshot holds back is checkpointed after it, which would otherwise always
    // weigh on the window that follows the backup.
    const duringKey = server.loadKeys[2 * i];
    const aloneKey = server.loadKeys[2 * i + 1];
    if (!duringKey || !aloneKey) throw new Error('the server made too few load tenants');
    const aloneFirst = i % 2 === 1 && rounds.length > 0;
    let alone: Rate | undefined;
    if (aloneFirst) {
      progress(`backup: round ${i + 1} of ${options.rounds}, writes without a backup (first this round)`);
      const previous = rounds[rounds.length - 1] as BackupRound;
      alone = await loadAlone(
        server,
        aloneKey.apiKey,
        ca,
        options.concurrency,
        firstOf(2 * i + 1),
        previous.backupSeconds + previous.verifySeconds,
      );
      await child.closeTenant(aloneKey.tenant);
    }
    progress(`backup: round ${i + 1} of ${options.rounds}, writes during a backup`);
    const during = await loadDuringBackup(
      agent,
      server,
      duringKey.apiKey,
      ca,
      options.concurrency,
      firstOf(2 * i),
    );
    await child.closeTenant(duringKey.tenant);
    if (!alone) {
      progress(`backup: round ${i + 1} of ${options.rounds}, writes without a backup`);
      alone = await loadAlone(
        server,
        aloneKey.apiKey,
        ca,
        options.concurrency,
        firstOf(2 * i + 1),
        during.whole.seconds,
      );
      await child.closeTenant(aloneKey.tenant);
    }
    const view = during.view;
    progress(
      `backup: round ${i + 1}: ${Math.round(alone.opsPerSecond)} writes/s alone, ` +
        `${Math.round(during.backup.opsPerSecond)} during the backup (${seconds(view.startedAt, view.endedAt as string).toFixed(1)} s), ` +
        `${Math.round(during.verify.opsPerSecond)} during its verification`,
    );
    rounds.push({
      withoutBackup: alone,
      duringBackup: during.backup,
      duringVerify: during.verify,
      ratio: during.backup.opsPerSecond / alone.opsPerSecond,
      verifyRatio: during.verify.opsPerSecond / alone.opsPerSecond,
      backupSeconds: seconds(view.startedAt, view.endedAt as string),
      verifySeconds: seconds(view.endedAt as string, (view.verification as { at: string }).at),
    });
  }
  const ratios = rounds.map((r) => r.ratio).sort((a, b) => a - b);
  return {
    backend: onPg ? 'postgres' : 'sqlite',
    records: options.records,
    destinations: options.destinations ?? 1,
    fillSeconds: server.fillSeconds,
    storeBytes: bytesAtRest,
    backup: {
      seconds: backupSeconds,
      verifySeconds,
      plaintextBytes: atRest.plaintextBytes ?? 0,
      storedBytes: atRest.storedBytes ?? 0,
    },
    ...(restore ? { restore } : {}),
    concurrency: options.concurrency,
    rounds,
    // The lower middle one for an even count: a median that never flatters.
    medianRatio: ratios[Math.floor((ratios.length - 1) / 2)] ?? 0,
  };
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** h. as a section of the report. */
export function backupSection(r: BackupBenchResult): Section {
  const groups: FigureGroup[] = r.rounds.map((round, i) => ({
    title: `round ${i + 1}: POST records, concurrency ${r.concurrency}`,
    figures: [
      { name: 'no backup running', rate: round.withoutBackup, isBaseline: true },
      {
        name: `while a backup runs (${round.backupSeconds.toFixed(1)} s)`,
        rate: round.duringBackup,
        baseline: 'no backup running',
        ratio: round.ratio,
      },
      {
        name: `while it is verified (trial restore, ${round.verifySeconds.toFixed(1)} s)`,
        rate: round.duringVerify,
        baseline: 'no backup running',
        ratio: round.verifyRatio,
      },
    ],
  }));
  const onPg = r.backend === 'postgres';
  const facts: Fact[] = [
    { name: 'records in the store (1 KiB each)', value: r.records, unit: '' },
    onPg
      ? {
          name: 'the database snapshot (control + tenant schemas)',
          value: round2(r.storeBytes / MB),
          unit: 'MB',
        }
      : { name: 'store files (control + tenant, with WAL)', value: round2(r.storeBytes / MB), unit: 'MB' },
    {
      name: 'backup at rest: snapshot → encrypted → written, read back',
      value: round2(r.backup.seconds),
      unit: 's',
    },
    {
      name: 'backup at rest: MB/s of the snapshot (plaintext bytes)',
      value: round2(r.backup.plaintextBytes / MB / r.backup.seconds),
      unit: `MB/s (${round2(r.backup.plaintextBytes / MB)} MB)`,
    },
    {
      name: 'backup at rest: its verification (trial restore)',
      value: round2(r.backup.verifySeconds),
      unit: 's',
    },
    ...(r.restore ? restoreFacts(r.restore) : []),
    {
      name: 'writes while a backup runs ÷ without, median of rounds',
      value: round2(r.medianRatio),
      unit: `×  target ≥ 0.8×: ${r.medianRatio >= 0.8 ? 'met' : 'MISSED'}`,
    },
  ];
  return {
    id: onPg ? 'backup-pg' : 'backup',
    title: `h. Backups${onPg ? ' on PostgreSQL' : ''}: ${r.records.toLocaleString('en')} records, ${r.destinations === 1 ? 'one folder destination' : `${r.destinations} folder destinations`}`,
    groups,
    facts,
    notes: [
      ...(onPg
        ? [
            'PostgreSQL: the server on a fresh database of the machine’s PostgreSQL; the backup is its snapshot, the ' +
              'trial restore loads it into a scratch database. No restore into a folder (that row is SQLite’s).',
          ]
        : []),
      `Store filled in process through the vault in ${r.fillSeconds.toFixed(0)} s (encryption, blind index, audit entry per record).`,
      `Backup times are the server’s own record of the run (start to end; then to its verification).${
        onPg
          ? ''
          : ' Restore is restoreDeployment as `tresor restore` runs it: signature, every chunk, decryption, the audit log against the checkpoint.'
      }`,
      'Each round: writes over HTTPS with a backup taken meanwhile (from POST /v1/backups to its verification), then ' +
        'the same length of writes with none; a 1 s warm-up before each.',
    ],
  };
}

function restoreFacts(restore: NonNullable<BackupBenchResult['restore']>): Fact[] {
  return [
    { name: 'restore into an empty folder (tresor restore)', value: round2(restore.seconds), unit: 's' },
    {
      name: 'restore: MB/s of the restored files',
      value: round2(restore.plaintextBytes / MB / restore.seconds),
      unit: 'MB/s',
    },
    { name: 'server start on the restored folder', value: round2(restore.startSeconds), unit: 's' },
  ];
}
