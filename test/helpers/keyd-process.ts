/**
 * Runs the real `tresor keyd` as its own process, as operators and `npm start` do, and talks to
 * it over its real channel. Used by the end-to-end keyd tests.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createKeydClient, type KeydClient, type KeydConnectTarget } from '../../src/keyd/client.ts';
import { withDeadline } from './wait.ts';

export const TRESOR_BIN = join(import.meta.dirname, '..', '..', 'bin', 'tresor.js');
/** keyd compiles its TypeScript on start: seconds on a busy machine, never this long. */
const KEYD_START_TIMEOUT_MS = 60_000;
const KEYD_STOP_TIMEOUT_MS = 20_000;

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

/**
 * Starts `tresor keyd serve` with the given flags and waits until its channel answers `status`.
 * `bin`: another `tresor` bin (the compiled deployment's, test/helpers/deployment.ts).
 */
export async function startKeyd(
  args: string[],
  connect: KeydConnectTarget,
  env: NodeJS.ProcessEnv = {},
  bin: string = TRESOR_BIN,
): Promise<KeydProcess> {
  const proc = spawn(process.execPath, [bin, 'keyd', 'serve', ...args], {
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
      // A keyd that ignores SIGTERM is killed, and the test that met it fails.
      return withDeadline('keyd to stop on SIGTERM', exited, KEYD_STOP_TIMEOUT_MS, () =>
        proc.kill('SIGKILL'),
      );
    },
    async kill9() {
      proc.kill('SIGKILL');
      await exited;
      await Promise.all(clients.map((c) => c.close()));
    },
  };
  // Wait for readiness: the process answers status, or exits (a failed start), or the deadline
  // passes — then the process is killed, so a keyd that never came up is not left running.
  const deadline = Date.now() + KEYD_START_TIMEOUT_MS;
  const probe = createKeydClient({ connect, clientName: 'probe', retries: 0, timeoutMs: 2000 });
  try {
    for (;;) {
      const outcome = await Promise.race([
        probe.call('status', {}).then(
          () => 'up' as const,
          () => 'down' as const,
        ),
        exited.then(() => 'exited' as const),
      ]);
      if (outcome === 'up') break;
      if (outcome === 'exited') throw new Error(`keyd exited during start: ${err}`);
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        await exited;
        throw new Error(`keyd did not answer within ${KEYD_START_TIMEOUT_MS} ms; killed it: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await probe.close();
  }
  return handle;
}
