/**
 * Two Tresor nodes on one PostgreSQL database (`--only pg-nodes`): the write throughput of two
 * server processes behind no load balancer (each gets half the connections) as a ratio of one
 * (docs/operations.md, several server processes on one PostgreSQL). Both nodes use one keyd (a Unix
 * socket) and one fresh database (bench/pg-database.ts); node A makes the tenant and its collection,
 * node B serves the same tenant with the same API key. Measured in the order one node, two nodes,
 * one node again, each after a warm-up; the one-node rate is the mean of its two windows, so a
 * drift of the machine's speed during the run weighs on both sides.
 *
 * On a 2-core machine the load generator, keyd, PostgreSQL and both nodes share the same cores: the
 * ratio says what a second process buys when the first does not use all cores (Node runs requests on
 * one thread), not what a second machine would.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { ensureDevTls } from '../src/config/dev-tls.ts';
import { startChild, startDevKeyd } from './children.ts';
import {
  COLLECTION,
  COLLECTION_DECLARATION,
  expectStatus,
  httpsJson,
  type LoadRun,
  load,
  recordTemplate,
  requestsFor,
  type Target,
} from './http.ts';
import type { TresorChildAddress, TresorChildArgs } from './http-tresor-child.ts';
import { baselineFigure, compared, figure, type Section } from './report.ts';

export interface PgNodesOptions {
  dir: string;
  databaseUrl: string;
  seconds: number;
  concurrency: number;
  logLevel: string;
  progress(message: string): void;
  onCleanup(step: () => Promise<void>): void;
}

export async function benchPgNodes(options: PgNodesOptions): Promise<Section> {
  const { dir, progress } = options;
  const { keyd, socket: keydSocket } = await startDevKeyd('keyd (nodes)', dir, 'nodes-keyd');
  options.onCleanup(() => keyd.stop());

  const node = async (name: string, tenant?: { id: string; apiKey: string }) => {
    const dataDir = join(dir, `node-${name}`);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const tls = await ensureDevTls(dataDir);
    const logFile = join(dir, `node-${name}.log`);
    const args: TresorChildArgs = {
      dataDir,
      keydSocket,
      databaseUrl: options.databaseUrl,
      logLevel: options.logLevel,
      ...(tenant ? { tenant } : {}),
    };
    const child = await startChild<TresorChildAddress>(
      `Tresor node ${name}`,
      'bench/http-tresor-child.ts',
      args,
      logFile,
    );
    options.onCleanup(() => child.stop());
    const target: Target = {
      kind: 'tresor',
      label: `Tresor node ${name}`,
      url: new URL(child.address.url),
      authorization: `Bearer ${child.address.apiKey}`,
      pid: child.pid,
      keydPid: keyd.pid,
      logFile,
      filled: [],
      // Each node writes emails of its own range.
      next: name === 'a' ? 0 : 1_000_000_000,
    };
    return { child, target, ca: readFileSync(tls.caFile) };
  };

  progress('pg-nodes: starting keyd and node A');
  const a = await node('a');
  const agent = new Agent({ ca: a.ca, keepAlive: false });
  try {
    const put = await httpsJson(
      agent,
      a.target,
      'PUT',
      `/v1/collections/${COLLECTION}`,
      COLLECTION_DECLARATION,
    );
    expectStatus(a.target, 'PUT collection', put, 201);
  } finally {
    agent.destroy();
  }
  progress('pg-nodes: starting node B on the same database, serving the same tenant');
  const b = await node('b', { id: a.child.address.tenant, apiKey: a.child.address.apiKey });

  const template = recordTemplate();
  const warmUp = Math.min(1, options.seconds / 4);
  const c = options.concurrency;
  const half = Math.max(1, Math.floor(c / 2));
  const oneNode = async (): Promise<LoadRun> => {
    const requests = requestsFor('write', a.target, template);
    await load(a.target, 'write warm-up', requests, c, { seconds: warmUp }, a.ca);
    return load(a.target, 'write', requests, c, { seconds: options.seconds }, a.ca);
  };
  const twoNodes = async (): Promise<[LoadRun, LoadRun]> => {
    const ra = requestsFor('write', a.target, template);
    const rb = requestsFor('write', b.target, template);
    await Promise.all([
      load(a.target, 'write warm-up', ra, half, { seconds: warmUp }, a.ca),
      load(b.target, 'write warm-up', rb, half, { seconds: warmUp }, b.ca),
    ]);
    return Promise.all([
      load(a.target, 'write', ra, half, { seconds: options.seconds }, a.ca),
      load(b.target, 'write', rb, half, { seconds: options.seconds }, b.ca),
    ]);
  };

  progress(`pg-nodes: writes, concurrency ${c}, one node`);
  const first = await oneNode();
  progress(`pg-nodes: writes, concurrency ${half} per node, two nodes`);
  const [onA, onB] = await twoNodes();
  progress(`pg-nodes: writes, concurrency ${c}, one node again`);
  const last = await oneNode();

  const single = (first.rate.opsPerSecond + last.rate.opsPerSecond) / 2;
  const both = onA.rate.opsPerSecond + onB.rate.opsPerSecond;
  const baseline = baselineFigure('one node (mean of the windows before and after)', {
    ...first.rate,
    opsPerSecond: single,
  });
  const together = { ...onA.rate, opsPerSecond: both, operations: onA.rate.operations + onB.rate.operations };
  return {
    id: 'pg-nodes',
    title: 'Two server nodes on one PostgreSQL database, POST records (1 KiB), HTTPS',
    groups: [
      {
        title: `writes, ${c} connections in all`,
        figures: [
          baseline,
          figure('one node, before', first.rate),
          figure('one node, after', last.rate),
          figure(`two nodes (${half} connections each): node A`, onA.rate),
          figure(`two nodes (${half} connections each): node B`, onB.rate),
          compared('two nodes together', together, baseline),
        ],
      },
    ],
    facts: [{ name: 'two nodes ÷ one node', value: Math.round((both / single) * 100) / 100, unit: '×' }],
    notes: [
      'Both nodes, keyd, PostgreSQL and the load generator share this machine’s cores: the ratio shows what a second process gains while one Node thread per node is the limit, not what a second machine would.',
      'Every answer was 2xx (a run with any other fails).',
    ],
  };
}
