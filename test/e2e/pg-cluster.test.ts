// backends: postgres
// drill: kill -9 of server processes sharing one PostgreSQL database
/**
 * Two `tresor server` processes on one PostgreSQL database (issue 18), sharing one keyd, each with
 * its own data folder (TLS, witness) — as two nodes behind a TCP load balancer run. The first to
 * start holds the audit sequencer's lease; the other is a standby whose requests commit their events
 * to the outboxes. What a client of either node must see:
 *   - the live audit stream (GET /v1/audit/stream) of node A carries an event caused on node B (B's
 *     outbox commit NOTIFYs, A's sequencer moves it), and the stream of node B carries an event
 *     caused on node A (A's log write NOTIFYs, B follows the log from the table);
 *   - both nodes read the same log (entries and tree size) afterwards;
 *   - caches: with a principal cache far longer than the test (TRESOR_PRINCIPAL_CACHE_MS), an API key
 *     revoked on node A, and a tenant closed on node A, are refused by node B, which had just
 *     accepted (and cached) them — only the change's NOTIFY can have told it;
 *   - scheduled jobs run in one node only (the lease holder: A), and after a kill -9 of that node the
 *     other takes them over (keyd's operations mirrored every 2 s: the job's runs on each node).
 * Waits are bounded by the test's own deadlines; nothing asserts a duration.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { initDevFile } from '../../src/keyd/root/dev-file.ts';
import { type AuditStream, openAuditStream } from '../helpers/audit-stream.ts';
import { bootstrapClusterAdmin, type ClusterNode, startNode, stopNode } from '../helpers/cluster-node.ts';
import { operatorAdmin, operatorToken } from '../helpers/console.ts';
import { type KeydProcess, startKeyd } from '../helpers/keyd-process.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';
import type { TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor, withDeadline } from '../helpers/wait.ts';

interface StreamedEntry {
  index: number;
  entry: { action?: string; target?: { tenant?: string; [k: string]: unknown }; tenant?: string | null };
}

describe('two server processes on one PostgreSQL database', () => {
  let database: FreshPgDatabase;
  let root: string;
  let keyd: KeydProcess | undefined;
  let a: ClusterNode | undefined;
  let b: ClusterNode | undefined;
  /** Node A as the console helpers see a stack: its requester and the first operator admin. */
  let stackA: TresorStack;
  const streams: AuditStream<StreamedEntry>[] = [];

  before(async () => {
    database = await freshPgDatabase({ prefix: 'h_pgclu' });
    root = mkdtempSync(join(tmpdir(), 'tresor-pgcluster-'));
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
    // The first operator admin, made in the shared control store as `tresor dev` makes it.
    const admin = await bootstrapClusterAdmin(dataA, database.url);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
    Object.assign(env, {
      NO_COLOR: '1',
      TRESOR_KEYD_SOCKET: keydSocket,
      TRESOR_PORT: '0',
      TRESOR_HOST: '127.0.0.1',
      TRESOR_LOG_LEVEL: 'warn',
      TRESOR_AUDIT_DISK_RESERVE_BYTES: String(1024 * 1024),
      TRESOR_DATABASE_URL: database.url,
      // Ten minutes: only the cluster's cache notices can make node B drop an entry within the test.
      TRESOR_PRINCIPAL_CACHE_MS: '600000',
    });
    a = await startNode('A', dataA, env);
    b = await startNode('B', dataB, env);
    const nodeA = a;
    stackA = {
      get url() {
        return nodeA.url;
      },
      caFile: nodeA.caFile,
      request: nodeA.request,
      admin,
    } as unknown as TresorStack;
  });

  after(async () => {
    for (const s of streams) s.close();
    await stopNode(b).catch(() => undefined);
    await stopNode(a).catch(() => undefined);
    await keyd?.stop().catch(() => undefined);
    await database?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("each node's live audit stream carries the events caused on the other node", async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    const reader = await operatorToken(stackA, 'audit:read');
    const creator = await operatorToken(stackA, 'tenants:create');
    // The operator tokens live in the shared control store: node B knows them too.
    const onA = openAuditStream<StreamedEntry>(nodeA, reader);
    const onB = openAuditStream<StreamedEntry>(nodeB, reader);
    streams.push(onA, onB);
    assert.equal(await withDeadline('the stream of node A to open', onA.opened), 200);
    assert.equal(await withDeadline('the stream of node B to open', onB.opened), 200);

    const createOn = async (node: ClusterNode, name: string): Promise<string> => {
      const res = await node.request('POST', '/v1/tenants', { token: creator, body: { name } });
      assert.equal(res.status, 201, `${node.name}: ${res.text}`);
      return res.json<{ id: string }>().id;
    };
    const created = (id: string) => (events: { data: StreamedEntry }[]) =>
      events.some(
        (e) => e.data.entry.action === 'tenant.create' && JSON.stringify(e.data.entry).includes(id),
      );

    const fromB = await createOn(nodeB, 'Made on B');
    await onA.until("node B's tenant.create on node A's stream", created(fromB), 60_000);
    const fromA = await createOn(nodeA, 'Made on A');
    await onB.until("node A's tenant.create on node B's stream", created(fromA), 60_000);
    // And each on its own node's stream, in the same global order on both.
    await onA.until("node A's own tenant.create on its stream", created(fromA), 60_000);
    await onB.until("node B's own tenant.create on its stream", created(fromB), 60_000);
    const order = (s: AuditStream<StreamedEntry>) =>
      s.events.filter((e) => e.data.entry.action === 'tenant.create').map((e) => e.data.index);
    assert.deepEqual(order(onA), order(onB), 'both streams carry the same entries at the same indexes');

    // Both nodes read one log: the same entries up to a common size.
    const entries = async (node: ClusterNode) => {
      const res = await node.request('GET', '/v1/audit/entries?from=0&limit=1000', { token: reader });
      assert.equal(res.status, 200, res.text);
      return res.json<{ entries: StreamedEntry[]; treeSize: number }>();
    };
    const [logA, logB] = [await entries(nodeA), await entries(nodeB)];
    const common = Math.min(logA.entries.length, logB.entries.length);
    assert.ok(common > 0);
    assert.deepEqual(logA.entries.slice(0, common), logB.entries.slice(0, common));

    // Node B signs nothing itself: it serves the holder's checkpoints, which come to cover its entries.
    const last = Math.max(...order(onB));
    await waitFor(
      'node B to serve a checkpoint covering both tenant.create entries',
      async () => {
        const res = await nodeB.request('GET', '/v1/audit/checkpoint', { token: reader });
        if (res.status !== 200) return undefined;
        const size = Number(res.text.split('\n')[1]);
        return size > last ? size : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  });

  test('an API key revoked, and a tenant closed, on node A are refused by node B, which had them cached', async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    const admin = await operatorAdmin(stackA);
    const created = await admin.request('POST', '/v1/tenants', { name: 'Cached Ltd' });
    assert.equal(created.status, 201, created.text);
    const tenant = created.json<{ id: string; apiKey: string }>();
    const issued = await nodeA.request('POST', '/v1/api-keys', {
      token: tenant.apiKey,
      body: { collections: '*', access: ['read'] },
    });
    assert.equal(issued.status, 201, issued.text);
    const reader = issued.json<{ id: string; token: string }>();
    const collectionsOn = (node: ClusterNode, token: string) =>
      node.request('GET', '/v1/collections', { token }).then((r) => r.status);
    // Node B accepts both keys, so both principals are in its cache now.
    assert.equal(await collectionsOn(nodeB, reader.token), 200);
    assert.equal(await collectionsOn(nodeB, tenant.apiKey), 200);

    const revoked = await nodeA.request('DELETE', `/v1/api-keys/${reader.id}`, { token: tenant.apiKey });
    assert.equal(revoked.status, 200, revoked.text);
    await waitFor(
      'node B to refuse the key revoked on node A',
      async () => ((await collectionsOn(nodeB, reader.token)) === 401 ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    // The tenant's other key is not touched by that key's revocation.
    assert.equal(await collectionsOn(nodeB, tenant.apiKey), 200);

    const closing = await admin.request('POST', `/v1/tenants/${tenant.id}/close`, { reason: 'cluster test' });
    assert.equal(closing.status, 202, closing.text);
    await waitFor(
      "node B to refuse the closed tenant's key",
      async () => ((await collectionsOn(nodeB, tenant.apiKey)) === 401 ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    assert.equal(await collectionsOn(nodeA, tenant.apiKey), 401);
  });

  test('scheduled jobs run in one node only, and in the other once that one is killed (kill -9)', async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    const token = await operatorToken(stackA, 'jobs:read');
    const runsOn = async (node: ClusterNode, job: string): Promise<number> => {
      const res = await node.request('GET', '/v1/system/jobs', { token });
      assert.equal(res.status, 200, res.text);
      return (
        res.json<{ jobs: { name: string; runs: number }[] }>().jobs.find((j) => j.name === job)?.runs ?? 0
      );
    };
    // Node A (started first) holds the lease: it mirrors keyd's operations every 2 s; B never does.
    await waitFor(
      'node A to mirror keyd’s operations twice',
      async () => ((await runsOn(nodeA, 'audit.keyd-ops')) >= 2 ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    assert.equal(await runsOn(nodeB, 'audit.keyd-ops'), 0, 'the standby runs no scheduled job');
    assert.equal(await runsOn(nodeA, 'tenants.resume'), 1, 'the start-up run: in the lease holder');
    assert.equal(await runsOn(nodeB, 'tenants.resume'), 0);

    nodeA.proc.kill('SIGKILL');
    await withDeadline('node A to die', nodeA.exited);
    await waitFor(
      'node B to take the jobs over',
      async () => ((await runsOn(nodeB, 'audit.keyd-ops')) >= 1 ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  });
});
