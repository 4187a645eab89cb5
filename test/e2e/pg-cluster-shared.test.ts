// backends: postgres
// drill: kill -9 of the sequencer's node of a cluster
/**
 * What is the cluster's, not each node's, with two `tresor server` processes on one PostgreSQL
 * database (one keyd, a data folder each), as docs/operations.md § "Several server processes on one
 * database" states:
 *   - a closed tenant's data keys leave a node that missed the `tresor_cache` notice (its listening
 *     connection terminated again and again around the close) by the node's own check of the
 *     tenant states, long before the key cache's 5-minute TTL; and the tenant's key is refused there;
 *   - the availability probe: one per cluster, run by the lease holder (node A); both nodes answer
 *     the same report from the stored results; node B runs no probe;
 *   - the audit sinks: both nodes configure the same file sink, and while both run each entry is
 *     delivered once (by the lease holder); after a kill -9 of the holder the other goes on from the
 *     stored cursor — no entry missed, at most one batch (256 entries) delivered twice;
 *   - after the kill the probe goes on in node B, with no two results in one half-interval.
 * Waits are bounded by deadlines; nothing asserts a duration.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { ensureDevTls } from '../../src/config/dev-tls.ts';
import { initDevFile } from '../../src/keyd/root/dev-file.ts';
import type { AvailabilityView } from '../../src/server/probe-job.ts';
import { bootstrapClusterAdmin, type ClusterNode, startNode, stopNode } from '../helpers/cluster-node.ts';
import { operatorAdmin, operatorToken } from '../helpers/console.ts';
import { type KeydProcess, startKeyd } from '../helpers/keyd-process.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';
import type { TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor, withDeadline } from '../helpers/wait.ts';

const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const PROBE_INTERVAL_S = 1;
/** The dispatcher's batch: what a takeover may deliver twice, per sink. */
const SINK_BATCH = 256;

/** `url` with an application_name, so the test can tell node B's connections from node A's. */
function named(url: string, name: string): string {
  const u = new URL(url);
  u.searchParams.set('application_name', name);
  return u.toString();
}

