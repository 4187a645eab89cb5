/**
 * docs/operations.md, run exactly as written: every fenced block whose info string is `sh`, in
 * order, as one `bash -euo pipefail` script, in an empty folder, with `tresor` on the PATH being the
 * compiled build deployed without devDependencies (test/helpers/deployment.ts) — so no TypeScript
 * loader can run. It takes a deployment from nothing to a record read back: keyd init and serve with
 * the passphrase provider, the server with a config file and a certificate made by openssl, `tresor
 * init`, enrolment with real TOTP codes from oathtool, login, a step-up, a scoped token creating a
 * tenant, a record written and read with the tenant's API key, a close cancelled within its grace,
 * a backup to two folders verified by its trial restore, and `tresor doctor` passing every check.
 *
 * The only thing the test chooses is the port (`PORT`, which the page reads with a default of
 * 8443), so it never collides with another server. Every process the page starts in the background
 * is in the script's process group, which the test kills at the end whatever happened.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compiledDeployment, plainEnv, REPO } from '../helpers/deployment.ts';

const DOC = join(REPO, 'docs', 'operations.md');
/**
 * A TOTP step waited out at most (up to 30 s: the page's three codes take the current step, the next
 * one, then the one after once it is within the server's drift window), keyd's scrypt, a server
 * start, a backup with its trial restore: more than the default limit of a hook, so the hook has
 * its own.
 */
const SCRIPT_TIMEOUT_MS = 200_000;

/** The page's fenced blocks with the info string `lang` and nothing after it, in order. */
function blocks(markdown: string, info: string): string[] {
  return [...markdown.matchAll(/^```([^\n]*)\n([\s\S]*?)^```$/gm)]
    .filter((m) => m[1] === info)
    .map((m) => m[2] as string);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

describe('docs/operations.md, run as written with the compiled build', () => {
  let root: string;
  let work: string;
  let pgid: number | undefined;
  let run: Run;
  const markdown = readFileSync(DOC, 'utf8');
  const read = (file: string) => readFileSync(join(work, file), 'utf8');

  before(
    async () => {
      const deployment = await compiledDeployment();
      root = mkdtempSync(join(tmpdir(), 'tresor-operations-'));
      work = join(root, 'walkthrough');
      mkdirSync(work);
      mkdirSync(join(root, 'bin'));
      const tresor = join(root, 'bin', 'tresor');
      writeFileSync(tresor, `#!/bin/sh\nexec "${process.execPath}" "${deployment.bin}" "$@"\n`);
      chmodSync(tresor, 0o755);
      const env = plainEnv({
        PATH: `${join(root, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        PORT: String(await freePort()),
        HOME: root,
        XDG_CONFIG_HOME: join(root, '.config'),
      });
      const script = blocks(markdown, 'sh').join('\n');
      run = await new Promise<Run>((resolve) => {
        const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
          cwd: work,
          env,
          detached: true, // its own process group: the background keyd and server are in it
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        pgid = child.pid;
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => {
          stdout += c.toString('utf8');
        });
        child.stderr.on('data', (c: Buffer) => {
          stderr += c.toString('utf8');
        });
        const timer = setTimeout(() => child.kill('SIGKILL'), SCRIPT_TIMEOUT_MS);
        child.once('close', (status, signal) => {
          clearTimeout(timer);
          resolve({ status, signal, stdout, stderr });
        });
      });
    },
    { timeout: SCRIPT_TIMEOUT_MS + 60_000 },
  );

  after(() => {
    if (pgid !== undefined) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // the group is gone already: the page's last block stopped keyd and the server
      }
    }
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('runs from the first block to the last without an error', () => {
    const tail = (text: string) => text.split('\n').slice(-40).join('\n');
    assert.equal(
      run.status,
      0,
      `exit ${run.status ?? run.signal}\n--- stderr\n${tail(run.stderr)}\n--- server.log\n${tail(
        readFileSync(join(work, 'server.log'), { encoding: 'utf8', flag: 'a+' }),
      )}`,
    );
  });

  it('reads back the record it wrote, with the tenant key', () => {
    const written = JSON.parse(read('record.json')) as { id: string };
    assert.match(written.id, /^rec_/);
    assert.match(run.stdout, new RegExp(`"id":"${written.id}"`));
    assert.match(run.stdout, /"email":"ada@example\.com"/);
  });

  it('made the first operator admin a person who enrolled, and a tenant with a scoped token', () => {
    assert.match(read('enrol-link'), /^https:\/\/localhost:\d+\/signin#enrol=\S+\n?$/);
    assert.equal(read('admin-recovery-codes').trim().split('\n').length, 10);
    assert.match(read('provisioning-token'), /^tresor_op_[0-9a-f]{24}_\S+\n?$/);
    const tenant = JSON.parse(read('acme.json')) as { id: string };
    assert.match(tenant.id, /^ten_/);
    assert.match(read('acme-api-key'), /^tresor_ak_/);
    assert.match(run.stdout, /tenants:create/, 'tresor token list shows the scope');
  });

  it('took a verified backup to both folders, and tresor doctor passed every check', () => {
    for (const folder of ['backup-a', 'backup-b'])
      assert.ok(readdirSync(join(work, folder)).length > 0, folder);
    const lines = run.stdout.split('\n');
    const header = lines.findIndex((l) => /^CHECK\s+RESULT\s+DETAIL/.test(l));
    assert.ok(header >= 0, 'the doctor printed its table');
    const table = lines.slice(header + 1, header + 14);
    assert.equal(table.length, 13);
    for (const line of table) assert.match(line, /\sPASS\s/, line);
  });

  it('keeps every secret out of the output and the logs', () => {
    const logs = [run.stdout, run.stderr, read('server.log'), read('keyd.log')].join('\n');
    const secrets = [
      'keyd-passphrase',
      'admin-password',
      'admin-totp',
      'provisioning-token',
      'acme-api-key',
      'acme-api-key-2',
    ].map((file) => read(file).trim());
    secrets.push(read('enrol-link').trim().split('#enrol=')[1] as string);
    for (const code of read('admin-recovery-codes').trim().split('\n')) secrets.push(code.trim());
    for (const secret of secrets) {
      assert.ok(secret.length >= 8, 'a secret to look for');
      assert.equal(logs.includes(secret), false, 'a secret appears in the output or a log');
    }
  });

  it('installs as the deployment the test runs: build with devDependencies, then --omit=dev', () => {
    const [install] = blocks(markdown, 'sh install');
    assert.ok(install);
    const build = install.indexOf('npm run build');
    const omit = install.indexOf('npm ci --omit=dev');
    assert.ok(install.indexOf('npm ci ') < build && build < omit && build > 0, install);
  });
});
