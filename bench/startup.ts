/**
 * g. Start time of `tresor --help`: the compiled build on plain node against the same bin falling
 * back to src/ through tsx, each a fresh process from spawn to exit. The build is made here, with
 * `npm run build`'s script, into two folders laid out as checkouts: one with dist/ and no src/,
 * one with src/ and no dist/, so each runs the bin exactly as a deployment or a fresh clone does.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './children.ts';
import type { Section } from './report.ts';

const WARM_UP_RUNS = 2;
const BUILD_TIMEOUT_MS = 15 * 60_000;
const RUN_TIMEOUT_MS = 60_000;

export interface StartupResult {
  buildSeconds: number;
  compiled: number[];
  tsx: number[];
}

/** A checkout-like folder: bin/tresor.js, package.json, node_modules, plus what `add` puts there. */
function checkout(dir: string, add: (dir: string) => void): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  copyFileSync(join(REPO_ROOT, 'bin', 'tresor.js'), join(dir, 'bin', 'tresor.js'));
  copyFileSync(join(REPO_ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  add(dir);
  return join(dir, 'bin', 'tresor.js');
}

/** Seconds from spawn to exit of `node <bin> --help`, which must exit 0. */
function helpSeconds(bin: string): number {
  const started = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8', timeout: RUN_TIMEOUT_MS });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (r.status !== 0) throw new Error(`${bin} --help exited ${r.status ?? r.signal}: ${r.stderr}`);
  return seconds;
}

export function benchStartup(options: { dir: string; runs: number }): StartupResult {
  const started = process.hrtime.bigint();
  const compiledBin = checkout(join(options.dir, 'compiled'), (dir) => {
    const r = spawnSync(
      process.execPath,
      [join(REPO_ROOT, 'scripts', 'build.mjs'), '--out-dir', join(dir, 'dist')],
      {
        encoding: 'utf8',
        timeout: BUILD_TIMEOUT_MS,
      },
    );
    if (r.status !== 0) throw new Error(`npm run build failed: ${r.stderr}`);
  });
  const buildSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const tsxBin = checkout(join(options.dir, 'source'), (dir) =>
    symlinkSync(join(REPO_ROOT, 'src'), join(dir, 'src')),
  );
  for (let i = 0; i < WARM_UP_RUNS; i++) {
    helpSeconds(compiledBin);
    helpSeconds(tsxBin);
  }
  // Alternate the two, so a busy neighbour weighs on both alike.
  const compiled: number[] = [];
  const tsx: number[] = [];
  for (let i = 0; i < options.runs; i++) {
    compiled.push(helpSeconds(compiledBin));
    tsx.push(helpSeconds(tsxBin));
  }
  return { buildSeconds, compiled, tsx };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export function startupSection(r: StartupResult): Section {
  const fact = (name: string, values: number[]) => [
    { name: `${name}, median`, value: round3(median(values)), unit: 's' },
    { name: `${name}, fastest`, value: round3(Math.min(...values)), unit: 's' },
    { name: `${name}, slowest`, value: round3(Math.max(...values)), unit: 's' },
  ];
  return {
    id: 'startup',
    title: `g. Start time: \`tresor --help\`, spawn to exit, ${r.compiled.length} runs each`,
    groups: [],
    facts: [
      ...fact('compiled (dist/, plain node)', r.compiled),
      ...fact('from src/ through tsx (no dist/)', r.tsx),
      {
        name: 'compiled ÷ tsx, medians',
        value: Number((median(r.compiled) / median(r.tsx)).toFixed(2)),
        unit: '×',
      },
      {
        name: 'npm run build (tsc over src/, static files)',
        value: Math.round(r.buildSeconds * 10) / 10,
        unit: 's',
      },
    ],
    notes: [
      `Each side ran ${WARM_UP_RUNS} warm-up starts first (tsx keeps its compiled files in a cache between processes), then the two alternate.`,
      'Target (operable issue): compiled under 0.5 s. `npm start` runs bin/tresor.js, which falls back to tsx without a current build: building first would cost the build time above on every changed start.',
    ],
  };
}
