/**
 * `tresor probe` against a real server: each probe passes TLS, authentication, a write, a read, the
 * read's audit entry (found in the tenant's log) and the delete; the API key appears nowhere in
 * the output. Then a real outage: the server is stopped for a while and started again while the
 * prober runs, and `tresor probe --report` counts as down the time the server was away — no less
 * than the time it was certainly stopped, no more than the time from asking it to stop until it
 * was serving again, each widened by one interval and the longest probe (when the first failing
 * and the first passing probe can fall). The server restarts on a new port, so the prober talks to
 * it through a loopback TCP relay (TLS passes through untouched).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ProbeResult } from '../../src/probe/probe.ts';
import { operatorToken } from '../helpers/console.ts';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';
import { tresor } from './cli-run.ts';

const INTERVAL_S = 0.4;

describe('tresor probe', () => {
  let s: TresorStack;
  let relay: Server;
  let relayUrl: string;
  let dir: string;
  let apiKey: string;
  let env: NodeJS.ProcessEnv;

  const readLog = (path: string): ProbeResult[] => {
    try {
      return readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as ProbeResult);
    } catch {
      return [];
    }
  };

  before(async () => {
    s = await startTresorStack();
    dir = mkdtempSync(join(tmpdir(), 'tresor_probe-'));
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Probe' },
    });
    assert.equal(created.status, 201, created.text);
    apiKey = created.json<{ apiKey: string }>().apiKey;
    writeFileSync(join(dir, 'key'), apiKey, { mode: 0o600 });
    // The relay: a fixed loopback port in front of whichever port the server has now.
    relay = createServer((client) => {
      const upstream = connect(Number(new URL(s.url).port), '127.0.0.1');
      client.pipe(upstream).pipe(client);
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close);
      upstream.on('error', close);
      client.on('close', close);
      upstream.on('close', close);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const port = (relay.address() as { port: number }).port;
    relayUrl = `https://localhost:${port}`;
    if (!new URL(s.url).hostname.match(/^(localhost|127\.0\.0\.1)$/))
      throw new Error('stack not on loopback');
    relayUrl = `https://${new URL(s.url).hostname}:${port}`;
    env = { TRESOR_CA_FILE: s.caFile };
  });

  after(async () => {
    relay?.close();
    await s?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('probes end to end: every step passes, the read is in the tenant’s audit log, no key in the output', async () => {
    const log = join(dir, 'probes.jsonl');
    const run = await tresor(
      [
        'probe',
        '--url',
        relayUrl,
        '--token-file',
        join(dir, 'key'),
        '--count',
        '2',
        '--interval',
        '0.1',
        '--log',
        log,
      ],
      { env },
    );
    assert.equal(run.status, 0, run.stderr + run.stdout);
    assert.equal(run.stdout.trim().split('\n').length, 2);
    assert.match(
      run.stdout,
      / ok tls=[0-9.]+ms auth=[0-9.]+ms write=[0-9.]+ms read=[0-9.]+ms audit=[0-9.]+ms delete=[0-9.]+ms/,
    );
    const results = readLog(log);
    assert.equal(results.length, 2);
    for (const r of results) {
      assert.equal(r.ok, true);
      assert.deepEqual(Object.keys(r.ms).sort(), ['audit', 'auth', 'delete', 'read', 'tls', 'write']);
    }
    const entries = (await s.request('GET', '/v1/audit/entries?limit=1000', { token: apiKey })).json<{
      entries: { entry: { action: string; target?: { collection?: string } } }[];
    }>().entries;
    const probeReads = entries.filter(
      (e) => e.entry.action === 'record.read' && e.entry.target?.collection === 'tresor_probe',
    );
    assert.equal(probeReads.length, 2, 'each probe’s read is in the tenant’s log');
    assert.ok(!(run.stdout + run.stderr).includes(apiKey), 'the API key is not printed');
    assert.ok(!readFileSync(log, 'utf8').includes(apiKey), 'the API key is not in the log');

    const json = await tresor(['probe', '--url', relayUrl, '--json'], {
      env: { ...env, TRESOR_TOKEN: apiKey },
    });
    assert.equal(json.status, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as ProbeResult).ok, true);
  });

  it('a wrong key fails at authentication (exit 1); no key at all is a usage error (exit 2)', async () => {
    const wrong = await tresor(['probe', '--url', relayUrl], {
      env: { ...env, TRESOR_TOKEN: 'tk_live_wrong' },
    });
    assert.equal(wrong.status, 1, wrong.stderr + wrong.stdout);
    assert.match(wrong.stdout, /FAILED at auth: (TRESOR_ERR_[A-Z_]+|HTTP 401)/);
    const none = await tresor(['probe', '--url', relayUrl], { env });
    assert.equal(none.status, 2, none.stderr);
  });

  it('counts a real outage: the time the server was away is the down time of the report', async () => {
    const log = join(dir, 'outage.jsonl');
    const prober = spawn(
      process.execPath,
      [
        TRESOR_BIN,
        'probe',
        '--url',
        relayUrl,
        '--token-file',
        join(dir, 'key'),
        '--count',
        '0',
        '--interval',
        String(INTERVAL_S),
        '--log',
        log,
      ],
      { env: { ...process.env, ...env, NO_COLOR: '1' }, stdio: 'ignore', timeout: 170_000 },
    );
    const exited = new Promise<void>((resolve) => prober.once('exit', () => resolve()));
    try {
      await waitFor(
        'three passing probes',
        async () => (readLog(log).filter((r) => r.ok).length >= 3 ? true : undefined),
        {
          timeoutMs: 60_000,
        },
      );
      const askedToStop = Date.now();
      await s.stopServer();
      const stopped = Date.now();
      await waitFor(
        'six failing probes while the server is away',
        async () =>
          readLog(log).filter((r) => !r.ok && Date.parse(r.at) >= stopped).length >= 6 ? true : undefined,
        { timeoutMs: 60_000 },
      );
      const starting = Date.now();
      await s.startServer();
      const serving = Date.now();
      await waitFor(
        'three passing probes again',
        async () =>
          readLog(log).filter((r) => r.ok && Date.parse(r.at) >= serving).length >= 3 ? true : undefined,
        { timeoutMs: 60_000 },
      );
      prober.kill('SIGTERM');
      await exited;

      const results = readLog(log);
      const longest = Math.max(...results.map((r) => Object.values(r.ms).reduce((a, b) => a + (b ?? 0), 0)));
      const slack = INTERVAL_S * 1000 + longest + 50;
      const report = await tresor([
        'probe',
        '--report',
        '--log',
        log,
        '--interval',
        String(INTERVAL_S),
        '--json',
      ]);
      assert.ok(report.stdout.startsWith('{'), `no report: ${report.stderr}`);
      const body = JSON.parse(report.stdout) as {
        last30Days: {
          probes: number;
          failed: number;
          downMs: number;
          observedMs: number;
          availability: number;
        };
      };
      assert.equal(body.last30Days.probes, results.length);
      assert.equal(body.last30Days.failed, results.filter((r) => !r.ok).length);
      const certainlyDown = starting - stopped;
      const atMostDown = serving - askedToStop;
      assert.ok(
        body.last30Days.downMs >= certainlyDown - slack,
        `down ${body.last30Days.downMs} ms, the server was certainly stopped for ${certainlyDown} ms`,
      );
      assert.ok(
        body.last30Days.downMs <= atMostDown + slack,
        `down ${body.last30Days.downMs} ms, the server was away at most ${atMostDown} ms`,
      );
      assert.ok(body.last30Days.availability < 1);
      assert.equal(report.status, 1, 'the objective is not met after an outage in a short window');
    } finally {
      if (prober.exitCode === null) prober.kill('SIGKILL');
    }
  });
});
