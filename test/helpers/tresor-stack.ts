/**
 * A whole Tresor stack for end-to-end tests, as operators run it: the real `tresor keyd` process
 * (dev-file root key, Unix socket) and the API as a separate `tresor server` process — or, where a
 * test needs the server's internals, in this process through startTresorServer — on 127.0.0.1 with
 * a port the kernel picks and a temporary data folder laid out like `tresor dev`'s:
 * (on the PostgreSQL pass, TRESOR_TEST_BACKEND=postgres, the stores live in a fresh database of the
 * stack's own instead, `stack.database`, dropped by stop(); test/helpers/backend.ts)
 *
 *   <root>/data/            the server's data folder (control store, tenants/, tls/)
 *   <root>/data/keyd/       keyd's folder (root key file, key store, keyd.sock)
 *
 * The first operator admin — a console person, not yet enrolled — is made before the server starts,
 * in the control store, exactly as `tresor dev` makes it (there is no HTTP route for the first
 * operator); test/helpers/console.ts `operatorAdmin(stack)` enrols and signs it in. There is no
 * all-powerful token: tests mint scoped operator tokens through that person's session. Requests go over real
 * HTTPS with node:https — which sends the path byte for byte, unlike fetch, whose URL parser would
 * resolve `../` before a test could send it — trusting only the stack's dev CA.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDevTls } from '../../src/config/dev-tls.ts';
import type { DatabaseConfig } from '../../src/config/server-config.ts';
import { resolveServerConfig } from '../../src/config/server-config.ts';
import { createAccountService } from '../../src/identity/accounts.ts';
import type { KeydClient } from '../../src/keyd/client.ts';
import { initDevFile } from '../../src/keyd/root/dev-file.ts';
import { openControlOf } from '../../src/server/backend.ts';
import {
  startTresorServer,
  type TresorServer,
  type TresorServerOptions,
} from '../../src/server/tresor-server.ts';
import { type TestBackend, testDatabase } from './backend.ts';
import { type KeydProcess, startKeyd, TRESOR_BIN } from './keyd-process.ts';

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The body as received (binary answers: tlog-tiles resources); absent on a made-up answer. */
  bytes?: Buffer;
  /** The body parsed as JSON (throws on a body that is not JSON). */
  json<T = Record<string, unknown>>(): T;
}

export interface RequestOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** A JSON body (serialised here); `content-type: application/json` unless `contentType` says otherwise. */
  body?: unknown;
  /** A body sent as is (duplicate keys, broken JSON, other media types). */
  rawBody?: string | Buffer;
  /** The content-type header; null sends none. */
  contentType?: string | null;
  headers?: Record<string, string>;
}

export type Requester = (method: string, path: string, options?: RequestOptions) => Promise<HttpResponse>;

export interface TresorStackOptions {
  /** 'process' (default): `tresor server` as a child process; 'in-process': startTresorServer here. */
  server?: 'process' | 'in-process';
  /** The server's log level (TRESOR_LOG_LEVEL); default 'info', so request logs are produced. */
  logLevel?: string;
  /** Extra TRESOR_* settings for the server (e.g. audit bounds). */
  env?: Record<string, string>;
  /** A data folder to use (e.g. a small filesystem); keyd then lives apart, under the stack's root. */
  dataDir?: string;
  /**
   * Whether the stack makes the first operator admin itself (default true); false leaves a
   * deployment with no people, for `tresor init` to bootstrap as operators do.
   */
  firstAdmin?: boolean;
  /** The storage backend (default: TRESOR_TEST_BACKEND, else sqlite). */
  backend?: TestBackend;
  /** The `tresor` bin keyd and the server run from (default the checkout's; e.g. a compiled deployment's). */
  bin?: string;
  /** In-process mode: options for startTresorServer besides `jobIntervalMs: 0` (e.g. job periods). */
  serverOptions?: TresorServerOptions;
}

export interface TresorStack {
  readonly root: string;
  readonly dataDir: string;
  readonly keydDir: string;
  readonly keydSocket: string;
  readonly caFile: string;
  /** Where the stores are: SQLite in dataDir, or the stack's own PostgreSQL database. */
  readonly database: DatabaseConfig;
  /** The HTTPS origin of the server running now (it changes when the server restarts). */
  readonly url: string;
  /**
   * The first operator admin, a console person made as `tresor dev` makes it: it enrols once with
   * `enrolmentToken` (test/helpers/console.ts `operatorAdmin` does, then signs in).
   */
  readonly admin: BootstrapAdmin;
  /** The `tresor server` child process, while one runs (process mode). */
  readonly serverProcess: ChildProcess | undefined;
  /** The server object (in-process mode). */
  readonly server: TresorServer | undefined;
  /** Everything the server processes wrote to stdout and stderr (their logs) so far; in process: ''. */
  serverOutput(): string;
  request: Requester;
  /** A client of the real keyd process, closed by stop(). */
  keydClient(): KeydClient;
  /**
   * Starts the server again (after stopServer or kill9Server) on a new port; same data folder.
   * `env`: TRESOR_* settings added for this and later starts (e.g. a key file made meanwhile).
   */
  startServer(env?: Record<string, string>): Promise<void>;
  /** Stops the server gracefully (SIGTERM, or close() in process) and waits until it is gone. */
  stopServer(): Promise<void>;
  /** kill -9 of the server process, waiting until it is gone. */
  kill9Server(): Promise<void>;
  /** Stops the server and keyd and removes the temporary folder. */
  stop(): Promise<void>;
}

