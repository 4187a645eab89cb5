/**
 * The build as production runs it. `npm run build` (scripts/build.mjs) compiles src/ into a fresh
 * folder laid out like a deployed checkout after `npm ci --omit=dev`: bin/, dist/, package.json and a
 * node_modules with every package the lockfile marks `dev` left out (tsx, typescript, fast-check, …),
 * and no src/. There the `tresor` bin can only run the compiled JavaScript, on plain node: it answers
 * --help, initialises a keyd folder, asks a real keyd for its status, and the audit worker threads
 * start from compiled files. The compiled code imports no devDependency.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type KeydProcess, startKeyd } from '../helpers/keyd-process.ts';
import { devDependencyImports } from './dev-imports.ts';

const REPO = join(import.meta.dirname, '..', '..');
/** tsc over the whole of src/ takes a minute or more on a busy 2-core machine. */
const BUILD_TIMEOUT_MS = 10 * 60_000;
const RUN_TIMEOUT_MS = 60_000;

interface LockEntry {
  dev?: boolean;
}

/** node_modules as `npm ci --omit=dev` leaves it, made of links to the checkout's packages. */
function runtimeNodeModules(into: string): void {
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const source = join(REPO, 'node_modules');
  const link = (name: string) => {
    const entry = lock.packages[`node_modules/${name}`];
    if (entry === undefined || entry.dev === true) return;
    symlinkSync(join(source, name), join(into, name));
  };
  mkdirSync(into);
  for (const name of readdirSync(source)) {
    if (name.startsWith('.')) continue;
    if (!name.startsWith('@')) {
      link(name);
      continue;
    }
    mkdirSync(join(into, name));
    for (const member of readdirSync(join(source, name))) link(`${name}/${member}`);
  }
}

/** Plain node: no loader flag, and none through NODE_OPTIONS (the test runner's own is dropped). */
function plainEnv(): NodeJS.ProcessEnv {
  const { NODE_OPTIONS: _dropped, ...env } = process.env;
  return { ...env, NO_COLOR: '1' };
}

