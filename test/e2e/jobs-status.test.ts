// backends: sqlite postgres
/**
 * Visible jobs: a real server (in this process, so a test can run a pass of its jobs and take keyd
 * away from it) answers GET /v1/system/jobs to the operator token only, and `tresor status` — the
 * real command, spawned — prints the same over HTTPS, exit 0 when every job's last run succeeded,
 * 1 when one failed (its error code shown), 3 when nothing answers. The token is never printed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JobsBody } from '../../src/http/routes/jobs.ts';
import { operatorAdmin, operatorToken } from '../helpers/console.ts';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { withDeadline } from '../helpers/wait.ts';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tresor …` without blocking this process's event loop: the server under test lives here. */
async function tresor(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...env };
  if (env.TRESOR_TOKEN === undefined) delete childEnv.TRESOR_TOKEN;
  const proc = spawn(process.execPath, [TRESOR_BIN, ...args], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const [code] = (await withDeadline(`tresor ${args[0]} to exit`, once(proc, 'close'), 60_000, () =>
    proc.kill('SIGKILL'),
  )) as [number | null];
  return { status: code, stdout, stderr };
}

/** A port on 127.0.0.1 that nothing listens on (the kernel picked it, then it was released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

describe('the background jobs, for operators', () => {
  let s: TresorStack;
  let tenantKey: string;
  let tenantId: string;
  before(async () => {
    s = await startTresorStack({ server: 'in-process' });
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Jobs' },
    });
    assert.equal(created.status, 201, created.text);
    ({ apiKey: tenantKey, id: tenantId } = created.json<{ apiKey: string; id: string }>());
    await s.server?.runJobs();
  });
  after(async () => {
    await s?.stop();
  });

  it('GET /v1/system/jobs answers the operator token with each job’s state; a tenant key gets 403, no credential 401', async () => {
    const res = await s.request('GET', '/v1/system/jobs', { token: await operatorToken(s, 'jobs:read') });
    assert.equal(res.status, 200, res.text);
    const { jobs } = res.json<JobsBody>();
    const names = jobs.map((j) => j.name);
    assert.deepEqual(names, [...names].sort(), 'sorted by name');
    for (const name of [
      'tenants.resume',
      'tenants.auto-close',
      'tenants.close-grace',
      'grants.expire',
      'vault.retention',
    ]) {
      const job = jobs.find((j) => j.name === name);
      assert.ok(job, name);
      assert.ok(job.runs >= 1, name);
      assert.equal(job.failures, 0, name);
      assert.equal(job.lastOutcome, 'success', name);
      assert.ok(job.lastSuccess, name);
      assert.equal(job.lastError, undefined, name);
    }

    const byKey = await s.request('GET', '/v1/system/jobs', { token: tenantKey });
    assert.equal(byKey.status, 403, byKey.text);
    assert.equal(byKey.json().code, 'TRESOR_ERR_FORBIDDEN');
    const anonymous = await s.request('GET', '/v1/system/jobs');
    assert.equal(anonymous.status, 401, anonymous.text);
  });

  it('tresor status prints every job and exits 0; --json gives the route’s answer; the token is never shown', async () => {
    const tokenFile = join(s.root, 'operator.token');
    writeFileSync(tokenFile, `${await operatorToken(s, 'jobs:read')}\n`, { mode: 0o600 });
    const base = ['status', '--url', s.url, '--ca-file', s.caFile];

    const run = await tresor(base, { TRESOR_TOKEN: await operatorToken(s, 'jobs:read') });
    assert.equal(run.status, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^JOB\s+RUNS\s+FAILURES\s+LAST RUN\s+LAST SUCCESS\s+LAST ERROR$/);
    for (const name of ['tenants.resume', 'tenants.close-grace', 'grants.expire', 'vault.retention']) {
      const line = lines.find((l) => l.startsWith(`${name} `));
      assert.ok(line, `${name} in:\n${run.stdout}`);
      assert.match(line, /\bok\s+\d{4}-\d{2}-\d{2}T\S+Z\s+-$/, line);
    }

    const json = await tresor([...base, '--json', '--token-file', tokenFile]);
    assert.equal(json.status, 0, json.stderr);
    const body = JSON.parse(json.stdout) as JobsBody;
    assert.ok(body.jobs.some((j) => j.name === 'vault.retention' && j.lastOutcome === 'success'));

    for (const r of [run, json]) {
      assert.equal(r.stdout.includes(await operatorToken(s, 'jobs:read')), false);
      assert.equal(r.stderr.includes(await operatorToken(s, 'jobs:read')), false);
    }
  });

  it('tresor status: exit 3 when nothing answers, 1 when the server refuses the token, 2 with no token', async () => {
    const port = await closedPort();
    const closed = await tresor(['status', '--url', `https://127.0.0.1:${port}`, '--ca-file', s.caFile], {
      TRESOR_TOKEN: await operatorToken(s, 'jobs:read'),
    });
    assert.equal(closed.status, 3, closed.stderr);
    assert.match(closed.stderr, /cannot reach https:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
    assert.equal(closed.stdout, '');

    const refused = await tresor(['status', '--url', s.url, '--ca-file', s.caFile], {
      TRESOR_TOKEN: tenantKey,
    });
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /answered 403 TRESOR_ERR_FORBIDDEN/);
    assert.equal(refused.stderr.includes(tenantKey), false);

    // An operator token of another scope does not reach the jobs: status needs jobs:read.
    const otherScope = await operatorToken(s, 'tenants:read');
    const wrongScope = await tresor(['status', '--url', s.url, '--ca-file', s.caFile], {
      TRESOR_TOKEN: otherScope,
    });
    assert.equal(wrongScope.status, 1, wrongScope.stderr);
    assert.match(wrongScope.stderr, /answered 403 TRESOR_ERR_FORBIDDEN/);
    assert.equal(wrongScope.stderr.includes(otherScope), false);

    const noToken = await tresor(['status', '--url', s.url, '--ca-file', s.caFile]);
    assert.equal(noToken.status, 2, noToken.stderr);
    assert.match(noToken.stderr, /no token/);
  });

  it('a job whose last run failed (keyd gone during a pass) shows its error code in the route and in tresor status, exit 1', async () => {
    const server = s.server;
    assert.ok(server);
    // A tenant in its close grace: the grace job asks keyd about its key on every pass.
    // Closing needs the operator admin's session with a fresh second factor.
    const closing = await (await operatorAdmin(s)).request('POST', `/v1/tenants/${tenantId}/close`, {
      reason: 'jobs test',
    });
    assert.equal(closing.status, 202, closing.text);
    // keyd is out of the server's reach from now on: its client fails every call.
    await server.keyd.close();
    await server.runJobs();

    const res = await s.request('GET', '/v1/system/jobs', { token: await operatorToken(s, 'jobs:read') });
    assert.equal(res.status, 200, res.text);
    const grace = res.json<JobsBody>().jobs.find((j) => j.name === 'tenants.close-grace');
    assert.ok(grace);
    assert.equal(grace.lastOutcome, 'failure');
    assert.equal(grace.lastError?.code, 'TRESOR_ERR_KEYD_UNAVAILABLE');
    assert.ok(grace.failures >= 1);
    assert.ok(grace.lastSuccess, 'the earlier success stays visible');

    const run = await tresor(['status', '--url', s.url, '--ca-file', s.caFile], {
      TRESOR_TOKEN: await operatorToken(s, 'jobs:read'),
    });
    assert.equal(run.status, 1, run.stderr);
    const line = run.stdout.split('\n').find((l) => l.startsWith('tenants.close-grace '));
    assert.ok(line, run.stdout);
    assert.match(line, /\bFAILED\s+\S+Z\s+\S+Z TRESOR_ERR_KEYD_UNAVAILABLE$/);
    // Readiness stays about serving: it reports keyd, not the jobs.
    const ready = await s.request('GET', '/readyz');
    assert.equal(ready.json<{ checks: Record<string, string> }>().checks.jobs, undefined);
  });
});
