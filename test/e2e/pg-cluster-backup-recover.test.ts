// backends: postgres (two server processes share one PostgreSQL database; the run lock is PostgreSQL's advisory lock)
// drill: a cluster's backup run taken over after a kill
/**
 * Recovering backup runs on two `tresor server` nodes of one PostgreSQL database (issue 18): the
 * node making a backup holds that run's session advisory lock (src/backup/run-lock.ts), and
 * recovery marks a `running` run interrupted only when it can take that lock.
 *   - node A (the lease holder) is making a scheduled backup, held mid-way: its S3 destination sits
 *     behind a proxy that holds the chunk's PUT (test/backup/fault-proxy.ts). Node B starts, and its
 *     start-up `backup.recover` runs: A's run stays `running`, and once the PUT is let through it
 *     ends `done`, verified;
 *   - A's next scheduled backup is held the same way and A is killed (kill -9): B takes the lease,
 *     and its periodic `backup.recover` (no restart) marks A's run interrupted; B's next scheduled
 *     backup runs, done and verified.
 * Every step waits for an event (a PUT seen at the proxy, a state in the shared control store), by
 * bounded polling; nothing asserts a duration.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { initDevFile } from '../../src/keyd/root/dev-file.ts';
import { type FaultProxy, startFaultProxy } from '../backup/fault-proxy.ts';
import {
  type LocalS3,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startLocalS3,
} from '../backup/s3-server.ts';
import { bootstrapClusterAdmin, type ClusterNode, startNode, stopNode } from '../helpers/cluster-node.ts';
import { operatorToken } from '../helpers/console.ts';
import { type KeydProcess, startKeyd } from '../helpers/keyd-process.ts';
import { type FreshPgDatabase, freshPgDatabase, testPgPrefix } from '../helpers/pg.ts';
import type { TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor, withDeadline } from '../helpers/wait.ts';

/** The schedule: a backup every 12 s (a tick while one runs is skipped). */
const INTERVAL_MINUTES = 0.2;

interface BackupView {
  id: string;
  trigger: string;
  startedAt: string;
  endedAt: string | null;
  outcome: string;
  errorCode: string | null;
  verification: { result: string } | null;
}

interface JobView {
  name: string;
  runs: number;
  lastOutcome?: string;
}

