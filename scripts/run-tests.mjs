#!/usr/bin/env node
// Node 20's test runner neither expands globs nor finds .ts files on its own (it would run
// 0 tests and exit 0), so this lists test/**/*.test.ts explicitly and hands them to tsx.
// Before that it names the Node running them (warning, and going on, when it is not a supported
// line) and checks Node and the system tools (scripts/system-deps.mjs); every test and hook gets a
// time limit (scripts/test-time-limit.mjs) and the whole run one more.
//
// Two passes, one per storage backend: every file runs on SQLite; the files whose first line says
// `// backends: sqlite postgres` run a second time with TRESOR_TEST_BACKEND=postgres (the helpers
// then give each stack a fresh PostgreSQL database: test/helpers/backend.ts), and `// backends:
// postgres` runs a file on PostgreSQL only. TRESOR_TEST_BACKEND=sqlite or =postgres runs that pass
// alone.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureSystemDeps, nodeSupportWarning, nodeVersionProblem } from './system-deps.mjs';

const TEST_LIMIT_MS = limitFromEnv('TRESOR_TEST_TIMEOUT_MS', 180_000);
const RUN_LIMIT_MS = limitFromEnv('TRESOR_TEST_RUN_LIMIT_MS', 30 * 60_000);

function limitFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value <= 0) {
    console.error(`run-tests: ${name} must be a positive whole number of milliseconds`);
    process.exit(2);
  }
  return value;
}

// Not import.meta.dirname: Node before 20.11 lacks it, and this must still say what is wrong there.
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Which Node ran the tests belongs in every log: CI runs them on more than one.
console.error(`run-tests: Node.js ${process.versions.node}`);
const unsupported = nodeSupportWarning();
if (unsupported !== null) console.error(`run-tests: ${unsupported}`);
const problems = [nodeVersionProblem(), ...ensureSystemDeps()].filter((line) => line !== null);
if (problems.length > 0) {
  for (const line of problems) console.error(`run-tests: ${line}`);
  process.exit(1);
}

const filter = process.argv.slice(2);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...walk(path));
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
  return out;
}

const files = walk(join(root, 'test')).filter(
  (f) => filter.length === 0 || filter.some((p) => f.includes(p)),
);
if (files.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}

// The tests start `tresor` (bin/tresor.js) hundreds of times: keyd and server children, every CLI
// test. bin/tresor.js runs the compiled build when it is current and src/ through tsx's loader
// otherwise, which costs twice the CPU per start (measured: test/cli/token.test.ts 29 s of CPU
// compiled, 67 s through tsx). So a run of more than a few files compiles src/ first (npm run
// build, about 45 s of CPU) unless dist/ is current; TRESOR_TEST_BUILD=1 always, =0 never.
const BUILD_FROM_FILES = 10;
const buildWanted = process.env.TRESOR_TEST_BUILD ?? (files.length > BUILD_FROM_FILES ? '1' : '0');
if (buildWanted === '1' && !buildIsCurrent()) {
  const started = Date.now();
  const built = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (built.status !== 0) {
    console.error(
      `run-tests: npm run build failed (${built.status ?? built.signal}): the tests were not run`,
    );
    process.exit(1);
  }
  console.error(
    `run-tests: compiled src/ into dist/ for the tests' tresor processes (${Math.round((Date.now() - started) / 1000)} s)`,
  );
}

/** bin/tresor.js's own test: dist/.built (dated to its build's start) is newer than every file of src/. */
function buildIsCurrent() {
  const stamp = join(root, 'dist', '.built');
  if (!existsSync(stamp)) return false;
  const built = statSync(stamp).mtimeMs;
  return readdirSync(join(root, 'src'), { recursive: true, withFileTypes: true }).every(
    (e) => !e.isFile() || statSync(join(e.parentPath ?? e.path, e.name)).mtimeMs <= built,
  );
}

