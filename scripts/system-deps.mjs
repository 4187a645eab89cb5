#!/usr/bin/env node
// The system tools the tests need, listed once: `npm test` (run-tests.mjs) and `.ci/run` both check
// them here. Run directly to check (and, as root with apt-get, install) them; `--security` adds the
// scanners of `npm run test:security`.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Debian package, the file or command that proves it is installed, and which tests need it. */
export const SYSTEM_DEPS = [
  { pkg: 'softhsm2', command: 'softhsm2-util', why: 'PKCS#11 root key' },
  { pkg: 'oathtool', command: 'oathtool', why: 'independent TOTP codes' },
  { pkg: 'sqlite3', command: 'sqlite3', why: 'tampering with an audit store from outside' },
  { pkg: 'chromium', file: '/usr/bin/chromium', why: 'WebAuthn in a real browser' },
  { pkg: 'rsyslog', file: '/usr/sbin/rsyslogd', why: 'a real syslog receiver' },
  {
    pkg: 'rsyslog-gnutls',
    file: '/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so',
    why: 'syslog over TLS',
  },
  { pkg: 'e2fsprogs', command: 'mkfs.ext4', why: 'read-only store test (loop ext4)' },
  { pkg: 'mount', command: 'losetup', why: 'read-only store test (loop device)' },
  {
    pkg: 'systemd',
    file: '/usr/bin/systemd-analyze',
    why: 'checking the systemd units (systemd-analyze verify)',
  },
  {
    pkg: 'prometheus',
    command: 'promtool',
    why: 'checking the metrics scrape and the Prometheus config and alerting rules (promtool)',
  },
  {
    pkg: 'fuse3',
    command: 'fusermount3',
    why: 'the power-cut test (a FUSE file system that drops unsynced writes)',
  },
  {
    pkg: 'python3-fusepy',
    file: '/usr/lib/python3/dist-packages/fusepy.py',
    why: 'the power-cut test (test/helpers/powercut-fs.py)',
  },
  {
    pkg: 'prometheus-alertmanager',
    command: 'amtool',
    why: 'checking the example Alertmanager route (amtool check-config)',
  },
];

/**
 * The third-party scanners of `npm run test:security` (scripts/security/run.mjs), not of `npm test`:
 * checked (and, as root, installed) only when the security run starts or with `--security`.
 */
export const SECURITY_DEPS = [
  { pkg: 'testssl.sh', command: 'testssl', why: 'the TLS scan (protocols, ciphers, vulnerabilities, HSTS)' },
  { pkg: 'sslscan', command: 'sslscan', why: 'the second TLS scan' },
  { pkg: 'nmap', command: 'nmap', why: 'the port and service scan' },
  { pkg: 'sqlmap', command: 'sqlmap', why: 'the SQL injection scan' },
  { pkg: 'wapiti', command: 'wapiti', why: 'the web application scan' },
];

/** The oldest Node the code runs on at all: 20.11 (import.meta.dirname). Below it, nothing starts. */
export const NODE_MIN = [20, 11];

/**
 * The Node.js lines Tresor supports, as package.json's engines says (`^22.12.0 || ^24.0.0`): the
 * maintained LTS lines. `.ci/run` runs the whole suite on 24 and a smoke run on the machine's Node.
 */
export const NODE_SUPPORTED = [
  [22, 12],
  [24, 0],
];

export function nodeVersionProblem(version = process.versions.node) {
  const [major, minor] = version.split('.').map(Number);
  const [wantMajor, wantMinor] = NODE_MIN;
  if (major > wantMajor || (major === wantMajor && minor >= wantMinor)) return null;
  return `Node.js ${version} is too old: Tresor needs Node.js >= ${wantMajor}.${wantMinor}`;
}

/** A line to print (and go on) when this Node runs the code but is not a supported line, else null. */
export function nodeSupportWarning(version = process.versions.node) {
  const [major, minor] = version.split('.').map(Number);
  if (NODE_SUPPORTED.some(([m, min]) => major === m && minor >= min)) return null;
  const lines = NODE_SUPPORTED.map(([m, min]) => `${m}.${min}+`).join(' and ');
  return `Node.js ${version} is not supported (Tresor supports the LTS lines ${lines}); going on, but CI proves only Node 24 in full and the machine's Node with a smoke run`;
}

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// sbin directories too: mkfs.ext4 and losetup live there and a non-root PATH often lacks them.
function onPath(command) {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin']);
  return dirs.some((dir) => dir !== '' && executable(join(dir, command)));
}

function present(dep) {
  if (dep.command !== undefined) return onPath(dep.command);
  return existsSync(dep.file);
}

export function missingSystemDeps(deps = SYSTEM_DEPS) {
  return deps.filter((dep) => !present(dep));
}

function canInstall() {
  return process.getuid?.() === 0 && onPath('apt-get');
}

function apt(args) {
  const result = spawnSync('apt-get', args, {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return result.status === 0;
}

/**
 * Returns the lines to print when something is missing and cannot be installed here, or [] when
 * everything is there (installing it first when running as root with apt-get).
 */
export function ensureSystemDeps({ log = console.error, deps = SYSTEM_DEPS } = {}) {
  let missing = missingSystemDeps(deps);
  if (missing.length === 0) return [];
  const pkgs = missing.map((dep) => dep.pkg);
  if (canInstall()) {
    log(`system-deps: installing ${pkgs.join(' ')} (apt-get)`);
    if (apt(['update', '-qq']) && apt(['install', '-y', '-qq', ...pkgs])) missing = missingSystemDeps(deps);
  }
  const sudo = process.getuid?.() === 0 ? '' : 'sudo ';
  return missing.map(
    (dep) =>
      `missing system package ${dep.pkg} (${dep.command ?? dep.file}, for ${dep.why}): ${sudo}apt-get install -y ${dep.pkg}`,
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const warning = nodeSupportWarning();
  if (warning !== null) console.error(warning);
  const deps = process.argv.includes('--security') ? [...SYSTEM_DEPS, ...SECURITY_DEPS] : SYSTEM_DEPS;
  const problems = [nodeVersionProblem(), ...ensureSystemDeps({ deps })].filter((line) => line !== null);
  for (const line of problems) console.error(line);
  process.exit(problems.length === 0 ? 0 : 1);
}
