/**
 * TEST-ONLY. Runs the `tresor` command as operators do — bin/tresor.js as a child process, with the
 * developer's TRESOR_* variables removed so each run is hermetic — and reads a deployment's audit
 * log from its control store (read-only, beside the running server, as SQLite WAL allows).
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { leafTexts } from '../../src/audit/leaf-codec.ts';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

const RUN_TIMEOUT_MS = 60_000;

export function tresor(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
  Object.assign(env, { NO_COLOR: '1' }, opts.env);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TRESOR_BIN, ...args], { env, timeout: RUN_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString('utf8');
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** Asserts the run's exit code, showing its output when it differs. */
export function exited(run: Run, code: number): Run {
  assert.equal(run.status, code, `exit ${run.status}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return run;
}

/** No secret in the run's stdout or stderr. */
export function leaksNone(run: Run, secrets: readonly string[]): void {
  for (const s of secrets) {
    assert.equal(run.stdout.includes(s), false, 'a secret on stdout');
    assert.equal(run.stderr.includes(s), false, 'a secret on stderr');
  }
}

export interface LogEntry {
  action: string;
  actor: { kind: string; id: string };
  outcome: string;
  target?: Record<string, unknown>;
}

/** The sequenced audit entries of a data folder's control store, now. */
export function auditLog(dataDir: string): LogEntry[] {
  const db = new Database(join(dataDir, 'control.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT block FROM audit_leaves ORDER BY idx').all() as { block: Buffer }[];
    return rows.flatMap((r) => leafTexts(r.block).map((leaf) => JSON.parse(leaf) as LogEntry));
  } finally {
    db.close();
  }
}

/**
 * Waits, at most `timeoutMs`, until the log holds an entry `match` accepts. The sequencer of
 * another process cannot be awaited from here without a credential that reads the audit stream,
 * so this reads the durable log every 100 ms: each read is the answer, never a guess by time.
 */
export async function untilLogged(
  dataDir: string,
  what: string,
  match: (e: LogEntry) => boolean,
  timeoutMs = 20_000,
): Promise<LogEntry> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = auditLog(dataDir).find(match);
    if (found) return found;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} in the audit log`);
    await sleep(100);
  }
}
