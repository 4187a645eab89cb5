/**
 * The compiled build laid out as production runs it, shared by the tests that need it: `npm run
 * build` (scripts/build.mjs) compiles src/ into a folder laid out like a deployed checkout after
 * `npm ci --omit=dev` — bin/, dist/, package.json and a node_modules with every package the
 * lockfile marks `dev` left out (tsx, typescript, fast-check, …), and no src/. There the `tresor`
 * bin can only run the compiled JavaScript, on plain node.
 *
 * tsc over the whole of src/ takes a minute or more on a busy 2-core machine, so the deployment is
 * built once per content of src/, the lockfile and bin/ and kept in the system's temporary folder;
 * test files running at the same time wait for one build behind a lock folder, for a bounded
 * time. Tests never write into it: they run the bin from folders of their own.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO = join(import.meta.dirname, '..', '..');
/**
 * Outside the checkout: from inside it, node would find the checkout's own node_modules (tsx and
 * all) by walking up, and the deployment would not be one without devDependencies.
 */
const CACHE = join(tmpdir(), `tresor-deployments-${process.getuid?.() ?? 'user'}`);
const BUILD_TIMEOUT_MS = 10 * 60_000;
/** A lock older than a build can take belongs to a test process that died while building. */
const STALE_LOCK_MS = BUILD_TIMEOUT_MS + 60_000;

export interface Deployment {
  /** The deployed folder: bin/, dist/, package.json, node_modules/ (runtime packages only). */
  readonly root: string;
  /** bin/tresor.js inside it. */
  readonly bin: string;
}

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

/**
 * A digest of everything the deployment is made of — including the checkout's own path, since its
 * node_modules are links into that checkout's: a deployment built from a checkout that was removed
 * since (an earlier CI clone) must not be taken for this one's.
 */
function contentDigest(): string {
  const hash = createHash('sha256');
  hash.update(REPO).update('\0');
  const add = (path: string) => {
    hash.update(relative(REPO, path)).update('\0').update(readFileSync(path)).update('\0');
  };
  const files = readdirSync(join(REPO, 'src'), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const file of files) add(file);
  for (const file of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'])
    add(join(REPO, file));
  add(join(REPO, 'bin', 'tresor.js'));
  add(join(REPO, 'scripts', 'build.mjs'));
  return hash.digest('hex').slice(0, 16);
}

/** The checkout's own dist/ is the build of its current src/ (bin/tresor.js's test: the stamp is newer). */
function checkoutBuildIsCurrent(): boolean {
  const stamp = statSync(join(REPO, 'dist', '.built'), { throwIfNoEntry: false });
  if (!stamp) return false;
  return readdirSync(join(REPO, 'src'), { recursive: true, withFileTypes: true }).every(
    (e) => !e.isFile() || statSync(join(e.parentPath, e.name)).mtimeMs <= stamp.mtimeMs,
  );
}

function build(into: string): void {
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into, { recursive: true });
  // npm test compiles src/ into the checkout's dist/ before a long run (scripts/run-tests.mjs):
  // that build, when current, is the one deployed, instead of compiling the same sources again.
  if (checkoutBuildIsCurrent()) cpSync(join(REPO, 'dist'), join(into, 'dist'), { recursive: true });
  else compile(into);
  mkdirSync(join(into, 'bin'));
  copyFileSync(join(REPO, 'bin', 'tresor.js'), join(into, 'bin', 'tresor.js'));
  copyFileSync(join(REPO, 'package.json'), join(into, 'package.json'));
  runtimeNodeModules(join(into, 'node_modules'));
}

function compile(into: string): void {
  const built = spawnSync(
    process.execPath,
    [join(REPO, 'scripts', 'build.mjs'), '--out-dir', join(into, 'dist')],
    { cwd: REPO, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS },
  );
  if (built.status !== 0) {
    throw new Error(
      `npm run build failed (${built.status ?? built.signal}):\n${built.stdout}${built.stderr}`,
    );
  }
}

/** Deployments of earlier sources, a day old or more, go when a new one is built. */
function pruneOldDeployments(current: string): void {
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const name of readdirSync(CACHE)) {
    const path = join(CACHE, name);
    if (!name.startsWith('tresor-deployment-') || path === current || name.endsWith('.lock')) continue;
    if ((statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? dayAgo) < dayAgo) {
      rmSync(path, { recursive: true, force: true });
    }
  }
}

/** The deployment of the current sources, built now or by an earlier (or concurrent) test file. */
export async function compiledDeployment(): Promise<Deployment> {
  mkdirSync(CACHE, { recursive: true });
  const root = join(CACHE, `tresor-deployment-${contentDigest()}`);
  const done = join(root, '.complete');
  const lock = `${root}.lock`;
  const deadline = Date.now() + STALE_LOCK_MS;
  // A deployment whose links no longer resolve (its checkout gone) is built again.
  if (existsSync(done) && !existsSync(join(root, 'node_modules', 'commander', 'package.json'))) {
    rmSync(done, { recursive: true, force: true });
  }
  while (!existsSync(done)) {
    try {
      mkdirSync(lock);
    } catch {
      const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > STALE_LOCK_MS) rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline)
        throw new Error(`no deployment build finished within ${STALE_LOCK_MS} ms`);
      else await sleep(500);
      continue;
    }
    try {
      if (!existsSync(done)) {
        const staging = `${root}.staging`;
        build(staging);
        rmSync(root, { recursive: true, force: true });
        renameSync(staging, root);
        mkdirSync(done);
        pruneOldDeployments(root);
      }
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
  return { root, bin: join(root, 'bin', 'tresor.js') };
}

/** Plain node: no loader flag, and none through NODE_OPTIONS (the test runner's own is dropped). */
export function plainEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const { NODE_OPTIONS: _dropped, ...env } = process.env;
  const hermetic: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('TRESOR_')) hermetic[k] = v;
  return { ...hermetic, NO_COLOR: '1', ...extra };
}
