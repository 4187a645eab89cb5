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
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { compiledDeployment, plainEnv, REPO } from '../helpers/deployment.ts';
import { type KeydProcess, startKeyd } from '../helpers/keyd-process.ts';
import { devDependencyImports } from './dev-imports.ts';

const RUN_TIMEOUT_MS = 60_000;

describe('the compiled build, deployed without devDependencies', () => {
  let root: string;
  let bin: string;
  /** This file's own folder: the shared deployment is never written to. */
  let work: string;
  let keyd: KeydProcess | undefined;

  const run = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], {
      cwd: work,
      env: plainEnv(),
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
    });

  before(async () => {
    ({ root, bin } = await compiledDeployment());
    work = mkdtempSync(join(tmpdir(), 'tresor-build-'));
  });

  after(async () => {
    await keyd?.stop();
    rmSync(work, { recursive: true, force: true });
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
    const dir = join(work, 'keyd');
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
      import { createLeafCheckPool } from ${JSON.stringify(pathToFileURL(join(root, 'dist/audit/leaf-check-pool.js')).href)};
      import { createSequencerThread } from ${JSON.stringify(pathToFileURL(join(root, 'dist/audit/sequencer-thread.js')).href)};
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
    const file = join(work, 'start-workers.mjs');
    writeFileSync(file, script);
    const r = spawnSync(process.execPath, [file], {
      cwd: work,
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
