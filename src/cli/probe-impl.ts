/** `tresor probe` and `tresor probe --report` (probe.ts has the usage). */
import { availability } from '../probe/availability.ts';
import { runProbe } from '../probe/probe.ts';
import { appendProbeResult, readProbeResults } from '../probe/probe-log.ts';
import { bearerToken, httpsBase, readCa } from './api-client.ts';
import { out, usageError } from './io.ts';
import { table } from './table.ts';

const COMMAND = 'tresor probe';
const COLLECTION = /^[a-z][a-z0-9_]{0,62}$/;

export interface ProbeFlags {
  url?: string;
  caFile?: string;
  tokenFile?: string;
  collection?: string;
  interval?: string;
  count?: string;
  log?: string;
  json?: boolean;
  report?: boolean;
  objective?: string;
}

function number(
  flag: string,
  text: string | undefined,
  fallback: number,
  ok: (n: number) => boolean,
): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || !ok(n)) throw usageError(COMMAND, `${flag} is out of range`);
  return n;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function probeCommand(flags: ProbeFlags): Promise<void> {
  const url = httpsBase(COMMAND, flags.url ?? process.env.TRESOR_URL);
  const ca = readCa(COMMAND, flags.caFile ?? process.env.TRESOR_CA_FILE);
  const apiKey = bearerToken(COMMAND, flags.tokenFile);
  if (apiKey === undefined) throw usageError(COMMAND, 'no API key: set TRESOR_TOKEN or give --token-file');
  const collection = flags.collection ?? 'tresor_probe';
  if (!COLLECTION.test(collection)) throw usageError(COMMAND, '--collection must be a collection name');
  const intervalMs = number('--interval', flags.interval, 60, (n) => n >= 0.1 && n <= 86_400) * 1000;
  const count = number('--count', flags.count, 1, (n) => Number.isSafeInteger(n) && n >= 0);
  const target = { url, ca, apiKey, collection, deadlineMs: 10_000, auditWaitMs: 10_000 };

  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let failures = 0;
  try {
    for (let i = 0; (count === 0 || i < count) && !stopping; i++) {
      const started = Date.now();
      const result = await runProbe(target);
      if (!result.ok) failures += 1;
      if (flags.log !== undefined) appendProbeResult(flags.log, result);
      if (flags.json) out(result, true);
      else
        out(
          result.ok
            ? `${result.at} ok ${Object.entries(result.ms)
                .map(([step, ms]) => `${step}=${ms}ms`)
                .join(' ')}`
            : `${result.at} FAILED at ${result.failed?.step}: ${result.failed?.why}`,
          false,
        );
      const last = count !== 0 && i === count - 1;
      if (!last && !stopping) await sleep(Math.max(0, started + intervalMs - Date.now()));
    }
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  }
  process.exitCode = failures > 0 ? 1 : 0;
}

function percent(value: number | null): string {
  return value === null ? '-' : `${(value * 100).toFixed(3)} %`;
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${(s / 60).toFixed(1)} min`;
}

export async function reportCommand(flags: ProbeFlags): Promise<void> {
  if (flags.log === undefined) throw usageError(COMMAND, '--report needs --log, the file the probes wrote');
  const intervalMs = number('--interval', flags.interval, 60, (n) => n >= 0.1 && n <= 86_400) * 1000;
  const objective = number('--objective', flags.objective, 0.999, (n) => n > 0 && n < 1);
  const report = availability(readProbeResults(flags.log), {
    now: new Date(),
    intervalMs,
    objective,
    gaps: 'unobserved',
  });
  if (flags.json) out(report, true);
  else {
    out(
      table(
        ['DAY (UTC)', 'PROBES', 'FAILED', 'DOWN', 'AVAILABILITY'],
        report.days.map((d) => [
          d.from.slice(0, 10),
          d.probes,
          d.failed,
          duration(d.downMs),
          percent(d.availability),
        ]),
      ),
      false,
    );
    const l = report.last30Days;
    out(
      `last 30 days: ${percent(l.availability)} over ${duration(l.observedMs)} observed (objective ${percent(objective)}); ` +
        `error budget ${duration(l.errorBudget.allowedDownMs)}, used ${duration(l.errorBudget.usedDownMs)}, ` +
        `left ${duration(l.errorBudget.remainingDownMs)}`,
      false,
    );
  }
  process.exitCode = report.last30Days.meetsObjective === false ? 1 : 0;
}
