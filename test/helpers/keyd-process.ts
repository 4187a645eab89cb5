/**
 * Runs the real `tresor keyd` as its own process, as operators and `npm start` do, and talks to
 * it over its real channel. Used by the end-to-end keyd tests.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createKeydClient, type KeydClient, type KeydConnectTarget } from '../../src/keyd/client.ts';

export const TRESOR_BIN = join(import.meta.dirname, '..', '..', 'bin', 'tresor.js');

export interface KeydProcess {
  proc: ChildProcess;
  stderr(): string;
  client(target?: KeydConnectTarget, clientName?: string): KeydClient;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL (kill -9) and wait. */
  kill9(): Promise<void>;
  exited: Promise<number | null>;
}

/** Runs a `tresor` command to completion; stdin is fed from `input`. */
export function tresor(
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv } = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TRESOR_BIN, ...args], {
    input: opts.input ?? '',
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `tresor keyd serve` with the given flags and waits until its channel answers `status`. */
export async function startKeyd(
  args: string[],
  connect: KeydConnectTarget,
  env: NodeJS.ProcessEnv = {},
): Promise<KeydProcess> {
  const proc = spawn(process.execPath, [TRESOR_BIN, 'keyd', 'serve', ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString('utf8');
  });
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const clients: KeydClient[] = [];
  const handle: KeydProcess = {
    proc,
    exited,
    stderr: () => err,
    client(target = connect, clientName = 'test') {
      const c = createKeydClient({ connect: target, clientName, retries: 2, timeoutMs: 10_000 });
      clients.push(c);
      return c;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.close()));
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      proc.kill('SIGKILL');
      await exited;
      await Promise.all(clients.map((c) => c.close()));
    },
  };
  // Wait for readiness: the process answers status, or exits (a failed start).
  const probe = createKeydClient({ connect, clientName: 'probe', retries: 0, timeoutMs: 2000 });
  try {
    for (let attempt = 0; ; attempt++) {
      const outcome = await Promise.race([
        probe.call('status', {}).then(
          () => 'up' as const,
          () => 'down' as const,
        ),
        exited.then(() => 'exited' as const),
      ]);
      if (outcome === 'up') break;
      if (outcome === 'exited') throw new Error(`keyd exited during start: ${err}`);
      if (attempt > 150) throw new Error(`keyd did not answer: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await probe.close();
  }
  return handle;
}
