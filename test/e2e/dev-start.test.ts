/**
 * `npm start` as a newcomer meets it: `tresor dev` starts keyd as its own process and the HTTPS
 * API, prints where it listens and writes dev-credentials.json (0600) for scripts; the curl
 * commands it prints work as printed; its operator token is short-lived and of one scope
 * (tenants:create): it creates a tenant but reads nothing, and there is no all-powerful token;
 * Ctrl-C (SIGINT to the terminal's process group) stops every process; the next start reuses the
 * data folder.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startKeyd, TRESOR_BIN, tresor } from '../helpers/keyd-process.ts';

const run = promisify(execFile);
// Above tresor dev's own 60 s wait for keyd, so a slow keyd shows as tresor dev's error, not ours.
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 20_000;

interface DevCredentials {
  url: string;
  caFile: string;
  admin: { email: string; personId: string; enrolmentToken: string };
  operatorToken: { id: string; token: string; scope: string; expiresAt: string };
  demoTenant: { id: string; apiKey: string };
}

interface DevProcess {
  proc: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The environment of a newcomer's shell: no TRESOR_* settings but the data folder. */
function devEnv(dataDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
  return { ...env, NO_COLOR: '1', TRESOR_DATA_DIR: dataDir };
}

/**
 * Starts `tresor dev --port 0` in its own process group (as a terminal runs it) and resolves once
 * its banner has been printed in full.
 */
function startDev(cwd: string, dataDir: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<DevProcess> {
  const proc = spawn(process.execPath, [TRESOR_BIN, 'dev', '--port', '0'], {
    cwd,
    env: { ...devEnv(dataDir), ...extraEnv },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    proc.once('exit', (code, signal) => res({ code, signal })),
  );
  const dev: DevProcess = { proc, output: () => output, exited };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      // Never leak the stack of a start that hung: its whole process group goes, keyd included.
      try {
        process.kill(-(proc.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
      reject(new Error(`tresor dev did not start:\n${output}`));
    }, START_TIMEOUT_MS);
    const onData = (d: Buffer) => {
      output += d.toString('utf8');
      if (output.includes('Ctrl-C stops every process.')) {
        clearTimeout(timer);
        resolve(dev);
      }
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`tresor dev exited (${code}) during start:\n${output}`));
    });
  });
}

