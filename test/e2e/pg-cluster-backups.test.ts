// backends: postgres (two server processes share one PostgreSQL database)
// drill: backups of a cluster while its nodes are killed
/**
 * Scheduled backups on two `tresor server` nodes of one PostgreSQL database (issue 18): each node
 * keeps its own backup timer, but a tick runs a backup only in the holder of the job lease (the
 * audit sequencer's lease, src/server/jobs.ts). With a schedule of a few seconds:
 *   - while both live, every scheduled backup run in the shared control store is node A's (A took
 *     the lease, starting first): A's `backup.run` job runs as many times as there are scheduled
 *     runs, B's never runs, and no two scheduled runs overlap — one run per slot across both nodes;
 *   - after kill -9 of node A, node B runs the next scheduled backups, done and verified.
 * Both nodes share one keyd and one backup folder. Every wait is bounded polling; nothing asserts a
 * duration.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { initDevFile } from '../../src/keyd/root/dev-file.ts';
import { bootstrapClusterAdmin, type ClusterNode, startNode, stopNode } from '../helpers/cluster-node.ts';
import { operatorToken } from '../helpers/console.ts';
import { type KeydProcess, startKeyd } from '../helpers/keyd-process.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';
import type { TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor, withDeadline } from '../helpers/wait.ts';

/** The schedule: a backup every 12 s (a tick while one runs is skipped: backups never overlap). */
const INTERVAL_MINUTES = 0.2;

interface BackupView {
  id: string;
  trigger: string;
  startedAt: string;
  endedAt: string | null;
  outcome: string;
  verification: { result: string } | null;
  /** A background verification of the run is under way (its result not recorded yet). */
  verifying?: boolean;
}

