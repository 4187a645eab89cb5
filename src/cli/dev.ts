/**
 * `tresor dev` (what `npm start` runs): the whole stack on embedded defaults. keyd runs as its own
 * child process with the dev-only root key file in `<data dir>/keyd`, on a 0600 Unix socket.
 * Ctrl-C stops every process cleanly; a second start reuses the data folder.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { createKeydClient } from '../keyd/client.ts';
import { devFileInitialised, initDevFile } from '../keyd/root/dev-file.ts';
import { info, out, warn } from './io.ts';

const BIN = fileURLToPath(new URL('../../bin/tresor.js', import.meta.url));

export interface DevStack {
  dataDir: string;
  keydDir: string;
  keydSocket: string;
  stop(): Promise<void>;
}

function waitForExit(child: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) res();
    else child.once('exit', () => res());
  });
}

/** Starts keyd as a child process and waits until it answers on its socket. */
export async function startDevStack(dataDir: string): Promise<DevStack> {
  const keydDir = join(dataDir, 'keyd');
  mkdirSync(keydDir, { recursive: true, mode: 0o700 });
  if (!devFileInitialised(keydDir)) initDevFile(keydDir);
  const keydSocket = join(keydDir, 'keyd.sock');
  const keyd = spawn(process.execPath, [BIN, 'keyd', 'serve', '--provider', 'dev-file', '--dir', keydDir], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, TRESOR_KEYD_SOCKET: keydSocket },
  });
  const exited = waitForExit(keyd);

  const client = createKeydClient({
    connect: { kind: 'unix', path: keydSocket },
    clientName: 'tresor-dev',
    retries: 8,
  });
  try {
    const status = await Promise.race([
      client.call('health', {}),
      exited.then(() => {
        throw new Error('keyd exited during start');
      }),
    ]);
    if (status.status !== 'ok') throw new Error(`keyd is ${status.status}`);
  } finally {
    await client.close();
  }

  return {
    dataDir,
    keydDir,
    keydSocket,
    async stop() {
      if (keyd.exitCode === null && keyd.signalCode === null) keyd.kill('SIGTERM');
      await exited;
    },
  };
}

export function registerDevCommand(program: Command): void {
  program
    .command('dev')
    .description('run the whole stack on embedded defaults (what `npm start` runs)')
    .option(
      '--data-dir <folder>',
      'data folder; env TRESOR_DATA_DIR',
      process.env.TRESOR_DATA_DIR ?? '.tresor-data',
    )
    .option('--json', 'print the stack description as JSON')
    .action(async (flags: { dataDir: string; json?: boolean }) => {
      const dataDir = resolve(flags.dataDir);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const stack = await startDevStack(dataDir);
      const description = {
        dataDir,
        keyd: { dir: stack.keydDir, socket: stack.keydSocket, provider: 'dev-file' },
      };
      warn('DEV STACK: keyd uses the plain root key file in the data folder. Never use this in production.');
      if (flags.json) out(description, true);
      else {
        info(`tresor dev: data folder ${dataDir}`);
        info(`keyd: ${stack.keydSocket} (Unix socket, mode 0600)`);
        info(`try: npx tresor keyd status --socket ${stack.keydSocket}`);
        info('Ctrl-C stops every process.');
      }
      let stopping = false;
      await new Promise<void>((res) => {
        const stop = () => {
          if (stopping) return;
          stopping = true;
          info('stopping…');
          void stack.stop().then(res);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
