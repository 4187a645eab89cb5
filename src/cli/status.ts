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
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { type Command, CommanderError } from 'commander';
import type { JobsBody } from '../http/routes/jobs.ts';
import { hasControlCharacter } from '../text.ts';
import { out, warn } from './io.ts';

const JOBS_PATH = '/v1/system/jobs';
const DEADLINE_MS = 10_000;

interface StatusFlags {
  url: string;
  caFile?: string;
  tokenFile?: string;
  json?: boolean;
}

function usage(message: string): CommanderError {
  warn(`tresor status: ${message}`);
  return new CommanderError(2, 'commander.tresorUsage', `tresor status: ${message}`);
}

function readToken(flags: StatusFlags): string {
  let token: string | undefined;
  if (flags.tokenFile !== undefined) {
    try {
      token = readFileSync(flags.tokenFile, 'utf8').trim();
    } catch (err) {
      throw usage(`cannot read --token-file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  } else {
    token = process.env.TRESOR_TOKEN?.trim();
  }
  if (!token) throw usage('no token: set TRESOR_TOKEN or give --token-file');
  if (hasControlCharacter(token)) throw usage('the token holds a control character');
  return token;
}

type Outcome = { kind: 'answer'; status: number; text: string } | { kind: 'unreachable'; why: string };

function get(url: URL, token: string, ca: Buffer | undefined): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request(
      url,
      {
        method: 'GET',
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        ...(ca ? { ca } : {}),
        signal: AbortSignal.timeout(DEADLINE_MS),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => resolve({ kind: 'unreachable', why: describe(err) }));
        res.on('end', () =>
          resolve({
            kind: 'answer',
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', (err) => resolve({ kind: 'unreachable', why: describe(err) }));
    req.end();
  });
}

/** An error's code (ECONNREFUSED, CERT_HAS_EXPIRED…) or class: never a message that could echo input. */
function describe(err: Error): string {
  if (err.name === 'AbortError' || err.name === 'TimeoutError') return `no answer within ${DEADLINE_MS} ms`;
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' ? code : err.name;
}

/** What the server sent, fit for a terminal: control characters replaced. */
function printable(value: unknown): string {
  const text = String(value);
  return hasControlCharacter(text) ? text.replace(/\p{Cc}/gu, '?') : text;
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

function table(body: JobsBody): string {
  const rows = [['JOB', 'RUNS', 'FAILURES', 'LAST RUN', 'LAST SUCCESS', 'LAST ERROR']];
  for (const j of body.jobs) {
    rows.push([
      printable(j.name),
      String(j.runs),
      String(j.failures),
      j.lastOutcome === 'failure' ? 'FAILED' : j.lastOutcome === 'success' ? 'ok' : 'running',
      printable(j.lastSuccess ?? '-'),
      j.lastError ? printable(`${j.lastError.at} ${j.lastError.code}`) : '-',
    ]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

async function statusCommand(flags: StatusFlags): Promise<void> {
  let base: URL;
  try {
    base = new URL(flags.url);
  } catch {
    throw usage('--url must be an https URL, e.g. https://vault.example:8443');
  }
  if (base.protocol !== 'https:') throw usage('--url must be an https URL (the token never goes in clear)');
  let ca: Buffer | undefined;
  if (flags.caFile !== undefined) {
    try {
      ca = readFileSync(flags.caFile);
    } catch (err) {
      throw usage(`cannot read --ca-file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  const token = readToken(flags);
  const url = new URL(JOBS_PATH, base);

  const outcome = await get(url, token, ca);
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
  else out(body.jobs.length === 0 ? 'no background job has run yet' : table(body), false);
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