describe('the compiled build, deployed without devDependencies', () => {
  let root: string;
  let bin: string;
  let keyd: KeydProcess | undefined;

  const run = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], {
      cwd: root,
      env: plainEnv(),
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
    });

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'tresor-build-'));
    const built = spawnSync(
      process.execPath,
      [join(REPO, 'scripts', 'build.mjs'), '--out-dir', join(root, 'dist')],
      {
        cwd: REPO,
        encoding: 'utf8',
        timeout: BUILD_TIMEOUT_MS,
      },
    );
    assert.equal(built.status, 0, `npm run build failed:\n${built.stdout}${built.stderr}`);
    mkdirSync(join(root, 'bin'));
    bin = join(root, 'bin', 'tresor.js');
    copyFileSync(join(REPO, 'bin', 'tresor.js'), bin);
    copyFileSync(join(REPO, 'package.json'), join(root, 'package.json'));
    runtimeNodeModules(join(root, 'node_modules'));
  });

  after(async () => {
    await keyd?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('has no TypeScript to run and no TypeScript loader to run it with', () => {
    const require = createRequire(bin);
    for (const dev of [
      'tsx',
      'typescript',
      'fast-check',
      'playwright-core',
      'autocannon',
      '@biomejs/biome',
    ]) {
      assert.throws(() => require.resolve(dev), { code: 'MODULE_NOT_FOUND' }, `${dev} is not installed`);
    }
    const files = readdirSync(root, { recursive: true, withFileTypes: true }).filter(
      (e) => e.isFile() && !e.parentPath.startsWith(join(root, 'node_modules')),
    );
    const ts = files
      .filter((e) => e.name.endsWith('.ts'))
      .map((e) => relative(root, join(e.parentPath, e.name)));
    assert.deepEqual(ts, [], 'no .ts file outside node_modules');
    assert.ok(
      files.some((e) => relative(root, join(e.parentPath, e.name)) === join('dist', 'cli', 'main.js')),
    );
  });

  it('copies the static files the code reads beside itself', () => {
    for (const file of ['http/console/signin.html', 'http/console/signin.js', 'http/console/signin.css']) {
      assert.equal(
        readFileSync(join(root, 'dist', file), 'utf8'),
        readFileSync(join(REPO, 'src', file), 'utf8'),
        file,
      );
    }
    assert.ok(readFileSync(join(root, 'dist', 'identity', 'common-passwords.txt'), 'utf8').length > 0);
  });

  it('imports no devDependency anywhere in dist/', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
      devDependencies: Record<string, string>;
    };
    const found = devDependencyImports(join(root, 'dist'), Object.keys(pkg.devDependencies));
    assert.deepEqual(found, []);
  });

  it('answers --help and keyd --help with exit 0 on plain node', () => {
    const help = run(['--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /Usage: tresor/);
    for (const command of ['dev', 'server', 'keyd', 'audit'])
      assert.match(help.stdout, new RegExp(`\\n  ${command}\\b`));
    const keydHelp = run(['keyd', '--help']);
    assert.equal(keydHelp.status, 0, keydHelp.stderr);
    assert.match(keydHelp.stdout, /status/);
  });

  it('initialises a keyd folder, and reads the status of a real keyd', async () => {
    const dir = join(root, 'keyd');
    const init = run(['keyd', 'init', '--provider', 'dev-file', '--dir', dir, '--insecure-dev-key-file']);
    assert.equal(init.status, 0, init.stderr);
    const socket = join(dir, 'keyd.sock');
    keyd = await startKeyd(['--provider', 'dev-file', '--dir', dir, '--insecure-dev-key-file'], {
      kind: 'unix',
      path: socket,
    });
    const status = run(['keyd', 'status', '--socket', socket, '--json']);
    assert.equal(status.status, 0, status.stderr);
    const health = JSON.parse(status.stdout) as {
      status: string;
      seal: { provider: string; sealed: boolean };
    };
    assert.equal(health.status, 'ok', status.stdout);
    assert.deepEqual([health.seal.provider, health.seal.sealed], ['dev-file', false]);
  });

  it('starts the sequencer and leaf-check workers from compiled files', () => {
    const script = `
      import { createHash } from 'node:crypto';
      import { createLeafCheckPool } from './dist/audit/leaf-check-pool.js';
      import { createSequencerThread } from './dist/audit/sequencer-thread.js';
      const leaf = Buffer.from('{"index":0}');
      const bytes = Buffer.concat([Buffer.from([0]), leaf, Buffer.from([0])]);
      const pool = createLeafCheckPool(1);
      const check = await pool.check({ first: 0, count: 1, bytes, starts: new Uint32Array([0, leaf.length + 1]) });
      await pool.close();
      const sequencer = createSequencerThread();
      const closed = await sequencer.request({ op: 'close' });
      await sequencer.close();
      console.log(JSON.stringify({
        leafHash: Buffer.from(check.hashes).toString('hex'),
        expected: createHash('sha256').update(Buffer.from([0])).update(leaf).digest('hex'),
        sequencerAnswered: typeof closed.id === 'number' && closed.error === undefined,
      }));
    `;
    // A file, not --eval: a worker inherits the process's flags, and --input-type is refused there.
    const file = join(root, 'start-workers.mjs');
    writeFileSync(file, script);
    const r = spawnSync(process.execPath, [file], {
      cwd: root,
      env: plainEnv(),
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
    });
    assert.equal(r.status, 0, r.stderr);
    const answer = JSON.parse(r.stdout) as { leafHash: string; expected: string; sequencerAnswered: boolean };
    assert.equal(answer.leafHash, answer.expected, 'the leaf-check worker hashed the leaf');
    assert.equal(answer.sequencerAnswered, true, 'the sequencer worker answered');
  });
});