/** Ctrl-C in a terminal: SIGINT to the whole foreground process group. */
async function pressCtrlC(dev: DevProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  process.kill(-(dev.proc.pid as number), 'SIGINT');
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      dev.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('tresor dev did not stop on SIGINT')), STOP_TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Pids of live processes whose command line mentions `text` (Linux /proc). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const state = /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${entry}/stat`, 'utf8'))?.[1];
      if (state !== 'Z' && cmdline.some((arg) => arg.includes(text))) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function refusesConnections(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** One curl call as a script would make it: trusting only the dev CA. */
async function curl(
  c: DevCredentials,
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const args = [
    '-sS',
    '--cacert',
    c.caFile,
    '-X',
    method,
    `${c.url}${path}`,
    '-H',
    `Authorization: Bearer ${token}`,
  ];
  if (body !== undefined) args.push('-H', 'content-type: application/json', '-d', JSON.stringify(body));
  args.push('-w', '\n%{http_code}');
  const { stdout } = await run('curl', args);
  const at = stdout.lastIndexOf('\n');
  const text = stdout.slice(0, at);
  return {
    status: Number(stdout.slice(at + 1)),
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

/** The commands under "Try:" in the banner, continuation lines joined, as a newcomer copies them. */
function printedCommands(output: string): string[] {
  const lines = output.slice(output.indexOf('Try:') + 'Try:'.length).split('\n');
  const commands: string[] = [];
  let current = '';
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' && current === '' && commands.length > 0) break;
    if (line.startsWith('Ctrl-C')) break;
    if (line === '') continue;
    current += line.endsWith('\\') ? `${line.slice(0, -1)} ` : line;
    if (!line.endsWith('\\')) {
      commands.push(current);
      current = '';
    }
  }
  return commands;
}

describe('npm start (tresor dev) as a newcomer runs it', () => {
  let root: string;
  let dataDir: string;
  let dev: DevProcess | undefined;
  let credentials: DevCredentials;
  let bannerUrl: string;
  let record: { id: string; data: Record<string, unknown> };

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'tresor-dev-start-'));
    dataDir = join(root, 'data');
    dev = await startDev(root, dataDir);
  });

  after(async () => {
    if (dev && dev.proc.exitCode === null && dev.proc.signalCode === null) {
      process.kill(-(dev.proc.pid as number), 'SIGKILL');
      await dev.exited;
    }
    rmSync(root, { recursive: true, force: true });
  });

  it('prints the URL with the port it really listens on and writes dev-credentials.json, mode 0600, with the documented fields', async () => {
    const current = dev as DevProcess;
    bannerUrl = /Tresor is running at (https:\/\/\S+)/.exec(current.output())?.[1] ?? '';
    assert.match(bannerUrl, /^https:\/\/127\.0\.0\.1:[1-9][0-9]*$/, 'the banner names a real port');
    const path = join(dataDir, 'dev-credentials.json');
    assert.equal(statSync(path).mode & 0o777, 0o600, 'dev-credentials.json is 0600');
    credentials = JSON.parse(readFileSync(path, 'utf8')) as DevCredentials;
    assert.deepEqual(Object.keys(credentials).sort(), [
      'admin',
      'caFile',
      'demoTenant',
      'operatorToken',
      'url',
    ]);
    assert.deepEqual(Object.keys(credentials.admin).sort(), ['email', 'enrolmentToken', 'personId']);
    assert.match(credentials.admin.enrolmentToken, /^[A-Za-z0-9_-]{43}$/, 'a console enrolment token');
    assert.deepEqual(Object.keys(credentials.demoTenant).sort(), ['apiKey', 'id']);
    assert.equal(credentials.url, bannerUrl, 'the file and the banner name the same URL');
    assert.match(credentials.admin.email, /^[^@\s]+@[^@\s]+$/);
    assert.match(credentials.admin.personId, /^psn_/);
    assert.match(credentials.operatorToken.token, /^tresor_op_/);
    assert.equal(credentials.operatorToken.scope, 'tenants:create');
    const lifetime = Date.parse(credentials.operatorToken.expiresAt) - Date.now();
    assert.ok(lifetime > 11 * 3_600_000 && lifetime <= 12 * 3_600_000, 'the token expires within 12 hours');
    assert.ok(
      (dev as DevProcess).output().includes(credentials.operatorToken.expiresAt),
      'the banner says when it expires',
    );
    assert.match(credentials.demoTenant.id, /^ten_/);
    assert.match(credentials.demoTenant.apiKey, /^tresor_ak_/);
    assert.ok(new X509Certificate(readFileSync(credentials.caFile)).ca, 'caFile is a CA certificate');
    assert.equal(await refusesConnections(credentials.url), false, 'the URL accepts connections');
  });

  it('prints the sign-in page on localhost, and the console admin’s enrolment link with the token in the fragment', () => {
    const output = (dev as DevProcess).output();
    const port = new URL(bannerUrl).port;
    assert.ok(output.includes(`console sign-in:   https://localhost:${port}/signin\n`), 'the sign-in URL');
    const link = `https://localhost:${port}/signin#enrol=${credentials.admin.enrolmentToken}`;
    assert.ok(
      output.includes(link),
      'the enrolment link carries the token after #, never in the path or query',
    );
  });

  it('serves the curl commands it prints, as printed, and then reading and searching the record with curl', async () => {
    const commands = printedCommands((dev as DevProcess).output());
    assert.equal(commands.length, 3, `three commands are printed: ${commands.join(' | ')}`);
    const [declare, create, newTenant] = commands as [string, string, string];
    assert.match(newTenant, /^curl .* -X POST .*\/v1\/tenants /);
    const tenant = await run('sh', ['-c', `${newTenant} -sS -w '\\n%{http_code}'`], { cwd: root });
    assert.match(tenant.stdout, /\n201$/, `the printed tenant POST answers 201: ${tenant.stdout}`);
    assert.match(declare, /^curl .* -X PUT .*\/v1\/collections\/people/);
    assert.match(create, /^curl .* -X POST .*\/v1\/collections\/people\/records/);
    const declared = await run('sh', ['-c', `${declare} -sS -w '\\n%{http_code}'`], { cwd: root });
    assert.match(declared.stdout, /\n201$/, `the printed PUT answers 201: ${declared.stdout}`);
    const created = await run('sh', ['-c', `${create} -sS -w '\\n%{http_code}'`], { cwd: root });
    assert.match(created.stdout, /\n201$/, `the printed POST answers 201: ${created.stdout}`);
    record = JSON.parse(created.stdout.slice(0, created.stdout.lastIndexOf('\n'))) as typeof record;
    assert.match(record.id, /^rec_[0-9a-f]{32}$/);

    const key = credentials.demoTenant.apiKey;
    const read = await curl(credentials, 'GET', `/v1/collections/people/records/${record.id}`, key);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.data, record.data, 'the record reads back');
    const email = String(record.data.email);
    const search = await curl(credentials, 'POST', '/v1/collections/people/records/search', key, {
      where: { email },
    });
    assert.equal(search.status, 200);
    assert.deepEqual(
      (search.body.records as { id: string }[]).map((r) => r.id),
      [record.id],
      'the search finds the record',
    );
  });

  it('lets the dev operator token create a tenant but not read tenants, people, the audit log or records', async () => {
    const token = credentials.operatorToken.token;
    const tenant = await curl(credentials, 'POST', '/v1/tenants', token, { name: 'Newcomer Ltd' });
    assert.equal(tenant.status, 201, JSON.stringify(tenant.body));
    assert.match(String(tenant.body.apiKey), /^tresor_ak_/);
    for (const [method, path, body] of [
      ['GET', `/v1/collections/people/records/${record.id}`, undefined],
      ['GET', '/v1/collections/people/records', undefined],
      ['GET', '/v1/collections', undefined],
      ['POST', '/v1/collections/people/records', { email: 'admin@example.com' }],
      ['GET', '/v1/tenants', undefined],
      ['GET', '/v1/people', undefined],
      ['GET', '/v1/audit/entries', undefined],
      ['POST', '/v1/operator-tokens', { scope: 'tenants:read', name: 'more' }],
    ] as const) {
      const res = await curl(credentials, method, path, token, body);
      assert.equal(res.status, 403, `${method} ${path} with the dev operator token`);
      assert.equal(res.body.code, 'TRESOR_ERR_FORBIDDEN');
      assert.equal(JSON.stringify(res.body).includes(String(record.data.email)), false, 'no record data');
    }
  });

  it('stops every process, keyd included, on Ctrl-C', async () => {
    const current = dev as DevProcess;
    const keydDir = join(dataDir, 'keyd');
    const keyd = processesMentioning(keydDir);
    assert.equal(keyd.length, 1, `one keyd process runs for the data folder (${keyd.join(', ')})`);
    const keydPid = keyd[0] as number;
    assert.notEqual(keydPid, current.proc.pid, 'keyd is its own process');
    assert.equal(existsSync(join(keydDir, 'keyd.sock')), true, 'keyd listens on its socket');

    const { code, signal } = await pressCtrlC(current);
    assert.equal(signal, null, 'tresor dev exits by itself, not by the signal');
    assert.equal(code, 0, `tresor dev exits 0:\n${current.output().slice(-2000)}`);
    assert.equal(alive(keydPid), false, 'the keyd process is gone');
    assert.deepEqual(processesMentioning(dataDir), [], 'no process of the stack is left');
    assert.equal(existsSync(join(keydDir, 'keyd.sock')), false, 'keyd’s socket is gone');
    assert.equal(await refusesConnections(credentials.url), true, 'the HTTPS port is closed');
  });

  it('reuses the data folder on the next start: same demo tenant and key, the old record still readable', async () => {
    dev = await startDev(root, dataDir);
    const again = JSON.parse(readFileSync(join(dataDir, 'dev-credentials.json'), 'utf8')) as DevCredentials;
    assert.equal(statSync(join(dataDir, 'dev-credentials.json')).mode & 0o777, 0o600, 'still 0600');
    assert.deepEqual(again.demoTenant, credentials.demoTenant, 'the same demo tenant and API key');
    assert.deepEqual(again.admin, credentials.admin, 'the same admin');
    assert.equal(again.caFile, credentials.caFile, 'the same CA');
    const read = await curl(
      again,
      'GET',
      `/v1/collections/people/records/${record.id}`,
      again.demoTenant.apiKey,
    );
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.data, record.data, 'the record written before the restart reads back');
    const { code } = await pressCtrlC(dev);
    assert.equal(code, 0, 'the second start stops cleanly too');
  });
});

