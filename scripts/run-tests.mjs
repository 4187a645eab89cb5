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

// `--drills` runs the drills alone (`npm run test:drills`); without it and without a filter, the
// drills are left out (see `isDrill`); a filter picks among every file, drills included.
// `--list` prints the files a run would take, with their backends, and runs nothing.
const drillsOnly = process.argv.includes('--drills');
const listOnly = process.argv.includes('--list');
const filter = process.argv.slice(2).filter((arg) => arg !== '--drills' && arg !== '--list');

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...walk(path));
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
  return out;
}

/**
 * A drill: a file that stops and breaks whole deployments — kill -9 of servers and clusters, a power
 * cut below the process, a backup restored into a new deployment — and takes a minute or more a
 * pass. It says so with a line `// drill: <what it drills>` among its first three lines. npm test
 * leaves the drills out so the suite stays under 15 minutes on 2 cores; `npm run test:drills` runs
 * them, and `.ci/run` runs both.
 */
function isDrill(file) {
  const head = readFileSync(join(root, file), 'utf8').split('\n', 3);
  return head.some((line) => /^\/\/ drill: \S/.test(line));
}

const files = walk(join(root, 'test')).filter(
  (f) =>
    (filter.length === 0 || filter.some((p) => f.includes(p))) &&
    (drillsOnly ? isDrill(f) : filter.length > 0 || !isDrill(f)),
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
if (!listOnly && buildWanted === '1' && !buildIsCurrent()) {
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

const passes = BACKENDS.filter((backend) => !only || only === backend)
  .map((backend) => ({ backend, files: files.filter((f) => backendsOf(f).includes(backend)) }))
  .filter((pass) => pass.files.length > 0);
if (passes.length === 0) {
  console.error(`run-tests: no test file runs on ${only}`);
  process.exit(1);
}
if (listOnly) {
  for (const pass of passes) {
    console.log(`${pass.backend} pass: ${pass.files.length} file(s)`);
    for (const file of pass.files) console.log(`  ${file}`);
  }
  process.exit(0);
}

// No --test-timeout: on Node 20 it would limit each whole file, not each test.
// --test-force-exit (Node >= 20.14): a test that timed out leaves its handles open, and its file
// would otherwise wait for the overall limit.
const forceExit = process.allowedNodeEnvironmentFlags.has('--test-force-exit') ? ['--test-force-exit'] : [];
/** The test runner on `pass.files`, with the pass's backend. */
function runPass(pass) {
  if (passes.length > 1 || pass.backend !== 'sqlite')
    console.error(`run-tests: the ${pass.backend} pass: ${pass.files.length} file(s)`);
  return spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      join(root, 'scripts', 'test-time-limit.mjs'),
      '--import',
      join(root, 'scripts', 'test-password-cost.mjs'),
      '--test',
      ...forceExit,
      '--test-concurrency=2',
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      // The slowest files, printed at the end of the pass (the suite's 15-minute budget).
      `--test-reporter=${join(root, 'scripts', 'test-file-times.mjs')}`,
      '--test-reporter-destination=stderr',
      ...pass.files,
    ],
    {
      cwd: root,
      stdio: 'inherit',
      env: {
        ...process.env,
        TRESOR_TEST_TIMEOUT_MS: String(TEST_LIMIT_MS),
        TRESOR_TEST_BACKEND: pass.backend,
      },
      // Its own process group, so the limit can stop every process the tests started.
      detached: true,
    },
  );
}
let child = runPass(passes[0]);

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

function killTree(signal) {
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

const minutes = (ms) => (ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms} ms`);
let expired = false;
const runLimit = setTimeout(() => {
  expired = true;
  console.error(
    `run-tests: the run exceeded its limit of ${minutes(RUN_LIMIT_MS)} (TRESOR_TEST_RUN_LIMIT_MS); stopping every test process`,
  );
  killTree('SIGKILL');
}, RUN_LIMIT_MS);

// The child has its own process group, so Ctrl-C at the terminal reaches only this process.
let stopped = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    stopped = true; // no further pass
    killTree(signal);
  });
}

let failed = 0;
function onExit(code) {
  // Whatever the tests left running (a child of a test that was killed) goes with them.
  if (!expired) killTree('SIGKILL');
  if (code !== 0) failed = code ?? 1;
  const next = passes[passes.indexOf(current) + 1];
  if (!expired && !stopped && next !== undefined) {
    current = next;
    child = runPass(next);
    child.on('exit', onExit);
    return;
  }
  clearTimeout(runLimit);
  process.exit(expired ? 124 : failed);
}
let current = passes[0];
child.on('exit', onExit);
