/**
 * Where the scanners' reports go (reports/security/, git-ignored; scripts/security/run.mjs empties
 * it at the start of a run and prints it at the end), and how a scanner is run: a child process
 * with a time limit, killed with its whole process group when the limit passes, never left running.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '..', '..');

/** reports/security/<name>, its folder made. */
export function reportPath(name: string): string {
  const dir = process.env.TRESOR_SECURITY_REPORTS ?? join(REPO, 'reports', 'security');
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}

export interface ToolRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Whether the time limit stopped it. */
  timedOut: boolean;
}

/**
 * Runs `command` to its end or its time limit. Its own process group, so a scanner's children
 * (testssl.sh forks openssl by the hundred) go with it. NO_COLOR and no proxy from the environment:
 * the machine reaches only its package mirrors, and the tools must not try anything else.
 */
export function runTool(
  command: string,
  args: readonly string[],
  options: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv },
): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, NO_COLOR: '1', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    }, options.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      // Whatever it left behind in its group goes too.
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // nothing left
      }
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}
