/**
 * `npm test` on a machine without the Debian packages the tests use: as a user who cannot install
 * them, it stops in its first seconds with one line per missing package and how to install it,
 * and runs no test. (As root with apt-get it installs them instead: what `.ci/run` relies on.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

const ROOT = join(import.meta.dirname, '..', '..');

/**
 * Runs `args` with node, with only `path` on PATH, as a user who cannot install packages: as root
 * (CI), the unprivileged user `nobody`; otherwise the user running the tests, who already is one.
 */
function asNobody(cwd: string, args: string[], path: string) {
  const command = ['/usr/bin/env', '-i', `PATH=${path}`, 'HOME=/tmp', process.execPath, ...args];
  const [file, ...rest] = process.getuid?.() === 0 ? ['runuser', '-u', 'nobody', '--', ...command] : command;
  return spawnSync(file as string, rest, { cwd, encoding: 'utf8', timeout: 60_000 });
}

describe('npm test on a machine without the system packages', () => {
  let dir: string;
  let empty: string;
  let scripts: string;

  before(() => {
    // The runner and the check, copied where `nobody` may read them: a checkout can sit in a
    // folder only its owner reads (a fresh clone under mktemp -d does).
    dir = mkdtempSync(join(tmpdir(), 'tresor-no-tools-'));
    chmodSync(dir, 0o755);
    empty = join(dir, 'empty-path');
    scripts = join(dir, 'scripts');
    mkdirSync(empty, { mode: 0o755 });
    mkdirSync(scripts, { mode: 0o755 });
    for (const name of ['run-tests.mjs', 'system-deps.mjs', 'test-time-limit.mjs'])
      copyFileSync(join(ROOT, 'scripts', name), join(scripts, name));
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names each missing package with the command that installs it, and runs no test', () => {
    // Nothing on PATH: the commands the tests need are all "missing" (sbin tools are still found).
    const r = asNobody(dir, [join(scripts, 'run-tests.mjs'), 'test/text.test.ts'], empty);
    assert.equal(r.status, 1, r.stderr);
    for (const pkg of ['softhsm2', 'oathtool', 'sqlite3']) {
      assert.match(r.stderr, new RegExp(`missing system package ${pkg} .*: sudo apt-get install -y ${pkg}`));
    }
    assert.doesNotMatch(r.stdout + r.stderr, /# tests|✔/, 'no test ran');
  });

  it('passes the check when the packages are there', () => {
    const r = asNobody(dir, [join(scripts, 'system-deps.mjs')], '/usr/local/bin:/usr/bin:/bin');
    assert.equal(r.status, 0, r.stderr);
  });
});
