/**
 * scripts/run-tests.mjs itself, on a folder of small test files of its own: the two passes run side
 * by side (a file of each pass meets the other's, which one pass after the other could never do),
 * the PostgreSQL pass's report is printed after the SQLite pass's whole, each pass starts its files
 * slowest first by scripts/test-durations.json, a failure in either pass fails the run, and
 * TRESOR_TEST_PASSES=serial runs the passes one after the other. Nothing here is timed: the order
 * of events is read from a log the fixture files append to.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

const ROOT = join(import.meta.dirname, '..', '..');
const SCRIPTS = [
  'run-tests.mjs',
  'system-deps.mjs',
  'test-time-limit.mjs',
  'test-password-cost.mjs',
  'test-file-times.mjs',
  'test-pass.mjs',
];

/** A fixture file: logs its start and end with its backend, in between runs `body`. */
function fixture(backends: string, name: string, body = ''): string {
  return `// backends: ${backends}
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
const backend = process.env.TRESOR_TEST_BACKEND;
const log = (what) => appendFileSync(process.env.FIXTURE_LOG, \`\${what} ${name} \${backend}\\n\`);
it('${name} on its backend', async () => {
  log('start');
  ${body}
  log('end');
});
`;
}

/** Meets the other pass's copy of this file: each says it is here and waits (bounded) for the other. */
const MEET = `
  if (process.env.FIXTURE_MEET === '1') {
    const here = (b) => join(process.env.FIXTURE_DIR, \`meet-\${b}\`);
    writeFileSync(here(backend), '');
    const other = backend === 'sqlite' ? 'postgres' : 'sqlite';
    for (let i = 0; i < 600 && !existsSync(here(other)); i++) await new Promise((r) => setTimeout(r, 100));
    if (!existsSync(here(other))) throw new Error('the other pass never came: the passes ran one after the other');
  }`;

const FAIL_ON_POSTGRES = `
  if (process.env.FIXTURE_FAIL === '1' && backend === 'postgres') throw new Error('failing on postgres, as asked');`;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  /** The fixture log's lines: `start|end <file> <backend>`. */
  events: string[];
}

describe('scripts/run-tests.mjs', () => {
  let dir: string;
  let runs = 0;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-run-tests-'));
    mkdirSync(join(dir, 'scripts'));
    for (const name of SCRIPTS) copyFileSync(join(ROOT, 'scripts', name), join(dir, 'scripts', name));
    // tsx and the rest, for the runner's --import tsx.
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    writeFileSync(
      join(dir, 'scripts', 'test-durations.json'),
      JSON.stringify({
        sqlite: { 'test/z-slow.test.ts': 50, 'test/y-slow.test.ts': 40 },
        postgres: {},
      }),
    );
    mkdirSync(join(dir, 'test'));
    const files: Record<string, string> = {
      'a-first-by-path.test.ts': fixture('sqlite postgres', 'a-first-by-path', FAIL_ON_POSTGRES),
      'm-meet.test.ts': fixture('sqlite postgres', 'm-meet', MEET),
      'p-only.test.ts': fixture('postgres (fixture)', 'p-only'),
      'y-slow.test.ts': fixture('sqlite', 'y-slow'),
      'z-slow.test.ts': fixture('sqlite', 'z-slow'),
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, 'test', name), text);
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function run(env: Record<string, string>): Run {
    runs += 1;
    const log = join(dir, `events-${runs}.log`);
    writeFileSync(log, '');
    const fixtureDir = join(dir, `run-${runs}`);
    mkdirSync(fixtureDir);
    // Without NODE_TEST_CONTEXT: under it (this file runs in a test runner) node --test runs nothing.
    const { NODE_TEST_CONTEXT: _, ...outer } = process.env;
    const r = spawnSync(process.execPath, [join(dir, 'scripts', 'run-tests.mjs')], {
      cwd: dir,
      encoding: 'utf8',
      env: {
        ...outer,
        TRESOR_TEST_BUILD: '0',
        TRESOR_TEST_BACKEND: '',
        TRESOR_TEST_PASSES: '',
        // The runner's own limit stops its passes' process groups before this spawn's limit.
        TRESOR_TEST_RUN_LIMIT_MS: '120000',
        FIXTURE_LOG: log,
        FIXTURE_DIR: fixtureDir,
        ...env,
      },
      timeout: 150_000,
    });
    const events = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, events };
  }

  /** The files of `backend` in the order they started. */
  const started = (events: string[], backend: string) =>
    events
      .filter((e) => e.startsWith('start ') && e.endsWith(` ${backend}`))
      .map((e) => e.split(' ')[1] as string);

  it('runs the passes side by side, reports the PostgreSQL pass after the SQLite pass, slowest files first', () => {
    const r = run({ FIXTURE_MEET: '1' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    // m-meet passed on both backends: each copy saw the other's while it waited.
    assert.match(r.stdout, /✔ m-meet on its backend[\s\S]*✔ m-meet on its backend/);
    assert.match(r.stderr, /the postgres pass: 3 file\(s\) \(beside the sqlite pass; its report follows/);

    // The SQLite pass's report is whole before the PostgreSQL pass's begins.
    const sqliteSummary = r.stdout.indexOf('ℹ duration_ms');
    const postgresOnly = r.stdout.indexOf('p-only on its backend');
    assert.ok(sqliteSummary > 0 && postgresOnly > sqliteSummary, r.stdout);
    assert.equal(r.stdout.indexOf('ℹ duration_ms', postgresOnly) > postgresOnly, true, r.stdout);

    // Two files at a time: the two the list calls slowest start before either file it does not list.
    const sqlite = started(r.events, 'sqlite');
    assert.equal(sqlite.length, 4, r.events.join('\n'));
    assert.deepEqual(sqlite.slice(0, 2).sort(), ['y-slow', 'z-slow'], r.events.join('\n'));
    // (The other two start as those end, in either order: a process start is a race.)
    assert.deepEqual(sqlite.slice(2).sort(), ['a-first-by-path', 'm-meet'], r.events.join('\n'));
    assert.deepEqual(started(r.events, 'postgres').sort(), ['a-first-by-path', 'm-meet', 'p-only']);
  });

  it('fails the run when a test fails in the pass beside the first, and still prints both reports', () => {
    const r = run({ FIXTURE_FAIL: '1' });
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /✖ a-first-by-path on its backend/);
    assert.match(r.stdout, /failing on postgres, as asked/);
    assert.equal(r.stdout.split('ℹ fail 0').length - 1, 1, 'the SQLite pass passed');
    assert.equal(r.stdout.split('ℹ fail 1').length - 1, 1, 'the PostgreSQL pass failed');
  });

  it('with TRESOR_TEST_PASSES=serial runs the PostgreSQL pass after the SQLite pass has ended', () => {
    const r = run({ TRESOR_TEST_PASSES: 'serial' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const firstPostgres = r.events.findIndex((e) => e.endsWith(' postgres'));
    const lastSqlite = r.events.findLastIndex((e) => e.endsWith(' sqlite'));
    assert.ok(firstPostgres > lastSqlite, r.events.join('\n'));
    assert.equal(r.events.length, 14, r.events.join('\n'));
    assert.doesNotMatch(r.stderr, /beside the sqlite pass/);
  });

  it('refuses an unknown TRESOR_TEST_PASSES', () => {
    const r = run({ TRESOR_TEST_PASSES: 'sideways' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /TRESOR_TEST_PASSES must be together or serial/);
    assert.deepEqual(r.events, []);
  });
});
