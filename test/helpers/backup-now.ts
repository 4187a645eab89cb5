/**
 * TEST-ONLY. A backup taken as an operator takes one on demand: `tresor backup now --wait --json`
 * against a running stack, with a `backups:run` and a `backups:read` operator token in files of mode
 * 0600 (tokens never go on a command line). The run must exit 0; its JSON is returned for the test
 * to judge (outcome, trial restore, destinations).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exited, type Run, tresor } from '../cli/cli-run.ts';
import { operatorToken } from './console.ts';
import type { TresorStack } from './tresor-stack.ts';

/** What `tresor backup now --wait --json` prints, as far as the tests read it. */
export interface BackupNowReport {
  id: string;
  outcome: string;
  verification: { result: string; checks?: { name: string; status: string; detail: string }[] } | null;
  destinations: { name: string; state: string }[];
}

export async function backupNow(options: {
  stack: TresorStack;
  /** A folder of the test's own for the two token files. */
  dir: string;
  /** The operator tokens to use; made on the stack when not given. */
  tokens?: { run: string; read: string };
  /** Runs the command (a test that records its runs passes its own); default `tresor` of cli-run.ts. */
  cli?: (args: string[]) => Promise<Run>;
}): Promise<{ run: Run; backup: BackupNowReport }> {
  const { stack, dir } = options;
  const tokens = options.tokens ?? {
    run: await operatorToken(stack, 'backups:run'),
    read: await operatorToken(stack, 'backups:read'),
  };
  const tokenFile = join(dir, 'run-token');
  const readFile = join(dir, 'read-token');
  writeFileSync(tokenFile, `${tokens.run}\n`, { mode: 0o600 });
  writeFileSync(readFile, `${tokens.read}\n`, { mode: 0o600 });
  const cli = options.cli ?? ((args: string[]) => tresor(args));
  const run = exited(
    await cli([
      'backup',
      'now',
      '--wait',
      '--json',
      '--url',
      stack.url,
      '--ca-file',
      stack.caFile,
      '--token-file',
      tokenFile,
      '--read-token-file',
      readFile,
    ]),
    0,
  );
  return { run, backup: JSON.parse(run.stdout) as BackupNowReport };
}
