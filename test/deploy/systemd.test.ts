/**
 * The systemd units in deploy/systemd: `systemd-analyze verify` accepts both without a word, and
 * each carries the hardening its process needs (a table of expected directives), without
 * MemoryDenyWriteExecute, which V8's JIT cannot run under.
 *
 * verify checks that ExecStart's program exists, so the units are rendered into a temporary
 * folder with this test's node and the repository's bin in place of /usr/bin/node and /opt/tresor.
 * verify needs no running systemd (it loads the units offline); the test is skipped only where
 * systemd-analyze is not installed, and says so.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

const REPO = join(import.meta.dirname, '..', '..');
const UNITS = join(REPO, 'deploy', 'systemd');
const ANALYZE = '/usr/bin/systemd-analyze';

/** Directives every unit must set, with their exact values. */
const COMMON: readonly [string, string][] = [
  ['ProtectSystem', 'strict'],
  ['ProtectHome', 'true'],
  ['PrivateTmp', 'true'],
  ['PrivateDevices', 'true'],
  ['NoNewPrivileges', 'true'],
  ['CapabilityBoundingSet', ''],
  ['AmbientCapabilities', ''],
  ['SystemCallFilter', '@system-service'],
  ['LockPersonality', 'yes'],
  ['UMask', '0077'],
  ['RestrictSUIDSGID', 'yes'],
  ['RestrictNamespaces', 'yes'],
  ['ProtectKernelTunables', 'yes'],
  ['ProtectKernelModules', 'yes'],
  ['ProtectControlGroups', 'yes'],
  ['LimitCORE', '0'],
];

const EXPECTED: Record<string, readonly [string, string][]> = {
  'tresor-keyd.service': [
    ...COMMON,
    ['User', 'tresor-keyd'],
    ['Group', 'tresor-keyd'],
    ['StateDirectory', 'tresor-keyd'],
    ['ReadWritePaths', '/var/lib/tresor-keyd'],
    ['RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6'],
    ['ExecStart', '/usr/bin/node /opt/tresor/bin/tresor.js keyd serve --config /etc/tresor/keyd.json'],
  ],
  'tresor-server.service': [
    ...COMMON,
    ['User', 'tresor'],
    ['Group', 'tresor'],
    ['StateDirectory', 'tresor'],
    ['ReadWritePaths', '/var/lib/tresor'],
    ['RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6'],
    ['ExecStart', '/usr/bin/node /opt/tresor/bin/tresor.js server --config /etc/tresor/server.json'],
    ['ExecReload', '/bin/kill -HUP $MAINPID'],
  ],
};

/** The [Service] directives of a unit, comments and blank lines left out. */
function directives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m?.[1] === undefined || m[2] === undefined) continue;
    out.set(m[1], [...(out.get(m[1]) ?? []), m[2]]);
  }
  return out;
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tresor-units-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('systemd units', () => {
  for (const [unit, expected] of Object.entries(EXPECTED)) {
    it(`${unit} has the hardening directives and no MemoryDenyWriteExecute`, () => {
      const found = directives(readFileSync(join(UNITS, unit), 'utf8'));
      for (const [key, value] of expected) assert.deepEqual(found.get(key), [value], `${unit}: ${key}=`);
      assert.equal(found.get('MemoryDenyWriteExecute'), undefined, 'V8 needs W+X memory');
      assert.equal(found.get('DynamicUser'), undefined, 'a fixed user owns the state folder');
    });
  }

  it('pass `systemd-analyze verify` without any warning', () => {
    assert.ok(existsSync(ANALYZE), `${ANALYZE} is missing: apt-get install systemd`);
    const paths = Object.keys(EXPECTED).map((unit) => {
      const rendered = readFileSync(join(UNITS, unit), 'utf8')
        .replaceAll('/usr/bin/node', process.execPath)
        .replaceAll('/opt/tresor/bin/tresor.js', join(REPO, 'bin', 'tresor.js'));
      const path = join(dir, unit);
      writeFileSync(path, rendered);
      return path;
    });
    const r = spawnSync(ANALYZE, ['verify', '--man=no', ...paths], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice', SYSTEMD_LOG_COLOR: '0' },
    });
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(`${r.stdout}${r.stderr}`, '', 'verify prints nothing about the units');
    assert.equal(r.status, 0);
  });

  it('a unit with a mistake makes verify speak (so silence means something)', () => {
    assert.ok(existsSync(ANALYZE), `${ANALYZE} is missing: apt-get install systemd`);
    const path = join(dir, 'tresor-broken.service');
    writeFileSync(
      path,
      readFileSync(join(UNITS, 'tresor-server.service'), 'utf8')
        .replaceAll('/usr/bin/node', process.execPath)
        .replaceAll('/opt/tresor/bin/tresor.js', join(REPO, 'bin', 'tresor.js'))
        .replace('ProtectHome=true', 'ProtectHome=true\nProtectHomme=true'),
    );
    const r = spawnSync(ANALYZE, ['verify', '--man=no', path], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice', SYSTEMD_LOG_COLOR: '0' },
    });
    assert.match(r.stderr, /Unknown key 'ProtectHomme'/);
  });
});