describe('npm start (tresor dev) when keyd never answers', () => {
  let root: string;

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'tresor-dev-nokeyd-'));
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  it('gives up after its deadline, says why, exits non-zero and leaves no process behind', async () => {
    const dataDir = join(root, 'data');
    // 1 ms: keyd cannot have started, so the wait always runs out (as on a machine too busy for it).
    const failed = await startDev(root, dataDir, { TRESOR_DEV_KEYD_START_MS: '1' }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    assert.ok(failed, 'tresor dev must not start without keyd');
    assert.match(
      failed.message,
      /exited \(3\) during start/,
      'it exits with 3 (keyd unavailable) instead of hanging',
    );
    assert.match(failed.message, /keyd did not answer within 1 ms/, 'and says what it waited for');
    assert.deepEqual(processesMentioning(dataDir), [], 'keyd is stopped, not left running');
  });
});

/** `tresor server` against a keyd someone else runs, started here and frozen with SIGSTOP. */
describe('tresor server when keyd does not answer', () => {
  let root: string;

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'tresor-server-keyd-'));
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  /** A running keyd, stopped (SIGSTOP): its socket accepts connections, nothing answers. */
  async function frozenKeyd(name: string) {
    const keydDir = join(root, name, 'keyd');
    assert.equal(
      tresor(['keyd', 'init', '--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file']).status,
      0,
    );
    const socket = join(keydDir, 'keyd.sock');
    const keyd = await startKeyd(['--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file'], {
      kind: 'unix',
      path: socket,
    });
    keyd.proc.kill('SIGSTOP');
    return { keyd, socket, dataDir: join(root, name, 'data') };
  }

  function startServer(dataDir: string, socket: string, extraEnv: NodeJS.ProcessEnv = {}) {
    const proc = spawn(process.execPath, [TRESOR_BIN, 'server', '--port', '0', '--data-dir', dataDir], {
      env: { ...devEnv(dataDir), TRESOR_KEYD_SOCKET: socket, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const said = new EventEmitter();
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      said.emit('line');
    });
    proc.stdout.resume();
    const exited = new Promise<number | null>((res) =>
      proc.once('exit', (code, signal) => {
        if (signal !== null) stderr += `(killed by ${signal})`;
        res(code);
      }),
    );
    /** Resolves once stderr matches `pattern`; rejects if the server exits first. */
    const saying = async (pattern: RegExp): Promise<string> => {
      const gone = exited.then((code) => {
        throw new Error(`tresor server exited (${code}) before saying ${pattern}:\n${stderr}`);
      });
      while (!pattern.test(stderr)) await Promise.race([once(said, 'line'), gone]);
      void gone.catch(() => undefined);
      return stderr;
    };
    return { proc, exited, saying, stderr: () => stderr };
  }

  it('says which keyd it waits for and how long, then serves once keyd answers', async (t) => {
    const { keyd, socket, dataDir } = await frozenKeyd('slow');
    t.after(async () => {
      keyd.proc.kill('SIGCONT');
      await keyd.stop();
    });
    const server = startServer(dataDir, socket);
    t.after(async () => {
      if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
      await server.exited;
    });
    const waiting = await server.saying(/waiting for keyd/);
    assert.ok(
      waiting.includes(`waiting for keyd on ${socket} to answer (up to 60000 ms, TRESOR_KEYD_WAIT_MS)`),
    );
    assert.doesNotMatch(waiting, /listening on/, 'it does not serve before keyd answers');

    keyd.proc.kill('SIGCONT');
    const ready = await server.saying(/listening on https:\/\/\S+/);
    const url = /listening on (https:\/\/\S+)/.exec(ready)?.[1] ?? '';
    assert.equal(await refusesConnections(url), false, 'the server accepts connections');
    server.proc.kill('SIGTERM');
    assert.equal(await server.exited, 0, `and stops cleanly:\n${server.stderr()}`);
  });

  it('with a keyd that never answers, exits 3 at its deadline with one line and leaves nothing behind', async (t) => {
    const { keyd, socket, dataDir } = await frozenKeyd('frozen');
    t.after(async () => {
      keyd.proc.kill('SIGCONT');
      await keyd.stop();
    });
    const server = startServer(dataDir, socket, { TRESOR_KEYD_WAIT_MS: '3000' });
    const code = await server.exited;
    assert.equal(code, 3, `exit code 3, keyd unavailable:\n${server.stderr()}`);
    const lines = server.stderr().trim().split('\n');
    assert.equal(lines.length, 2, `what it waits for, then why it gave up:\n${server.stderr()}`);
    assert.match(lines[0] ?? '', /waiting for keyd on .* \(up to 3000 ms, TRESOR_KEYD_WAIT_MS\)/);
    assert.match(
      lines[1] ?? '',
      /^tresor: TRESOR_ERR_KEYD_UNAVAILABLE: keyd on \S+keyd\.sock: keyd did not answer within 3000 ms \(.+\)$/,
    );
    assert.deepEqual(processesMentioning(dataDir), [], 'no server process is left');
    assert.equal(existsSync(join(dataDir, 'control.sqlite')), false, 'it opened no store');
  });

  it('with no keyd at all (no socket), gives up the same way', async () => {
    const dataDir = join(root, 'none', 'data');
    const server = startServer(dataDir, join(root, 'none', 'keyd.sock'), { TRESOR_KEYD_WAIT_MS: '1000' });
    assert.equal(await server.exited, 3, server.stderr());
    assert.match(server.stderr(), /keyd did not answer within 1000 ms \(keyd cannot be reached\)\n$/);
    assert.deepEqual(processesMentioning(dataDir), [], 'no server process is left');
  });
});
