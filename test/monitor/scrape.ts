/**
 * TEST-ONLY. Reading a Prometheus text scrape (the samples, by series) and checking it with the real
 * `promtool check metrics` (Debian package `prometheus`).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { withDeadline } from '../helpers/wait.ts';

/** One sample line: `name{labels} value`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line.slice(0, 80)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when none. */
export function sampleValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const found = samples(text).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** Runs a promtool command (stdin optional); answers its exit code and output. */
export function promtool(args: string[], stdin?: string): Promise<{ code: number | null; output: string }> {
  return tool('promtool', args, stdin);
}

/** Runs a command of the Prometheus tools (promtool, amtool) with a deadline. */
export async function tool(
  command: string,
  args: string[],
  stdin?: string,
): Promise<{ code: number | null; output: string }> {
  const proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    output += d;
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    output += d;
  });
  proc.stdin.end(stdin ?? '');
  const [code] = (await withDeadline(`${command} ${args.join(' ')}`, once(proc, 'close'), 60_000, () =>
    proc.kill('SIGKILL'),
  )) as [number | null];
  return { code, output };
}