describe('scheduled backups on two nodes of one PostgreSQL database', () => {
  let database: FreshPgDatabase | undefined;
  let root: string | undefined;
  let keyd: KeydProcess | undefined;
  let a: ClusterNode | undefined;
  let b: ClusterNode | undefined;
  let jobsToken: string;
  let backupsToken: string;

  before(async () => {
    database = await freshPgDatabase({ prefix: 'h_pgbak' });
    root = mkdtempSync(join(tmpdir(), 'tresor-pgcluster-backups-'));
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
      TRESOR_BACKUP_INTERVAL_MINUTES: String(INTERVAL_MINUTES),
      // One folder for the deployment, as a shared volume (or an S3 bucket) would be.
      TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
        { name: 'shared', kind: 'folder', path: join(root, 'backups') },
      ]),
    });
    a = await startNode('A', dataA, env);
    b = await startNode('B', dataB, env);
    const nodeA = a;
    const stackA = { url: nodeA.url, caFile: nodeA.caFile, request: nodeA.request, admin };
    // Tokens live in the shared control store: node B accepts them after A is gone.
    jobsToken = await operatorToken(stackA as unknown as TresorStack, 'jobs:read');
    backupsToken = await operatorToken(stackA as unknown as TresorStack, 'backups:read');
  });

  after(async () => {
    await stopNode(b).catch(() => undefined);
    await stopNode(a).catch(() => undefined);
    await keyd?.stop().catch(() => undefined);
    await database?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const backupRuns = async (node: ClusterNode): Promise<number> => {
    const res = await node.request('GET', '/v1/system/jobs', { token: jobsToken });
    assert.equal(res.status, 200, res.text);
    return (
      res.json<{ jobs: { name: string; runs: number }[] }>().jobs.find((j) => j.name === 'backup.run')
        ?.runs ?? 0
    );
  };
  const scheduled = async (node: ClusterNode): Promise<BackupView[]> => {
    const res = await node.request('GET', '/v1/backups?limit=1000', { token: backupsToken });
    assert.equal(res.status, 200, res.text);
    return res
      .json<{ backups: BackupView[] }>()
      .backups.filter((r) => r.trigger === 'schedule')
      .sort((x, y) => x.startedAt.localeCompare(y.startedAt));
  };
  /**
   * The node's runs of `backup.run` equal the finished scheduled runs that `mine` picks, none
   * running or being verified, read at one instant (the count unchanged around the list); polled,
   * bounded. A run by another node would make the list longer than the count for good.
   */
  const countsAgree = async (node: ClusterNode, mine: (r: BackupView) => boolean) =>
    waitFor(
      `node ${node.name}'s backup.run runs to equal the scheduled runs it made`,
      async () => {
        const count = await backupRuns(node);
        const runs = (await scheduled(node)).filter(mine);
        // Neither a run nor its verification under way: the callers assert on the results.
        if (runs.some((r) => r.outcome === 'running' || r.verifying === true)) return undefined;
        return count === runs.length && (await backupRuns(node)) === count ? runs : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
  /** No two runs at once: each starts after the one before it ended. */
  const assertOneAtATime = (runs: BackupView[]) => {
    for (let i = 1; i < runs.length; i++) {
      const before = runs[i - 1] as BackupView;
      const run = runs[i] as BackupView;
      assert.ok(before.endedAt !== null, `run ${before.id} ended before ${run.id} started`);
      assert.ok(
        Date.parse(run.startedAt) >= Date.parse(before.endedAt),
        `run ${run.id} (${run.startedAt}) started after ${before.id} ended (${before.endedAt})`,
      );
    }
  };

  test('while both nodes live, each scheduled backup is run by the lease holder alone: one run per slot', async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    const finished = await waitFor(
      'two scheduled backups done and verified',
      async () => {
        const runs = await scheduled(nodeA);
        const done = runs.filter((r) => r.outcome === 'done' && r.verification !== null);
        return done.length >= 2 && runs.every((r) => r.outcome !== 'running') ? runs : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 500 },
    );
    for (const run of finished) {
      assert.equal(run.outcome, 'done', JSON.stringify(run));
      assert.equal(run.verification?.result, 'passed', JSON.stringify(run));
    }
    assertOneAtATime(finished);
    assert.equal(await backupRuns(nodeB), 0, 'node B (no lease) ran no scheduled backup');
    // Node A's runs of the job are the scheduled runs in the shared store (read until the count and
    // the list agree on one instant: a tick may start a run between the two reads).
    const agreed = await countsAgree(nodeA, () => true);
    assert.ok(agreed.length >= finished.length);
    assert.equal(await backupRuns(nodeB), 0, 'node B (no lease) ran no scheduled backup');
    assert.deepEqual(
      (await scheduled(nodeB)).slice(0, finished.length).map((r) => r.id),
      finished.map((r) => r.id),
      'node B reads the same runs',
    );
  });

  test('after kill -9 of the lease holder, the other node runs the next scheduled backup', async () => {
    const nodeA = a as ClusterNode;
    const nodeB = b as ClusterNode;
    const killedAt = Date.now();
    nodeA.proc.kill('SIGKILL');
    await withDeadline('node A to die', nodeA.exited);
    const ranOnA = (await scheduled(nodeB)).filter((r) => Date.parse(r.startedAt) < killedAt);
    assert.ok(ranOnA.length >= 2);
    assert.equal(await backupRuns(nodeB), 0, 'node B ran nothing before the kill');
    // B's runs start after the kill (it takes the lease when A's session ends); a run A started
    // just before it is not B's (B's recovery marks it interrupted: pg-cluster-backup-recover.test.ts).
    const sinceKill = (runs: BackupView[]) => runs.filter((r) => Date.parse(r.startedAt) >= killedAt);
    await waitFor(
      'a scheduled backup by node B, done and verified',
      async () => {
        const fresh = sinceKill(await scheduled(nodeB));
        return fresh.some((r) => r.outcome === 'done' && r.verification !== null) ? true : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 500 },
    );
    const fresh = await countsAgree(nodeB, (r) => Date.parse(r.startedAt) >= killedAt);
    for (const run of fresh) {
      assert.equal(run.outcome, 'done', JSON.stringify(run));
      assert.equal(run.verification?.result, 'passed', JSON.stringify(run));
    }
    assertOneAtATime(fresh);
  });
});