// A PostgreSQL start migrates and checks a database: on a loaded 2-core machine it took over 30 s.
const START_TIMEOUT_MS = 60_000;
/** SIGTERM lets in-flight requests finish (shutdownGraceMs, 10 s by default), then the server exits. */
const STOP_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 30_000;

/** The environment minus every TRESOR_* setting of the developer's shell, so a stack is hermetic. */
function hermeticEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
  return { ...env, NO_COLOR: '1', ...extra };
}

/** An HTTPS request function trusting only `ca`, against the origin `origin()` names at call time. */
export function httpsRequester(origin: () => string, ca: Buffer): Requester & { agent: Agent } {
  const agent = new Agent({ ca, keepAlive: true, maxSockets: 64 });
  // A kept-alive socket the server closed while idle (its keepAliveTimeout ran out while this
  // process was busy, e.g. scanning files synchronously) fails the request sent on it with
  // ECONNRESET before the server saw it: sent again once on a new socket, as Node's documentation
  // of request.reusedSocket advises. Any other failure, or one on a fresh socket, is the caller's.
  const send: Requester = (method, path, options = {}) =>
    sendOnce(method, path, options).catch((error: unknown) => {
      if ((error as { staleSocket?: boolean }).staleSocket === true) return sendOnce(method, path, options);
      throw error;
    });
  const sendOnce: Requester = (method, path, options = {}) =>
    new Promise((resolve, reject) => {
      const url = new URL(origin());
      const headers: Record<string, string> = { ...options.headers };
      let payload: Buffer | undefined;
      if (options.rawBody !== undefined) payload = Buffer.from(options.rawBody);
      else if (options.body !== undefined) payload = Buffer.from(JSON.stringify(options.body), 'utf8');
      if (payload !== undefined) {
        const type = options.contentType === undefined ? 'application/json' : options.contentType;
        if (type !== null) headers['content-type'] = type;
        headers['content-length'] = String(payload.length);
      }
      if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
      // A browser names its page's origin on every change it sends with cookies (the server refuses
      // a cookie-authenticated change from any other): unless a test names one — '' for none — this one's.
      const unsafe = !['GET', 'HEAD', 'OPTIONS'].includes(method.toUpperCase());
      if (headers.origin === '') delete headers.origin;
      else if (unsafe && headers.cookie !== undefined && headers.origin === undefined)
        headers.origin = url.origin;
      const req = httpsRequest(
        { agent, host: url.hostname, port: url.port, method, path, headers, timeout: REQUEST_TIMEOUT_MS },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const bytes = Buffer.concat(chunks);
            const text = bytes.toString('utf8');
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              text,
              bytes,
              json: <T>() => JSON.parse(text) as T,
            });
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(new Error(`${method} ${path}: no answer in ${REQUEST_TIMEOUT_MS} ms`)),
      );
      let answered = false;
      req.on('response', () => {
        answered = true;
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (!answered && req.reusedSocket && error.code === 'ECONNRESET')
          Object.assign(error, { staleSocket: true });
        reject(error);
      });
      req.end(payload);
    });
  return Object.assign(send, { agent });
}

export interface BootstrapAdmin {
  email: string;
  personId: string;
  /** One-time: enrols the person (password, second factor). A secret: never print it. */
  enrolmentToken: string;
}

/** Creates the first operator admin (a console person) in the control store, as `tresor dev` does. */
async function bootstrapAdmin(dataDir: string, database: DatabaseConfig): Promise<BootstrapAdmin> {
  const control = await openControlOf({ dataDir, database });
  try {
    const accounts = createAccountService({ control, now: () => new Date() });
    const made = await accounts.createPerson(
      { kind: 'system', job: 'bootstrap' },
      { side: 'operator', role: 'operator-admin', email: 'admin@tresor.test' },
    );
    return { email: made.person.email, personId: made.person.id, enrolmentToken: made.enrolmentToken };
  } finally {
    await control.close();
  }
}

/** Spawns `tresor server --json` and resolves with its URL once it listens. */
function spawnServer(
  bin: string,
  dataDir: string,
  env: NodeJS.ProcessEnv,
  output: (chunk: string) => void,
): Promise<{ proc: ChildProcess; url: string; exited: Promise<void> }> {
  const proc = spawn(process.execPath, [bin, 'server', '--json', '--data-dir', dataDir], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  let stdout = '';
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`tresor server did not start in ${START_TIMEOUT_MS} ms:\n${stderr}`));
    }, START_TIMEOUT_MS);
    proc.stdout?.setEncoding('utf8');
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (d: string) => {
      stderr += d;
      output(d);
    });
    proc.stdout?.on('data', (d: string) => {
      output(d);
      stdout += d;
      const line = stdout.split('\n').find((l) => l.startsWith('{"url":'));
      if (line) {
        clearTimeout(timer);
        resolve({ proc, url: (JSON.parse(line) as { url: string }).url, exited });
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`tresor server exited during start:\n${stderr}`));
    });
  });
}

