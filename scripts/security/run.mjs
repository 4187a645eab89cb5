#!/usr/bin/env node
// `npm run test:security`: Tresor attacked from outside by third-party tools from Debian (testssl.sh,
// sslscan, nmap, sqlmap, wapiti), a schema-driven fuzzer of our own and the supply-chain checks, and
// the proof that each of them catches a deliberately weakened build. Not part of `npm test`: it
// takes minutes and the scanners; `.ci/run` runs it after `npm test`.
//
// The suites are node:test files named test/security/*.security.ts (not *.test.ts, so `npm test`
// never picks them up), run one at a time (the scanners load the machine, and the stack lives under
// the production rate limits), each test with its own time limit and the whole run one more.
// Arguments filter the files by substring (`npm run test:security -- supply-chain`).
// Every tool's report is kept under reports/security/ (git-ignored); its path is printed at the end.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureSystemDeps, SECURITY_DEPS, SYSTEM_DEPS } from '../system-deps.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const reports = join(root, 'reports', 'security');
/** One scanner against the whole API can take several minutes on a busy machine. */
const TEST_LIMIT_MS = 20 * 60_000;
const RUN_LIMIT_MS = 60 * 60_000;

const problems = ensureSystemDeps({ deps: [...SYSTEM_DEPS, ...SECURITY_DEPS] });
if (problems.length > 0) {
  for (const line of problems) console.error(`test:security: ${line}`);
  process.exit(1);
}

const filter = process.argv.slice(2);
const dir = join(root, 'test', 'security');
const files = readdirSync(dir)
  .filter((name) => name.endsWith('.security.ts'))
  .sort()
  .map((name) => relative(root, join(dir, name)))
  .filter((f) => filter.length === 0 || filter.some((p) => f.includes(p)));
if (files.length === 0) {
  console.error('test:security: no suite matches');
  process.exit(1);
}

// The reports of this run only: a stale report must not pass for a fresh one.
rmSync(reports, { recursive: true, force: true });
mkdirSync(reports, { recursive: true });

const started = Date.now();
const forceExit = process.allowedNodeEnvironmentFlags.has('--test-force-exit') ? ['--test-force-exit'] : [];
const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--import',
    join(root, 'scripts', 'test-time-limit.mjs'),
    '--test',
    ...forceExit,
    '--test-concurrency=1',
    '--test-reporter=spec',
    ...files,
  ],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, TRESOR_TEST_TIMEOUT_MS: String(TEST_LIMIT_MS), TRESOR_SECURITY_REPORTS: reports },
    // Its own process group, so the limit (or Ctrl-C) stops every scanner and server it started.
    detached: true,
  },
);

const killGroup = (signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is gone already.
  }
};
let expired = false;
const limit = setTimeout(() => {
  expired = true;
  console.error(`test:security: the run exceeded ${RUN_LIMIT_MS / 60_000} min; stopping it`);
  killGroup('SIGKILL');
}, RUN_LIMIT_MS);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => killGroup(signal));

child.on('exit', (code) => {
  clearTimeout(limit);
  killGroup('SIGKILL');
  const seconds = Math.round((Date.now() - started) / 1000);
  console.error(`test:security: ${code === 0 ? 'passed' : 'FAILED'} in ${seconds} s; reports in ${reports}`);
  process.exit(expired ? 124 : (code ?? 1));
});
