/**
 * The outside prober's record: one JSON line per probe result, appended to a file the operator
 * names (`tresor probe --log`), so availability can be computed later from what was seen. A line
 * that does not parse (a torn write at a crash) is skipped, never fatal.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { PROBE_STEPS, type ProbeResult } from './probe.ts';

export function appendProbeResult(path: string, result: ProbeResult): void {
  appendFileSync(path, `${JSON.stringify(result)}\n`, { mode: 0o600 });
}

function isResult(value: unknown): value is ProbeResult {
  const v = value as Partial<ProbeResult> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.at === 'string' &&
    Number.isFinite(Date.parse(v.at)) &&
    typeof v.ok === 'boolean' &&
    (v.failed === undefined || (PROBE_STEPS as readonly string[]).includes(v.failed.step))
  );
}

export function readProbeResults(path: string): ProbeResult[] {
  if (!existsSync(path)) return [];
  const results: ProbeResult[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const parsed: unknown = JSON.parse(line);
      if (isResult(parsed)) results.push(parsed);
    } catch {
      // A torn last line: skipped.
    }
  }
  return results;
}