describe('backup recovery on two nodes of one PostgreSQL database', () => {
  let database: FreshPgDatabase | undefined;
  let root: string | undefined;
  let keyd: KeydProcess | undefined;
  let s3: LocalS3 | undefined;
  let proxy: FaultProxy | undefined;
  let a: ClusterNode | undefined;
  let b: ClusterNode | undefined;
  let env: NodeJS.ProcessEnv;
  let jobsToken: string;
  let backupsToken: string;
  /** Node B's runs of backup.recover once it listened (its start-up run). */
  let recoverRunsAtStart = 0;

  before(async () => {
    database = await freshPgDatabase({ prefix: testPgPrefix('h_pgrecover') });
    root = mkdtempSync(join(tmpdir(), 'tresor-pgcluster-recover-'));
    const keydDir = join(root, 'keyd');
    mkdirSync(keydDir, { recursive: true, mode: 0o700 });
    initDevFile(keydDir);
    const keydSocket = join(keydDir, 'keyd.sock');
    keyd = await startKeyd(
      ['--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file'],
      { kind: 'unix', path: keydSocket },
      { TRESOR_KEYD_SOCKET: keydSocket },
    );
    s3 = await startLocalS3('recover');
    proxy = await startFaultProxy(Number(new URL(s3.endpoint).port));
    const secrets = join(root, 's3');
    mkdirSync(secrets, { mode: 0o700 });
    writeFileSync(join(secrets, 'key-id'), S3RVER_ACCESS_KEY_ID, { mode: 0o600 });
    writeFileSync(join(secrets, 'secret'), S3RVER_SECRET_ACCESS_KEY, { mode: 0o600 });
    const admin = await bootstrapClusterAdmin(join(root, 'a'), database.url);
    env = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
    Object.assign(env, {
      NO_COLOR: '1',
      TRESOR_KEYD_SOCKET: keydSocket,
      TRESOR_PORT: '0',
      TRESOR_HOST: '127.0.0.1',
      TRESOR_LOG_LEVEL: 'warn',
      TRESOR_AUDIT_DISK_RESERVE_BYTES: String(1024 * 1024),
      TRESOR_DATABASE_URL: database.url,
      TRESOR_BACKUP_INTERVAL_MINUTES: String(INTERVAL_MINUTES),
      TRESOR_BACKUP_VERIFY_INTERVAL_MINUTES: '0',
      // One bucket for the deployment, behind the proxy the test holds.
      TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
        {
          name: 's3',
          kind: 's3',
          endpoint: proxy.endpoint,
          region: 'us-east-1',
          bucket: s3.bucket,
          forcePathStyle: true,
          accessKeyIdFile: join(secrets, 'key-id'),
          secretAccessKeyFile: join(secrets, 'secret'),
        },
      ]),
    });
    // Node A alone first: it takes the lease, so the scheduled backups are its.
    a = await startNode('A', join(root, 'a'), env);
    const nodeA = a;
    const stackA = { url: nodeA.url, caFile: nodeA.caFile, request: nodeA.request, admin };
    // Tokens live in the shared control store: node B accepts them after A is gone.
    jobsToken = await operatorToken(stackA as unknown as TresorStack, 'jobs:read');
    backupsToken = await operatorToken(stackA as unknown as TresorStack, 'backups:read');
  });

  after(async () => {
    proxy?.release();
    await stopNode(b).catch(() => undefined);
    await stopNode(a).catch(() => undefined);
    await proxy?.close().catch(() => undefined);
    await s3?.remove().catch(() => undefined);
    await keyd?.stop().catch(() => undefined);
    await database?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const job = async (node: ClusterNode, name: string): Promise<JobView | undefined> => {
    const res = await node.request('GET', '/v1/system/jobs', { token: jobsToken });
    assert.equal(res.status, 200, res.text);
    return res.json<{ jobs: JobView[] }>().jobs.find((j) => j.name === name);
  };
  const runs = async (node: ClusterNode): Promise<BackupView[]> => {
    const res = await node.request('GET', '/v1/backups?limit=1000', { token: backupsToken });
    assert.equal(res.status, 200, res.text);
    return res
      .json<{ backups: BackupView[] }>()
      .backups.sort((x, y) => x.startedAt.localeCompare(y.startedAt));
  };
  const run = async (node: ClusterNode, id: string): Promise<BackupView | undefined> =>
    (await runs(node)).find((r) => r.id === id);
  /** A scheduled run by the lease holder, `running`, its first chunk's PUT held at the proxy. */
  const heldRun = async (node: ClusterNode, after: Set<string>): Promise<BackupView> =>
    waitFor(
      'a scheduled backup running, its chunk PUT held at the proxy',
      async () => {
        const running = (await runs(node)).find((r) => r.outcome === 'running' && !after.has(r.id));
        if (running === undefined) return undefined;
        return proxy?.seen().includes(`PUT /${s3?.bucket}/${running.id}/chunk-000000`) ? running : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 100 },
    );

  test("a starting node leaves a live node's running backup alone; it completes done", async () => {
    const nodeA = a as ClusterNode;
    (proxy as FaultProxy).setMode('hold');
    const held = await heldRun(nodeA, new Set());

    b = await startNode('B', join(root as string, 'b'), env);
    const nodeB = b;
    // B's start-up recovery ran (before it listened), and succeeded…
    const recover = await job(nodeB, 'backup.recover');
    assert.equal(recover?.runs, 1, JSON.stringify(recover));
    assert.equal(recover?.lastOutcome, 'success', JSON.stringify(recover));
    recoverRunsAtStart = recover.runs;
    // …and left A's run running (its PUT is still held: it cannot have ended meanwhile).
    assert.equal((await run(nodeB, held.id))?.outcome, 'running');

    (proxy as FaultProxy).release();
    const ended = await waitFor(
      "A's held backup to end and be verified",
      async () => {
        const view = await run(nodeB, held.id);
        return view && view.outcome !== 'running' && view.verification !== null ? view : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    assert.equal(ended.outcome, 'done', JSON.stringify(ended));
    assert.equal(ended.verification?.result, 'passed', JSON.stringify(ended));
    assert.equal((await job(nodeB, 'backup.run'))?.runs ?? 0, 0, 'node B (no lease) ran no backup');
  });

  test('after kill -9 of a node mid-backup, the surviving lease holder marks its run interrupted, and the next scheduled backup runs', async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    // Every run so far has ended and been verified (nothing reads through the proxy when it holds).
    const before = await waitFor(
      'every run so far ended and verified',
      async () => {
        const all = await runs(nodeA);
        return all.every((r) => r.outcome !== 'running' && r.verification !== null)
          ? new Set(all.map((r) => r.id))
          : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    (proxy as FaultProxy).setMode('hold');
    const held = await heldRun(nodeA, before);
    const killedAt = Date.now();
    nodeA.proc.kill('SIGKILL');
    await withDeadline('node A to die', nodeA.exited);
    (proxy as FaultProxy).setMode('pass');

    // No node restarts: B's periodic recovery (as lease holder, before its scheduled backup) marks it.
    const cut = await waitFor(
      "A's run marked interrupted by node B",
      async () => {
        const view = await run(nodeB, held.id);
        return view && view.outcome !== 'running' ? view : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    assert.equal(cut.outcome, 'interrupted', JSON.stringify(cut));
    const recover = await job(nodeB, 'backup.recover');
    assert.ok((recover?.runs ?? 0) > recoverRunsAtStart, JSON.stringify(recover));
    assert.equal(
      s3?.storedFiles().filter((f) => f.path.includes(held.id)).length,
      0,
      'its partial objects removed',
    );

    const next = await waitFor(
      'a scheduled backup by node B after the kill, ended and verified',
      async () => {
        const fresh = (await runs(nodeB)).filter(
          (r) => r.trigger === 'schedule' && Date.parse(r.startedAt) >= killedAt,
        );
        return fresh.find((r) => r.outcome !== 'running' && r.verification !== null);
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    assert.equal(next.outcome, 'done', JSON.stringify(next));
    assert.equal(next.verification?.result, 'passed', JSON.stringify(next));
    assert.ok(((await job(nodeB, 'backup.run'))?.runs ?? 0) >= 1);
  });
});