describe('the cluster’s shared state on two server processes', () => {
  let database: FreshPgDatabase;
  let admin: pg.Client;
  let root: string;
  let keyd: KeydProcess | undefined;
  let a: ClusterNode | undefined;
  let b: ClusterNode | undefined;
  let stackA: TresorStack;
  let sinkPath: string;

  /** Node A as the console helpers see a stack (following node A across its restart at setup). */
  const stackOfA = (person: TresorStack['admin']): TresorStack =>
    ({
      get url() {
        return (a as ClusterNode).url;
      },
      get caFile() {
        return (a as ClusterNode).caFile;
      },
      request: (...args: Parameters<ClusterNode['request']>) => (a as ClusterNode).request(...args),
      admin: person,
    }) as unknown as TresorStack;

  before(async () => {
    database = await freshPgDatabase({ prefix: 'h_pgshared' });
    admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    root = mkdtempSync(join(tmpdir(), 'tresor-pgshared-'));
    const keydDir = join(root, 'keyd');
    mkdirSync(keydDir, { recursive: true, mode: 0o700 });
    initDevFile(keydDir);
    const keydSocket = join(keydDir, 'keyd.sock');
    keyd = await startKeyd(
      ['--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file'],
      { kind: 'unix', path: keydSocket },
      { TRESOR_KEYD_SOCKET: keydSocket },
    );
    const dataA = join(root, 'a');
    const dataB = join(root, 'b');
    const person = await bootstrapClusterAdmin(dataA, database.url);
    // One file sink, configured alike on both nodes: an entry written twice would show.
    sinkPath = join(root, 'siem.jsonl');
    const sinksFile = join(root, 'sinks.json');
    writeFileSync(
      sinksFile,
      JSON.stringify([{ kind: 'file', name: 'siem', path: sinkPath, maxBytes: 256 << 20, keep: 2 }]),
    );
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
    Object.assign(env, {
      NO_COLOR: '1',
      TRESOR_KEYD_SOCKET: keydSocket,
      TRESOR_PORT: '0',
      TRESOR_HOST: '127.0.0.1',
      TRESOR_LOG_LEVEL: 'warn',
      TRESOR_AUDIT_DISK_RESERVE_BYTES: String(1024 * 1024),
      TRESOR_AUDIT_SINKS_FILE: sinksFile,
      TRESOR_PRINCIPAL_CACHE_MS: '2000',
      TRESOR_CLUSTER_SWEEP_MS: '500',
    });
    const envA = { ...env, TRESOR_DATABASE_URL: named(database.url, 'tresor-node-a') };
    const envB = { ...env, TRESOR_DATABASE_URL: named(database.url, 'tresor-node-b') };

    // The probe tenant is made through node A, then both nodes start with its key.
    a = await startNode('A', dataA, envA);
    stackA = stackOfA(person);
    const first = await operatorAdmin(stackA);
    const probeTenant = await first.request('POST', '/v1/tenants', { name: 'Probe' });
    assert.equal(probeTenant.status, 201, probeTenant.text);
    const keyFile = join(root, 'probe-key');
    writeFileSync(keyFile, probeTenant.json<{ apiKey: string }>().apiKey, { mode: 0o600 });
    await stopNode(a);
    // Each node probes where it listens (no publicUrl), trusting its own development CA.
    const probeEnv = async (dataDir: string) => ({
      TRESOR_PROBE_API_KEY_FILE: keyFile,
      TRESOR_PROBE_INTERVAL_SECONDS: String(PROBE_INTERVAL_S),
      TRESOR_PROBE_CA_FILE: (await ensureDevTls(dataDir)).caFile,
    });
    a = await startNode('A', dataA, { ...envA, ...(await probeEnv(dataA)) });
    b = await startNode('B', dataB, { ...envB, ...(await probeEnv(dataB)) });
  });

  after(async () => {
    await stopNode(b).catch(() => undefined);
    await stopNode(a).catch(() => undefined);
    await keyd?.stop().catch(() => undefined);
    await admin?.end().catch(() => undefined);
    await database?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('a closed tenant’s data keys leave a node that missed the cache notice', async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    const metricsToken = await operatorToken(stackA, 'metrics:read');
    const cachedKeys = async (node: ClusterNode): Promise<number> => {
      const res = await node.request('GET', '/metrics', { token: metricsToken });
      assert.equal(res.status, 200, res.text);
      const line = res.text.split('\n').find((l) => l.startsWith('tresor_key_cache_entries '));
      return Number(line?.split(' ')[1] ?? 'NaN');
    };
    const opAdmin = await operatorAdmin(stackA);
    const created = await opAdmin.request('POST', '/v1/tenants', { name: 'Keys Ltd' });
    assert.equal(created.status, 201, created.text);
    const tenant = created.json<{ id: string; apiKey: string }>();
    const put = await nodeA.request('PUT', '/v1/collections/notes', {
      token: tenant.apiKey,
      body: { fields: { text: { type: 'string', classification: 'confidential' } } },
    });
    assert.equal(put.status, 201, put.text);
    const before = await cachedKeys(nodeB);
    // Node B writes and reads the tenant's record: its data key is in B's cache now.
    const wrote = await nodeB.request('POST', '/v1/collections/notes/records', {
      token: tenant.apiKey,
      body: { text: 'kept on B' },
    });
    assert.equal(wrote.status, 201, wrote.text);
    const read = await nodeB.request('GET', '/v1/collections/notes/records', { token: tenant.apiKey });
    assert.equal(read.status, 200, read.text);
    const held = await cachedKeys(nodeB);
    assert.ok(held > before, `node B holds the tenant's data key (${before} → ${held})`);

    // Node B's listening connection is terminated again and again while node A closes the tenant:
    // the close's NOTIFY finds no listener of B (it reconnects once a second, and is cut at once).
    let cutting = true;
    const cuts = (async () => {
      let n = 0;
      while (cutting) {
        const res = await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name = 'tresor-node-b' AND query LIKE 'LISTEN %'`,
        );
        n += res.rowCount ?? 0;
        await new Promise((r) => setTimeout(r, 20));
      }
      return n;
    })();
    await new Promise((r) => setTimeout(r, 300));
    const closing = await opAdmin.request('POST', `/v1/tenants/${tenant.id}/close`, {
      reason: 'cluster test',
    });
    assert.equal(closing.status, 202, closing.text);
    await new Promise((r) => setTimeout(r, 1_000));
    cutting = false;
    assert.ok((await cuts) >= 1, "node B's listening connection was cut");

    await waitFor(
      "node B to drop the closed tenant's data key (its own check, not the 5-minute TTL)",
      async () => ((await cachedKeys(nodeB)) < held ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    await waitFor(
      "node B to refuse the closed tenant's key",
      async () => {
        const res = await nodeB.request('GET', '/v1/collections', { token: tenant.apiKey });
        return res.status === 401 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  });

  test('one probe for the cluster, by the lease holder; the same report on both nodes', async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    const token = await operatorToken(stackA, 'jobs:read');
    const view = async (node: ClusterNode) => {
      const res = await node.request('GET', '/v1/system/availability', { token });
      assert.equal(res.status, 200, res.text);
      return res.json<AvailabilityView>();
    };
    const runsOn = async (node: ClusterNode, job: string): Promise<number> => {
      const res = await node.request('GET', '/v1/system/jobs', { token });
      assert.equal(res.status, 200, res.text);
      return (
        res.json<{ jobs: { name: string; runs: number }[] }>().jobs.find((j) => j.name === job)?.runs ?? 0
      );
    };
    await waitFor(
      'three passing probes',
      async () => {
        const v = await view(nodeA);
        return v.report.last30Days.probes >= 3 && v.last?.ok === true ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    // Read both between two probes: the same stored results give the same report.
    const same = await waitFor(
      'both nodes to answer from the same results',
      async () => {
        const [va, vb] = [await view(nodeA), await view(nodeB)];
        return va.last?.at === vb.last?.at && va.report.last30Days.probes === vb.report.last30Days.probes
          ? { va, vb }
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    assert.deepEqual(same.va.report.last30Days.probes, same.vb.report.last30Days.probes);
    assert.equal(same.va.node.runsProbe, true);
    assert.equal(same.vb.node.runsProbe, false);
    assert.ok((await runsOn(nodeA, 'probe.run')) >= 3);
    assert.equal(await runsOn(nodeB, 'probe.run'), 0, 'the standby runs no probe');
  });

  test('each entry reaches the sink once while both run; after a kill -9 the other node goes on from the cursor', async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    const reader = await operatorToken(stackA, 'audit:read');
    const creator = await operatorToken(stackA, 'tenants:create');
    const jobsReader = await operatorToken(stackA, 'jobs:read');
    const treeSize = async (node: ClusterNode): Promise<number> => {
      const res = await node.request('GET', '/v1/audit/entries?from=0&limit=1', { token: reader });
      assert.equal(res.status, 200, res.text);
      return res.json<{ treeSize: number }>().treeSize;
    };
    const delivered = (): number[] =>
      readFileSync(sinkPath, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { type: string; index?: number })
        .filter((r) => r.type === 'entry')
        .map((r) => r.index as number);
    const covered = async (node: ClusterNode, label: string): Promise<number> => {
      const size = await treeSize(node);
      await waitFor(label, async () => (new Set(delivered()).size >= size ? true : undefined), {
        timeoutMs: 60_000,
        intervalMs: 250,
      });
      return size;
    };
    for (const [i, node] of [nodeA, nodeB, nodeA, nodeB].entries()) {
      const res = await node.request('POST', '/v1/tenants', {
        token: creator,
        body: { name: `Sink ${node.name} ${i}` },
      });
      assert.equal(res.status, 201, res.text);
    }
    const size = await covered(nodeA, 'the sink to hold every entry of the log');
    const once = delivered();
    const counts = new Map<number, number>();
    for (const i of once) counts.set(i, (counts.get(i) ?? 0) + 1);
    assert.deepEqual(
      [...counts.entries()].filter(([, n]) => n > 1),
      [],
      'no entry delivered twice while both nodes run',
    );
    for (let i = 0; i < size; i++) assert.ok(counts.has(i), `entry ${i} delivered`);

    // The holder dies; node B takes the lease over and goes on from the stored cursor.
    nodeA.proc.kill('SIGKILL');
    await withDeadline('node A to die', nodeA.exited);
    for (let i = 0; i < 3; i++) {
      const res = await nodeB.request('POST', '/v1/tenants', {
        token: creator,
        body: { name: `After ${i}` },
      });
      assert.equal(res.status, 201, res.text);
    }
    // Those writes are in the log once node B has taken the lease over and sequenced them (a 201 is
    // the outbox's commit): the tree size read at once may still be the old one.
    await waitFor(
      'node B to sequence the entries made after the kill',
      async () => ((await treeSize(nodeB)) > size ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const later = await covered(nodeB, 'node B to deliver the entries made after the kill');
    assert.ok(later > size);
    const all = delivered();
    const seen = new Set(all);
    for (let i = 0; i < later; i++) assert.ok(seen.has(i), `entry ${i} delivered`);
    assert.ok(all.length - seen.size <= SINK_BATCH, `at most one batch repeated (${all.length - seen.size})`);

    // The probe goes on in node B, never two results within half an interval (no double counting).
    const probes = async () => {
      const res = await nodeB.request('GET', '/v1/system/availability', { token: jobsReader });
      assert.equal(res.status, 200, res.text);
      return res.json<AvailabilityView>();
    };
    const atKill = (await probes()).report.last30Days.probes;
    await waitFor(
      'node B to probe after the takeover',
      async () => {
        const v = await probes();
        return v.node.runsProbe && v.report.last30Days.probes >= atKill + 2 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const data = new pg.Client({ connectionString: database.url });
    await data.connect();
    try {
      const { rows } = await data.query<{ at: string }>('SELECT at FROM tresor.probe_results ORDER BY at');
      const starts = rows.map((r) => Date.parse(r.at));
      for (let i = 1; i < starts.length; i++) {
        const apart = (starts[i] as number) - (starts[i - 1] as number);
        assert.ok(apart >= (PROBE_INTERVAL_S * 1000) / 2, `probes ${i - 1} and ${i} are ${apart} ms apart`);
      }
    } finally {
      await data.end();
    }
  });
});