const BACKENDS = ['sqlite', 'postgres'];
const only = process.env.TRESOR_TEST_BACKEND;
if (only !== undefined && only !== '' && !BACKENDS.includes(only)) {
  console.error(`run-tests: TRESOR_TEST_BACKEND must be one of ${BACKENDS.join(', ')}`);
  process.exit(2);
}

/**
 * The backends a file runs on, from its `// backends: …` first line (default: sqlite); a file on
 * one backend only says why in parentheses after it: `// backends: sqlite (backups copy SQLite files)`.
 */
function backendsOf(file) {
  const first = readFileSync(join(root, file), 'utf8').split('\n', 1)[0] ?? '';
  if (!first.startsWith('// backends:')) return ['sqlite'];
  const marker = /^\/\/ backends:((?: [a-z]+)+)(?: \(.+\))?\s*$/.exec(first);
  if (marker === null) {
    console.error(`run-tests: ${file}: its first line is not \`// backends: <backend>… [(reason)]\``);
    process.exit(2);
  }
  const named = marker[1].trim().split(' ');
  const unknown = named.filter((b) => !BACKENDS.includes(b));
  if (unknown.length > 0) {
    console.error(`run-tests: ${file} names an unknown backend: ${unknown.join(', ')}`);
    process.exit(2);
  }
  return named;
}

/**
 * The order a pass runs its files in: the slowest first, by the seconds each took in a measured run
 * (scripts/test-durations.json: per backend, every file of 5 s or more), then every other file in
 * path order. node --test starts files in the order given, two at a time: a long file that starts
 * last (test/e2e/operations-doc, 1.5 min of mostly waiting for TOTP steps) would hold the pass's
 * end alone while the other slot stays empty. A file the list does not know yet runs with the short
 * ones; `TRESOR_TEST_RECORD_DURATIONS=1 npm test` on a quiet machine rewrites the list
 * (scripts/test-file-times.mjs).
 */
function slowestFirst(backend, passFiles) {
  let expected = {};
  try {
    expected = JSON.parse(readFileSync(join(root, 'scripts', 'test-durations.json'), 'utf8'))[backend] ?? {};
  } catch (error) {
    console.error(`run-tests: scripts/test-durations.json unread (${error.message}); files in path order`);
  }
  const seconds = (file) => (typeof expected[file] === 'number' ? expected[file] : 0);
  // Array.prototype.sort is stable: the files of equal (or no) expected time keep their path order.
  return [...passFiles].sort((a, b) => seconds(b) - seconds(a));
}

const passes = BACKENDS.filter((backend) => !only || only === backend)
  .map((backend) => ({
    backend,
    files: slowestFirst(
      backend,
      files.filter((f) => backendsOf(f).includes(backend)),
    ),
  }))
  .filter((pass) => pass.files.length > 0);
if (passes.length === 0) {
  console.error(`run-tests: no test file runs on ${only}`);
  process.exit(1);
}

// The passes run at the same time unless TRESOR_TEST_PASSES=serial: each is mostly waiting (on the
// keyd and server processes its tests start, on fsyncs, on TOTP steps), so the two passes side by
// side, two files each, keep 2 cores busier than one pass after the other (measured:
// docs/performance.md, "The test suite's time"). Each pass has its own databases (SQLite files in
// fresh folders; PostgreSQL databases of random names), as two files of one pass already do.
const PASSES_MODE = process.env.TRESOR_TEST_PASSES || 'together';
if (PASSES_MODE !== 'together' && PASSES_MODE !== 'serial') {
  console.error('run-tests: TRESOR_TEST_PASSES must be together or serial');
  process.exit(2);
}
const together = PASSES_MODE === 'together' && passes.length > 1;

// No per-file timeout: on Node 20 it would limit each whole file, not each test (test-time-limit.mjs
// limits each test and hook; the run's limit below the whole).

/**
 * The test runner on `pass.files`, with the pass's backend. The first pass writes to this
 * process's output as it goes; a pass running beside it has its output held (in memory) and shown
 * once every pass before it has ended, then live: the spec reports stay whole, one pass after the
 * other, as when the passes ran in turn.
 */
