/**
 * The processes a bench run starts — the real keyd (keyd-child.ts) and the echo baseline
 * (echo-child.ts) — and the mTLS certificates they share. Each child is started with its stdin
 * piped from us: if the bench dies, the pipe closes and the child exits; on a normal end stop()
 * sends SIGTERM to that child's pid, then SIGKILL if it has not exited within a few seconds.
 *
 * A child's stderr (keyd's pino log) goes to a file, not a pipe to us: pino's synchronous
 * destination (sonic-boom 4.2) retries a failed write forever when it flushes at exit, so a keyd
 * whose stderr pipe had lost its reader (a bench killed with -9) never finished exiting.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { KeydConnectTarget } from '../src/keyd/client.ts';
import type { KeydConfig } from '../src/keyd/config.ts';
import { initDevFile } from '../src/keyd/root/dev-file.ts';
import type { KeydAddress } from '../src/keyd/server.ts';
import { createDevCa, fingerprint256, issueCertificate } from '../src/tls/dev-ca.ts';

export const REPO_ROOT = join(import.meta.dirname, '..');

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
/** Lines of a child's log shown if it fails to start. */
const LOG_TAIL_LINES = 8;

export type EchoChildConfig =
  | { kind: 'unix'; path: string }
  | { kind: 'tls'; host: string; certFile: string; keyFile: string; caFile: string };

export interface Child<A> {
  /** What the child printed once it was listening. */
  address: A;
  pid: number;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  const gone = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  try {
    await gone;
  } finally {
    clearTimeout(timer);
  }
}

export function logTail(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8').trim().split('\n').slice(-LOG_TAIL_LINES).join('\n');
  } catch {
    return '';
  }
}

/**
 * Node options every child gets, from TRESOR_BENCH_CHILD_NODE_ARGS (space-separated): to profile
 * the children, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`, which NODE_OPTIONS may not carry.
 */
const PROFILING_ARGS = (process.env.TRESOR_BENCH_CHILD_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

/**
 * Starts `node --import tsx <script> <json arg>`, its stderr appended to `logFile`, and waits for
 * its first stdout line (its address), 30 s unless `startTimeoutMs` says otherwise (a child that
 * makes its fixtures first).
 */
export async function startChild<A>(
  label: string,
  script: string,
  arg: unknown,
  logFile: string,
  nodeArgs: readonly string[] = [],
  /** A child that does long work before it announces itself (fills a store) gets longer. */
  startTimeoutMs: number = START_TIMEOUT_MS,
): Promise<Child<A>> {
  const log = openSync(logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(
      process.execPath,
      [...nodeArgs, ...PROFILING_ARGS, '--import', 'tsx', join(REPO_ROOT, script), JSON.stringify(arg)],
      {
        cwd: REPO_ROOT,
        stdio: ['pipe', 'pipe', log],
        // A server child runs as `tresor server` does: bin/tresor.js gives libuv's pool 64 threads.
        env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '64' },
      },
    );
  } finally {
    closeSync(log); // the child has its own copy
  }
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${label} did not start within ${startTimeoutMs} ms`)),
        startTimeoutMs,
      );
      lines.once('line', (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${label} exited before listening (${signal ?? `code ${code}`})`));
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    lines.close();
    child.stdout?.resume(); // nothing more is expected there; never let the pipe fill
    return { address: JSON.parse(line) as A, pid: child.pid ?? 0, stop: () => stopChild(child) };
  } catch (error) {
    await stopChild(child);
    const tail = logTail(logFile);
    throw new Error(
      `${(error as Error).message}${tail ? `\n--- ${label} log (${logFile}) ---\n${tail}` : ''}`,
    );
  }
}

/** The real keyd (its folder initialised by the caller: dev file on a socket, passphrase over mTLS). */
export function startKeyd(label: string, config: KeydConfig, logFile: string): Promise<Child<KeydAddress>> {
  return startChild<KeydAddress>(label, 'bench/keyd-child.ts', config, logFile);
}

/**
 * keyd on a Unix socket in `<dir>/<name>`, with a dev-file root key made there: the keyd the HTTPS,
 * backup and two-node benches run beside their servers. Its log is `<dir>/<name>.log`.
 */
export async function startDevKeyd(
  label: string,
  dir: string,
  name: string,
): Promise<{ keyd: Child<KeydAddress>; socket: string }> {
  const keydDir = join(dir, name);
  mkdirSync(keydDir, { recursive: true, mode: 0o700 });
  initDevFile(keydDir);
  const socket = join(keydDir, 'keyd.sock');
  const keyd = await startKeyd(
    label,
    {
      dir: keydDir,
      provider: 'dev-file',
      insecureDevKeyFile: true,
      listen: { kind: 'unix', path: socket },
      tenantKeyCryptoperiodDays: 365,
      destroyGraceSeconds: 7 * 86400,
      maintenanceIntervalSeconds: 3600,
    },
    join(dir, `${name}.log`),
  );
  return { keyd, socket };
}

export function startEcho(
  label: string,
  config: EchoChildConfig,
  logFile: string,
): Promise<Child<KeydAddress>> {
  return startChild<KeydAddress>(label, 'bench/echo-child.ts', config, logFile);
}

/** Certificates for mTLS on loopback: a dev CA, keyd's server certificate and the bench's client one. */
export interface BenchPki {
  caFile: string;
  certFile: string;
  keyFile: string;
  allowlist: { fingerprint256: string; name: string; role: 'server' }[];
  /** What a client needs to connect to 127.0.0.1:port. */
  client: Omit<Extract<KeydConnectTarget, { kind: 'tls' }>, 'port'>;
}

export const LOOPBACK = '127.0.0.1';

export async function createBenchPki(dir: string): Promise<BenchPki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await createDevCa({ commonName: 'Tresor bench CA', days: 1 });
  const server = await issueCertificate(ca, {
    commonName: 'keyd',
    sans: { ip: [LOOPBACK] },
    usage: 'server',
    days: 1,
  });
  const client = await issueCertificate(ca, { commonName: 'tresor-bench', usage: 'client', days: 1 });
  const write = (name: string, pem: string) => {
    const path = join(dir, name);
    writeFileSync(path, pem, { mode: 0o600 });
    return path;
  };
  return {
    caFile: write('ca.pem', ca.certPem),
    certFile: write('keyd.pem', server.certPem),
    keyFile: write('keyd.key', server.keyPem),
    allowlist: [{ fingerprint256: fingerprint256(client.certPem), name: 'tresor-bench', role: 'server' }],
    client: { kind: 'tls', host: LOOPBACK, cert: client.certPem, key: client.keyPem, ca: ca.certPem },
  };
}