/** Starts keyd and the API on a fresh temporary data folder. */
export async function startTresorStack(options: TresorStackOptions = {}): Promise<TresorStack> {
  const mode = options.server ?? 'process';
  const root = mkdtempSync(join(tmpdir(), 'tresor-stack-'));
  const dataDir = options.dataDir ?? join(root, 'data');
  const keydDir = options.dataDir ? join(root, 'keyd') : join(dataDir, 'keyd');
  mkdirSync(keydDir, { recursive: true, mode: 0o700 });
  const keydSocket = join(keydDir, 'keyd.sock');
  initDevFile(keydDir);
  const data = await testDatabase(options.backend).catch((error: unknown) => {
    rmSync(root, { recursive: true, force: true });
    throw error;
  });

  let keyd: KeydProcess | undefined;
  let output = '';
  let url = '';
  let serverProcess: { proc: ChildProcess; exited: Promise<void> } | undefined;
  let server: TresorServer | undefined;
  const env = hermeticEnv({
    TRESOR_KEYD_SOCKET: keydSocket,
    TRESOR_PORT: '0',
    TRESOR_HOST: '127.0.0.1',
    TRESOR_LOG_LEVEL: options.logLevel ?? 'info',
    // A small disk reserve: dozens of stacks each writing the default 64 MiB would slow the suite.
    TRESOR_AUDIT_DISK_RESERVE_BYTES: String(1024 * 1024),
    // The e2e tests load one stack from one address and a few keys far harder than a real client
    // (server-crash writes 1,500 records as fast as it can, then reads them back): raised here,
    // not by a lax default. The defaults are tested in test/http/bad-input.test.ts.
    TRESOR_RATE_LIMIT_PER_KEY: '1000000',
    TRESOR_RATE_LIMIT_PER_ADDRESS: '1000000',
    ...data.env,
    ...options.env,
  });

  async function startServer(more?: Record<string, string>): Promise<void> {
    if (serverProcess || server) throw new Error('the server is already running');
    if (more) Object.assign(env, more);
    if (mode === 'in-process') {
      const config = resolveServerConfig({ dataDir }, env);
      server = await startTresorServer(config, { jobIntervalMs: 0, ...options.serverOptions });
      url = server.url;
    } else {
      const started = await spawnServer(options.bin ?? TRESOR_BIN, dataDir, env, (chunk) => {
        output += chunk;
      });
      serverProcess = started;
      url = started.url;
    }
  }

  async function stopServer(): Promise<void> {
    if (server) {
      await server.close();
      server = undefined;
    }
    if (serverProcess) {
      const { proc, exited } = serverProcess;
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const stopped = await Promise.race([
        exited.then(() => true),
        new Promise<false>((res) => {
          timer = setTimeout(() => res(false), STOP_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
      serverProcess = undefined;
      if (!stopped) {
        proc.kill('SIGKILL');
        await exited;
        throw new Error(`tresor server did not stop within ${STOP_TIMEOUT_MS} ms of SIGTERM`);
      }
    }
  }

  try {
    keyd = await startKeyd(
      ['--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file'],
      { kind: 'unix', path: keydSocket },
      { TRESOR_KEYD_SOCKET: keydSocket },
      options.bin,
    );
    const tls = await ensureDevTls(dataDir);
    const admin = options.firstAdmin === false ? undefined : await bootstrapAdmin(dataDir, data.database);
    const ca = readFileSync(tls.caFile);
    const request = httpsRequester(() => url, ca);
    await startServer();
    const running = keyd;
    return {
      root,
      dataDir,
      keydDir,
      keydSocket,
      caFile: tls.caFile,
      database: data.database,
      get admin() {
        if (!admin) throw new Error('this stack was started with firstAdmin: false: it has no admin');
        return admin;
      },
      get url() {
        return url;
      },
      get serverProcess() {
        return serverProcess?.proc;
      },
      get server() {
        return server;
      },
      serverOutput: () => output,
      request,
      keydClient: () => running.client(),
      startServer,
      stopServer,
      async kill9Server() {
        if (!serverProcess) throw new Error('kill9Server needs a server process');
        serverProcess.proc.kill('SIGKILL');
        await serverProcess.exited;
        serverProcess = undefined;
        request.agent.destroy(); // its pooled sockets led to the dead process
      },
      async stop() {
        await stopServer();
        request.agent.destroy();
        await running.stop();
        await data.drop();
        rmSync(root, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopServer().catch(() => undefined);
    await keyd?.stop().catch(() => undefined);
    await data.drop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
}
