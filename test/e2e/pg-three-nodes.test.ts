// backends: postgres
// drill: three server processes, nodes killed and restarted
/**
 * Three `tresor server` processes on one PostgreSQL data database, and two `tresor keyd serve`
 * processes on one PostgreSQL keyd database of their own; each node knows both keyd sockets
 * (TRESOR_KEYD_SOCKETS), as docs/operations.md and docs/keyd.md describe such a deployment. In order:
 *   - a bounded load of a few concurrent writers, spread round-robin over the three nodes;
 *   - a record written on one node is read at once on the other two;
 *   - a live audit stream on one node carries a record written on another (the delay is printed);
 *   - kill -9 of the sequencer's lease holder while the writers go on against the two others: no
 *     request to a live node fails, another node takes the lease, and afterwards the log has no gap
 *     and holds each acknowledged write's event exactly once;
 *   - kill -9 of the preferred keyd while the writers (and a tenant creator, which asks keyd for
 *     each tenant's key) go on: no request fails;
 *   - `tresor audit verify` against the database passes, and an inclusion proof from one node
 *     verifies against a checkpoint signed and served by another.
 * Every wait is bounded; nothing asserts a duration except generous bounds on takeovers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import canonicalize from 'canonicalize';
import { initDevFile } from '../../src/keyd/root/dev-file.ts';
import {
  independentLeafHash,
  independentOpenCheckpoint,
  independentVerifyInclusion,
} from '../audit/independent-verifier.ts';
import { type AuditStream, openAuditStream } from '../helpers/audit-stream.ts';
import { bootstrapClusterAdmin, type ClusterNode, startNode, stopNode } from '../helpers/cluster-node.ts';
import { operatorToken } from '../helpers/console.ts';
import { type KeydProcess, startKeyd, TRESOR_BIN } from '../helpers/keyd-process.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';
import type { TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor, withDeadline } from '../helpers/wait.ts';

/** No single request may take longer than this (a hung request fails the test, never hangs it). */
const REQUEST_DEADLINE_MS = 60_000;
const WRITERS = 3;

interface LogEntry {
  index: number;
  entry: { action?: string; target?: { recordIds?: string[]; [k: string]: unknown } };
  leafHash: string;
}

interface Failure {
  node: string;
  what: string;
}

