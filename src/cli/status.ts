/**
 * `tresor status`: the server's background jobs, from the operator's host, over HTTPS.
 *
 *   TRESOR_TOKEN=… tresor status --url https://vault.example:8443 [--ca-file ca.pem] [--json]
 *   tresor status --url … --token-file /run/secrets/tresor-token
 *
 * It asks GET /v1/system/jobs with an operator token of scope `jobs:read` (made by an operator
 * admin: POST /v1/operator-tokens; no other scope reaches the jobs) and prints each job's
 * name, runs, failures, last success and last error (time and code). The token comes from
 * --token-file or TRESOR_TOKEN, never from the command line (argv is visible to every user of the
 * host), and is never printed. Only https URLs are accepted: the token never travels in clear.
 *
 * Exit codes: 0 the server answered and no job's last run failed; 1 some job's last run failed, or
 * the server refused or answered something else; 2 usage; 3 no answer (connection refused,
 * unknown host, TLS failure, no answer within the deadline).
 */
import type { Command } from 'commander';
import type { JobsBody } from '../http/routes/jobs.ts';
import { bearerToken, httpsBase, printable, readCa, send } from './api-client.ts';
import { out, usageError, warn } from './io.ts';
import { table } from './table.ts';

const COMMAND = 'tresor status';
const JOBS_PATH = '/v1/system/jobs';

interface StatusFlags {
  url: string;
  caFile?: string;
  tokenFile?: string;
  json?: boolean;
}

function isJobsBody(value: unknown): value is JobsBody {
  const jobs = (value as { jobs?: unknown } | null)?.jobs;
  return (
    Array.isArray(jobs) &&
    jobs.every(
      (j) =>
        typeof j === 'object' &&
        j !== null &&
        typeof (j as { name?: unknown }).name === 'string' &&
        typeof (j as { runs?: unknown }).runs === 'number' &&
        typeof (j as { failures?: unknown }).failures === 'number',
    )
  );
}

function jobsTable(body: JobsBody): string {
  return table(
    ['JOB', 'RUNS', 'FAILURES', 'LAST RUN', 'LAST SUCCESS', 'LAST ERROR'],
    body.jobs.map((j) => [
      j.name,
      j.runs,
      j.failures,
      j.lastOutcome === 'failure' ? 'FAILED' : j.lastOutcome === 'success' ? 'ok' : 'running',
      j.lastSuccess ?? '-',
      j.lastError ? `${j.lastError.at} ${j.lastError.code}` : '-',
    ]),
  );
}

async function statusCommand(flags: StatusFlags): Promise<void> {
  const base = httpsBase(COMMAND, flags.url);
  const ca = readCa(COMMAND, flags.caFile);
  const token = bearerToken(COMMAND, flags.tokenFile);
  if (token === undefined) throw usageError(COMMAND, 'no token: set TRESOR_TOKEN or give --token-file');
  const url = new URL(JOBS_PATH, base);

  const outcome = await send(url, { method: 'GET', headers: { authorization: `Bearer ${token}` }, ca });
  if (outcome.kind === 'unreachable') {
    warn(`tresor status: cannot reach ${url.origin}: ${outcome.why}`);
    process.exitCode = 3;
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse(outcome.text);
  } catch {
    body = undefined;
  }
  if (outcome.status !== 200 || !isJobsBody(body)) {
    const code = (body as { code?: unknown } | undefined)?.code;
    warn(
      `tresor status: ${url.origin} answered ${outcome.status}${typeof code === 'string' ? ` ${printable(code)}` : ''}`,
    );
    process.exitCode = 1;
    return;
  }
  if (flags.json) out(body, true);
  else out(body.jobs.length === 0 ? 'no background job has run yet' : jobsTable(body), false);
  process.exitCode = body.jobs.some((j) => j.lastOutcome === 'failure') ? 1 : 0;
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description(
      "the server's background jobs: runs, failures, last success, last error (GET /v1/system/jobs)",
    )
    .requiredOption('--url <https-url>', "the server's HTTPS origin, e.g. https://vault.example:8443")
    .option('--ca-file <pem>', "trust only this CA for the server's certificate (default: the system's CAs)")
    .option(
      '--token-file <file>',
      'file holding an operator token of scope jobs:read (else env TRESOR_TOKEN; never on the command line)',
    )
    .option('--json', 'machine-readable output: the answer of GET /v1/system/jobs')
    .addHelpText(
      'after',
      [
        '',
        'Exit codes:',
        "  0  the server answered, and no job's last run failed",
        "  1  some job's last run failed (its LAST RUN reads FAILED), or the server refused the request",
        '  2  usage (bad flags, no token)',
        '  3  the server cannot be reached (refused, unknown host, TLS failure, no answer in 10 s)',
      ].join('\n'),
    )
    .action(statusCommand);
}
