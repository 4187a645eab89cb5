#!/usr/bin/env node
// `npm run build [-- --out-dir <dir>]`: compiles src/ to dist/ (or <dir>) with tsc and
// tsconfig.build.json (`./x.ts` imports become `./x.js`, with source maps), then copies the files
// the code reads beside itself (console page, password list). Needs the devDependencies, so it runs
// before `npm ci --omit=dev`. Last it writes the stamp bin/tresor.js compares src/ with, dated to
// the build's start: a source file saved during the build counts as newer than the build.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const BUILD_STAMP = '.built';

const root = join(import.meta.dirname, '..');
const { values } = parseArgs({ options: { 'out-dir': { type: 'string' } } });
const outDir = resolve(values['out-dir'] ?? join(root, 'dist'));
const src = join(root, 'src');

const started = new Date();
rmSync(outDir, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(
  process.execPath,
  [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', outDir],
  {
    stdio: 'inherit',
  },
);
if (compiled.status !== 0) {
  console.error(`build: tsc failed (exit ${compiled.status ?? compiled.signal})`);
  process.exit(1);
}

let copied = 0;
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || entry.name.endsWith('.ts')) continue;
  const from = join(entry.parentPath ?? entry.path, entry.name);
  const to = join(outDir, relative(src, from));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  copied++;
}

const stamp = join(outDir, BUILD_STAMP);
writeFileSync(stamp, `${started.toISOString()}\n`);
utimesSync(stamp, started, started);
console.error(`build: ${relative(root, outDir) || outDir} (tsc, ${copied} static files copied)`);