describe('three server nodes and two keyd processes on one PostgreSQL', () => {
  let data: FreshPgDatabase | undefined;
  let keydDb: FreshPgDatabase | undefined;
  let root: string | undefined;
  const keyds: (KeydProcess | undefined)[] = [];
  const nodes: ClusterNode[] = [];
  const streams: AuditStream<LogEntry>[] = [];
  /** Nodes killed on purpose: requests to them may fail. */
  const killed = new Set<string>();
  let reader: string;
  let creator: string;
  let jobsReader: string;
  let apiKey: string;
  let verifierKey: string;

  const live = () => nodes.filter((n) => !killed.has(n.name));

  const send = (node: ClusterNode, ...args: Parameters<ClusterNode['request']>) =>
    withDeadline(`${args[0]} ${args[1]} on node ${node.name}`, node.request(...args), REQUEST_DEADLINE_MS);

  before(async () => {
    data = await freshPgDatabase();
    keydDb = await freshPgDatabase();
    root = mkdtempSync(join(tmpdir(), 'tresor-pg3-'));
    // Two keyd folders sharing one root key (a copy of one dev-file keyring), on one keyd store.
    const keydA = join(root, 'keyd-a');
    const keydB = join(root, 'keyd-b');
    mkdirSync(keydA, { recursive: true, mode: 0o700 });
    initDevFile(keydA);
    cpSync(keydA, keydB, { recursive: true });
    const sockets = [join(keydA, 'keyd.sock'), join(keydB, 'keyd.sock')];
    const keydArgs = (dir: string) => ['--provider', 'dev-file', '--dir', dir, '--insecure-dev-key-file'];
    const keydEnv = { TRESOR_KEYD_DATABASE_URL: keydDb.url };
    keyds.push(
      ...(await Promise.all([
        startKeyd(keydArgs(keydA), { kind: 'unix', path: sockets[0] as string }, keydEnv),
        startKeyd(keydArgs(keydB), { kind: 'unix', path: sockets[1] as string }, keydEnv),
      ])),
    );

    const dirs = ['a', 'b', 'c'].map((n) => join(root as string, n));
    const admin = await bootstrapClusterAdmin(dirs[0] as string, data.url);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
    Object.assign(env, {
      NO_COLOR: '1',
      TRESOR_KEYD_SOCKETS: sockets.join(','),
      TRESOR_PORT: '0',
      TRESOR_HOST: '127.0.0.1',
      TRESOR_LOG_LEVEL: 'warn',
      TRESOR_AUDIT_DISK_RESERVE_BYTES: String(1024 * 1024),
      TRESOR_DATABASE_URL: data.url,
    });
    // One after the other: the first to start takes the sequencer's lease.
    for (const [i, name] of ['A', 'B', 'C'].entries())
      nodes.push(await startNode(name, dirs[i] as string, env));

    const first = nodes[0] as ClusterNode;
    const stack = {
      url: first.url,
      caFile: first.caFile,
      request: first.request,
      admin,
    } as unknown as TresorStack;
    // Every token now, while node A (which may be killed later) is up; they live in the shared store.
    reader = await operatorToken(stack, 'audit:read');
    creator = await operatorToken(stack, 'tenants:create');
    jobsReader = await operatorToken(stack, 'jobs:read');
    const created = await send(first, 'POST', '/v1/tenants', {
      token: creator,
      body: { name: 'Three Nodes' },
    });
    assert.equal(created.status, 201, created.text);
    apiKey = created.json<{ apiKey: string }>().apiKey;
    const put = await send(first, 'PUT', '/v1/collections/notes', {
      token: apiKey,
      body: { fields: { text: { type: 'string', classification: 'confidential' } } },
    });
    assert.equal(put.status, 201, put.text);
    const pub = await send(first, 'GET', '/v1/audit/public-key');
    assert.equal(pub.status, 200, pub.text);
    verifierKey = pub.text.trim();
  });

  after(async () => {
    for (const s of streams) s.close();
    for (const n of [...nodes].reverse()) await stopNode(n).catch(() => undefined);
    for (const k of keyds) await k?.stop().catch(() => undefined);
    await data?.drop().catch(() => undefined);
    await keydDb?.drop().catch(() => undefined);
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** Record ids whose create was acknowledged (201), with the node that acknowledged it. */
  const acked: { id: string; node: string }[] = [];
  const failures: Failure[] = [];
  let turn = 0;

  /** One record create on the next live node (round-robin); a failure is kept with its node. */
  async function writeOne(): Promise<void> {
    const targets = live();
    const node = targets[turn++ % targets.length] as ClusterNode;
    try {
      const res = await send(node, 'POST', '/v1/collections/notes/records', {
        token: apiKey,
        body: { text: `note ${turn}` },
      });
      if (res.status === 201) acked.push({ id: res.json<{ id: string }>().id, node: node.name });
      else failures.push({ node: node.name, what: `status ${res.status}` });
    } catch (err) {
      failures.push({ node: node.name, what: (err as Error).message });
    }
  }

  /** Writers that run until `stop()`; `done` settles once all have stopped. */
  function load(extra: (() => Promise<void>)[] = []) {
    let stopping = false;
    const loop = async (step: () => Promise<void>) => {
      while (!stopping) await step();
    };
    const done = Promise.all([...Array.from({ length: WRITERS }, () => loop(writeOne)), ...extra.map(loop)]);
    return {
      stop: async () => {
        stopping = true;
        await withDeadline('the writers to stop', done, REQUEST_DEADLINE_MS * 2);
      },
    };
  }

  const untilAcked = (what: string, n: number) =>
    waitFor(what, async () => (acked.length >= n ? true : undefined), {
      timeoutMs: 180_000,
      intervalMs: 50,
      diagnostics: () => ` (${acked.length} acknowledged, failures: ${JSON.stringify(failures.slice(0, 5))})`,
    });

  /** Failures of requests to nodes that were alive (not killed on purpose). */
  const liveFailures = () => failures.filter((f) => !killed.has(f.node));

  async function allEntries(node: ClusterNode): Promise<LogEntry[]> {
    const all: LogEntry[] = [];
    let next: number | null = 0;
    while (next !== null) {
      const res = await send(node, 'GET', `/v1/audit/entries?from=${next}&limit=1000`, { token: reader });
      assert.equal(res.status, 200, res.text);
      const page = res.json<{ entries: LogEntry[]; next: number | null }>();
      all.push(...page.entries);
      next = page.next;
    }
    return all;
  }

  const keydOpsRuns = async (node: ClusterNode): Promise<number> => {
    const res = await send(node, 'GET', '/v1/system/jobs', { token: jobsReader });
    assert.equal(res.status, 200, res.text);
    return (
      res.json<{ jobs: { name: string; runs: number }[] }>().jobs.find((j) => j.name === 'audit.keyd-ops')
        ?.runs ?? 0
    );
  };

  test('writes spread round-robin over the three nodes by concurrent writers', async () => {
    const writers = load();
    await untilAcked('90 acknowledged writes', 90);
    await writers.stop();
    assert.deepEqual(failures, [], 'no write failed');
    const perNode = new Map<string, number>();
    for (const a of acked) perNode.set(a.node, (perNode.get(a.node) ?? 0) + 1);
    for (const n of nodes)
      assert.ok((perNode.get(n.name) ?? 0) >= 20, `node ${n.name} took writes: ${perNode.get(n.name)}`);
  });

  test('a record written on one node is read at once on the other two', async () => {
    for (const writer of nodes) {
      const res = await send(writer, 'POST', '/v1/collections/notes/records', {
        token: apiKey,
        body: { text: `written on ${writer.name}` },
      });
      assert.equal(res.status, 201, res.text);
      const { id } = res.json<{ id: string }>();
      acked.push({ id, node: writer.name });
      for (const other of nodes.filter((n) => n !== writer)) {
        const got = await send(other, 'GET', `/v1/collections/notes/records/${id}`, { token: apiKey });
        assert.equal(
          got.status,
          200,
          `node ${other.name} reading node ${writer.name}'s record: ${got.status}`,
        );
        const body = got.json<{ id: string; data: { text: string } }>();
        assert.equal(body.id, id);
        assert.equal(body.data.text, `written on ${writer.name}`);
      }
    }
  });

  test('a stream client on node A receives a record written on node B', async (t) => {
    const [nodeA, nodeB] = nodes as [ClusterNode, ClusterNode];
    const stream = openAuditStream<LogEntry>(nodeA, reader);
    streams.push(stream);
    assert.equal(await withDeadline("node A's stream to open", stream.opened), 200);
    const started = Date.now();
    const res = await send(nodeB, 'POST', '/v1/collections/notes/records', {
      token: apiKey,
      body: { text: 'streamed' },
    });
    assert.equal(res.status, 201, res.text);
    const acknowledged = Date.now();
    const { id } = res.json<{ id: string }>();
    acked.push({ id, node: nodeB.name });
    await stream.until(
      "node B's record.create on node A's stream",
      (events) =>
        events.some(
          (e) =>
            e.data.entry.action === 'record.create' && e.data.entry.target?.recordIds?.includes(id) === true,
        ),
      10_000,
    );
    const seen = Date.now();
    t.diagnostic(
      `node B write → node A stream: ${seen - started} ms from the request, ${seen - acknowledged} ms from the 201`,
    );
    stream.close();
  });

  test("kill -9 of the lease holder's node under load: the others go on, one takes the lease, the log has no gap and no duplicate", async (t) => {
    const holder = await waitFor(
      'one node to hold the lease (it mirrors keyd’s operations)',
      async () => {
        const running: ClusterNode[] = [];
        for (const n of nodes) if ((await keydOpsRuns(n)) > 0) running.push(n);
        return running.length === 1 ? running[0] : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    t.diagnostic(`lease holder: node ${holder.name}`);
    const survivors = nodes.filter((n) => n !== holder);
    const before = acked.length;
    const writers = load();
    await untilAcked('writes before the kill', before + 30);
    killed.add(holder.name);
    const killedAt = Date.now();
    holder.proc.kill('SIGKILL');
    await withDeadline(`node ${holder.name} to die`, holder.exited);
    const taker = await waitFor(
      'a surviving node to take the lease',
      async () => {
        for (const n of survivors) if ((await keydOpsRuns(n)) > 0) return n;
        return undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    t.diagnostic(`node ${taker.name} took the lease ${Date.now() - killedAt} ms after the kill`);
    const atTakeover = acked.length;
    await untilAcked('writes after the takeover', atTakeover + 30);
    await writers.stop();
    assert.deepEqual(liveFailures(), [], 'no request to a live node failed');
    const toKilled = failures.filter((f) => f.node === holder.name).length;
    t.diagnostic(`${toKilled} request(s) to the killed node failed; ${acked.length - before} acknowledged`);

    // Every acknowledged write in the log exactly once; the indexes 0..n-1, no gap, no repeat.
    const reading = survivors[0] as ClusterNode;
    const entries = await waitFor(
      'the log to hold every acknowledged write',
      async () => {
        const all = await allEntries(reading);
        const ids = new Set(
          all.flatMap((e) => (e.entry.action === 'record.create' ? (e.entry.target?.recordIds ?? []) : [])),
        );
        return acked.every((a) => ids.has(a.id)) ? all : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    entries.forEach((e, i) => {
      assert.equal(e.index, i, `entry at position ${i} has index ${e.index}`);
    });
    const count = new Map<string, number>();
    for (const e of entries)
      if (e.entry.action === 'record.create')
        for (const id of e.entry.target?.recordIds ?? []) count.set(id, (count.get(id) ?? 0) + 1);
    for (const a of acked)
      assert.equal(count.get(a.id), 1, `record ${a.id} (acknowledged by ${a.node}) in the log once`);
    assert.deepEqual(
      [...count.entries()].filter(([, n]) => n > 1),
      [],
      'no record.create entry repeated',
    );
  });

  test('kill -9 of one keyd while writers run: no request fails', async (t) => {
    const before = acked.length;
    let tenants = 0;
    // Each tenant made asks keyd for its key: a keyd call per request, not only a cached data key.
    const makeTenant = async () => {
      const targets = live();
      const node = targets[tenants % targets.length] as ClusterNode;
      try {
        const res = await send(node, 'POST', '/v1/tenants', {
          token: creator,
          body: { name: `Keyd ${tenants}` },
        });
        if (res.status === 201) tenants += 1;
        else failures.push({ node: node.name, what: `tenant create: status ${res.status} ${res.text}` });
      } catch (err) {
        failures.push({ node: node.name, what: `tenant create: ${(err as Error).message}` });
      }
    };
    const writers = load([makeTenant]);
    await untilAcked('writes before the keyd kill', before + 30);
    const tenantsAtKill = tenants;
    // The first socket is the one the servers prefer.
    await (keyds[0] as KeydProcess).kill9();
    keyds[0] = undefined;
    await untilAcked('writes after the keyd kill', acked.length + 60);
    await waitFor(
      'tenants made after the keyd kill',
      async () => (tenants >= tenantsAtKill + 5 ? true : undefined),
      {
        timeoutMs: 120_000,
        intervalMs: 100,
      },
    );
    await writers.stop();
    t.diagnostic(
      `${acked.length - before} writes and ${tenants} tenants acknowledged; ${tenants - tenantsAtKill} tenants after the kill`,
    );
    assert.deepEqual(liveFailures(), [], 'no request to a live node failed');
  });

  test('tresor audit verify passes; an inclusion proof from one node verifies against another’s checkpoint', async () => {
    const [x, y] = live() as [ClusterNode, ClusterNode];
    const entries = await allEntries(x);
    const size = entries.length;
    const checkpoint = await waitFor(
      `node ${x.name} to serve a checkpoint of ≥ ${size} entries`,
      async () => {
        const res = await send(x, 'GET', '/v1/audit/checkpoint', { token: reader });
        if (res.status !== 200) return undefined;
        const opened = independentOpenCheckpoint(res.text, verifierKey);
        return opened.size >= BigInt(size) ? opened : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const treeSize = Number(checkpoint.size);
    // A record written by a writer before the lease moved, and the last entry the log held.
    const picks = [entries.find((e) => e.entry.action === 'record.create'), entries[size - 1]];
    for (const e of picks) {
      assert.ok(e);
      const leaf = independentLeafHash(Buffer.from(canonicalize(e.entry) as string, 'utf8'));
      assert.equal(leaf.toString('base64'), e.leafHash, `leaf hash of ${e.index}`);
      const proof = await send(y, 'GET', `/v1/audit/proofs/inclusion?index=${e.index}&treeSize=${treeSize}`, {
        token: reader,
      });
      assert.equal(proof.status, 200, proof.text);
      const hashes = proof.json<{ hashes: string[] }>().hashes.map((h) => Buffer.from(h, 'base64'));
      assert.ok(
        independentVerifyInclusion(leaf, BigInt(e.index), checkpoint.size, hashes, checkpoint.root),
        `node ${y.name}'s proof of entry ${e.index} against node ${x.name}'s checkpoint of ${treeSize}`,
      );
    }

    const verified = await runTresor(
      ['audit', 'verify', '--data-dir', x.dataDir, '--public-key', verifierKey, '--json'],
      { TRESOR_DATABASE_URL: (data as FreshPgDatabase).url },
    );
    assert.equal(verified.status, 0, verified.stdout + verified.stderr);
    assert.equal((JSON.parse(verified.stdout) as { ok: boolean }).ok, true);
  });
});

/** `tresor …` as a child process (async: the servers in this process keep being answered), bounded. */
async function runTresor(
  args: string[],
  extraEnv: Record<string, string>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
  const proc = spawn(process.execPath, [TRESOR_BIN, ...args], {
    env: { ...env, NO_COLOR: '1', ...extraEnv },
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
  const status = await withDeadline(
    'tresor audit verify',
    new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code))),
    120_000,
    () => proc.kill('SIGKILL'),
  );
  return { status, stdout, stderr };
}