function runPass(pass, index) {
  if (passes.length > 1 || pass.backend !== 'sqlite')
    console.error(
      `run-tests: the ${pass.backend} pass: ${pass.files.length} file(s)${
        together && index > 0 ? ` (beside the ${passes[0].backend} pass; its report follows that one's)` : ''
      }`,
    );
  const live = index === 0;
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      join(root, 'scripts', 'test-time-limit.mjs'),
      '--import',
      join(root, 'scripts', 'test-password-cost.mjs'),
      // node:test's run() on the files, two at a time, in this order (not node --test, which sorts
      // them); the spec report on stdout, the slowest files at the end on stderr.
      join(root, 'scripts', 'test-pass.mjs'),
      ...pass.files,
    ],
    {
      cwd: root,
      stdio: live ? 'inherit' : ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        TRESOR_TEST_TIMEOUT_MS: String(TEST_LIMIT_MS),
        TRESOR_TEST_BACKEND: pass.backend,
      },
      // Its own process group, so the limit can stop every process the tests started.
      detached: true,
    },
  );
  const run = { pass, child, live, held: [], ended: false, code: null };
  if (!live) {
    for (const [stream, to] of [
      [child.stdout, process.stdout],
      [child.stderr, process.stderr],
    ]) {
      stream.on('data', (chunk) => {
        if (run.live) to.write(chunk);
        else run.held.push([to, chunk]);
      });
    }
  }
  return run;
}

/** The pids below `pid` (from /proc), children before their own children. */
function descendants(pid) {
  const parents = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Field 4, after the command name in parentheses (which may itself hold spaces or ')').
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(Number(entry), ppid);
    } catch {
      // The process ended while we looked.
    }
  }
  const found = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift();
    for (const [p, pp] of parents) {
      if (pp === parent) {
        found.push(p);
        queue.push(p);
      }
    }
  }
  return found;
}

/** Stops a pass's runner and every process its tests started (its group, and any that left it). */
function killTree(child, signal) {
  // Collected before killing: a killed parent's children are re-parented and would be lost.
  const pids = [child.pid, ...descendants(child.pid)];
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is already gone.
  }
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

const runs = [];
const minutes = (ms) => (ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms} ms`);
let expired = false;
const runLimit = setTimeout(() => {
  expired = true;
  console.error(
    `run-tests: the run exceeded its limit of ${minutes(RUN_LIMIT_MS)} (TRESOR_TEST_RUN_LIMIT_MS); stopping every test process`,
  );
  for (const run of runs) killTree(run.child, 'SIGKILL');
}, RUN_LIMIT_MS);

// The children have their own process groups, so Ctrl-C at the terminal reaches only this process.
let stopped = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    stopped = true; // no further pass
    for (const run of runs) if (!run.ended) killTree(run.child, signal);
  });
}

/** Shows the held output of the passes whose turn it is: each once every pass before it ended. */
function showInTurn() {
  for (const run of runs) {
    if (!run.live) {
      run.live = true;
      for (const [to, chunk] of run.held) to.write(chunk);
      run.held = [];
    }
    if (!run.ended) return;
  }
}

function finishIfDone() {
  if (!runs.every((run) => run.ended) || (!together && runs.length < passes.length && !expired && !stopped))
    return;
  clearTimeout(runLimit);
  const failed = runs.find((run) => run.code !== 0);
  process.exit(expired ? 124 : failed === undefined ? 0 : (failed.code ?? 1));
}

function start(index) {
  const run = runPass(passes[index], index);
  runs.push(run);
  run.child.on('exit', (code) => {
    // Whatever the tests left running (a child of a test that was killed) goes with them.
    if (!expired) killTree(run.child, 'SIGKILL');
    run.code = code ?? 1;
  });
  // 'close': the exit, and the end of its output (held output is shown only once it is all in).
  run.child.on('close', () => {
    run.ended = true;
    showInTurn();
    if (!together && !expired && !stopped && index + 1 < passes.length) start(index + 1);
    finishIfDone();
  });
}
if (together) for (let i = 0; i < passes.length; i++) start(i);
else start(0);
