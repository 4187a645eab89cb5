/**
 * What a bench run found, as data (for `--json`) and as a table (for people). A figure may name
 * a baseline measured in the same run; its ratio is figure ÷ baseline in operations per second, so
 * 0.5× means half the baseline's throughput.
 */
import type { Rate } from './measure.ts';

export interface Figure {
  name: string;
  rate: Rate;
  /** This figure is the baseline of its group. */
  isBaseline?: true;
  /** The figure (same group) this one is compared with. */
  baseline?: string;
  /** rate.opsPerSecond ÷ the baseline's. */
  ratio?: number;
}

export interface FigureGroup {
  title: string;
  figures: Figure[];
}

/** A number that is not a rate: a ratio, a count, a latency. */
export interface Fact {
  name: string;
  value: number;
  unit: string;
}

export interface Section {
  id: string;
  title: string;
  groups: FigureGroup[];
  facts: Fact[];
  notes: string[];
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  os: string;
  loadAverage: number[];
}

export interface BenchReport {
  startedAt: string;
  durationSeconds: number;
  machine: Machine;
  settings: Record<string, number | string | boolean>;
  sections: Section[];
}

export function figure(name: string, rate: Rate): Figure {
  return { name, rate };
}

export function baselineFigure(name: string, rate: Rate): Figure {
  return { name, rate, isBaseline: true };
}

export function compared(name: string, rate: Rate, baseline: Figure): Figure {
  return { name, rate, baseline: baseline.name, ratio: rate.opsPerSecond / baseline.rate.opsPerSecond };
}

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function formatRatio(ratio: number): string {
  return ratio >= 0.1 ? ratio.toFixed(2) : ratio.toPrecision(2);
}

/** The widest slice deviation from the run's rate, in percent. */
function spread(rate: Rate): string {
  if (rate.opsPerSecond === 0) return '';
  const deviation = Math.max(rate.max - rate.opsPerSecond, rate.opsPerSecond - rate.min);
  return `±${Math.round((100 * deviation) / rate.opsPerSecond)}%`;
}

const NAME_WIDTH = 58;

function row(name: string, ...cells: [string, number][]): string {
  return `${name.padEnd(NAME_WIDTH)}${cells.map(([text, width]) => text.padStart(width)).join('')}`;
}

function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line.length > 0 && line.length + word.length + 1 > width) {
      lines.push(line);
      line = '';
    }
    line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map((l, i) => `${i === 0 ? indent : ' '.repeat(indent.length)}${l}`);
}

export function formatTable(report: BenchReport): string {
  const m = report.machine;
  const out: string[] = [
    `Tresor bench — ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.os}`,
    `started ${report.startedAt}, load average ${m.loadAverage.map((l) => l.toFixed(2)).join(' ')}; ` +
      `${report.settings.seconds} s per figure after a warm-up; ran ${Math.round(report.durationSeconds)} s`,
  ];
  for (const section of report.sections) {
    out.push('', row(section.title, ['ops/s', 14], ['spread', 9], ['  vs baseline', 0]));
    for (const group of section.groups) {
      out.push(`  ${group.title}`);
      for (const f of group.figures) {
        const name = f.isBaseline ? `baseline: ${f.name}` : f.name;
        const ratio = f.ratio === undefined ? '' : `  ${formatRatio(f.ratio)}× ${f.baseline}`;
        out.push(
          row(`    ${name}`, [formatNumber(f.rate.opsPerSecond), 14], [spread(f.rate), 9], [ratio, 0]),
        );
      }
    }
    for (const fact of section.facts) {
      out.push(row(`  ${fact.name}`, [formatNumber(fact.value), 14], [fact.unit ? ` ${fact.unit}` : '', 0]));
    }
    for (const note of section.notes) out.push(...wrap(note, 100, '  note: '));
  }
  return `${out.join('\n')}\n`;
}
