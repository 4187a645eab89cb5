/**
 * A `tresor server --json` process as one node of a deployment on one PostgreSQL database (the
 * two-node tests: test/e2e/pg-cluster*.test.ts): spawned on its own data folder, resolved once it
 * listens, stopped with SIGTERM (SIGKILL past a deadline).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ensureDevTls } from '../../src/config/dev-tls.ts';
import { createAccountService } from '../../src/identity/accounts.ts';
import { openControlOf } from '../../src/server/backend.ts';
import { TRESOR_BIN } from './keyd-process.ts';
import { httpsRequester, type Requester, type TresorStack } from './tresor-stack.ts';
import { withDeadline } from './wait.ts';

const START_TIMEOUT_MS = 90_000;

export interface ClusterNode {
  name: string;
  dataDir: string;
  caFile: string;
  url: string;
  request: Requester & { agent: { destroy(): void } };
  proc: ChildProcess;
  exited: Promise<void>;
  output(): string;
}

/**
 * The first operator admin, made in the shared control store on `databaseUrl` as `tresor dev` makes
 * it (its enrolment token for the console helpers).
 */
export async function bootstrapClusterAdmin(
  dataDir: string,
  databaseUrl: string,
): Promise<TresorStack['admin']> {
  const control = await openControlOf({ dataDir, database: { kind: 'postgres', url: databaseUrl } });
  try {
    const made = await createAccountService({ control, now: () => new Date() }).createPerson(
      { kind: 'system', job: 'bootstrap' },
      { side: 'operator', role: 'operator-admin', email: 'admin@tresor.test' },
    );
    return { email: made.person.email, personId: made.person.id, enrolmentToken: made.enrolmentToken };
  } finally {
    await control.close();
  }
}

/** Spawns `tresor server --json` on `dataDir` and resolves once it listens. */
export async function startNode(name: string, dataDir: string, env: NodeJS.ProcessEnv): Promise<ClusterNode> {
  const tls = await ensureDevTls(dataDir);
  const proc = spawn(process.execPath, [TRESOR_BIN, 'server', '--json', '--data-dir', dataDir], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let output = '';
  let stdout = '';
  const url = await withDeadline(
    `node ${name} to listen`,
    new Promise<string>((resolve, reject) => {
      proc.stdout?.setEncoding('utf8');
      proc.stderr?.setEncoding('utf8');
      proc.stderr?.on('data', (d: string) => {
        output += d;
      });
      proc.stdout?.on('data', (d: string) => {
        output += d;
        stdout += d;
        const line = stdout.split('\n').find((l) => l.startsWith('{"url":'));
        if (line) resolve((JSON.parse(line) as { url: string }).url);
      });
      void exited.then(() => reject(new Error(`node ${name} exited during start:\n${output}`)));
    }),
    START_TIMEOUT_MS,
    () => proc.kill('SIGKILL'),
  );
  const request = httpsRequester(() => url, readFileSync(tls.caFile));
  return { name, dataDir, caFile: tls.caFile, url, request, proc, exited, output: () => output };
}

export async function stopNode(node: ClusterNode | undefined): Promise<void> {
  if (!node) return;
  node.request.agent.destroy();
  if (node.proc.exitCode === null && node.proc.signalCode === null) node.proc.kill('SIGTERM');
  await withDeadline(`node ${node.name} to stop`, node.exited, 30_000, () => node.proc.kill('SIGKILL'));
}
