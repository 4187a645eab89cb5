#!/usr/bin/env node
// The `tresor` command. With a build (`npm run build` → dist/), it runs the compiled JavaScript on
// plain node, no TypeScript loader: what production runs after `npm ci --omit=dev`. A development
// checkout without dist/, or whose src/ has a file newer than the build, runs src/ through tsx's
// loader instead (a devDependency), so a stale build never stands in for the source; without tsx
// installed the build is all there is, and it runs.
import { existsSync, readdirSync, statSync } from 'node:fs';

// libuv's thread pool runs every asynchronous file operation, and with them each SQLite tenant
// store's fdatasync of its WAL (src/store/sqlite/wal-sync.ts): with its default of 4 threads, no
// more than 4 tenant files are fsynced at once, and writes spread over many tenants queue behind
// them. 64 (docs/architecture.md, figures in docs/performance.md). The pool reads this variable once,
// when it is first used: Node 22 and 24 load this entry module without it, so setting it here, before
// anything else runs, takes effect (Node 20 reads its entry through the pool: there it needs the
// variable in the environment). An operator's own value wins.
process.env.UV_THREADPOOL_SIZE ??= '64';

const root = new URL('../', import.meta.url);
const compiled = new URL('dist/cli/main.js', root);

function newestMtimeMs(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      newest = Math.max(newest, statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs);
    }
  }
  return newest;
}

function buildIsCurrent() {
  const src = new URL('src/', root);
  if (!existsSync(src)) return true;
  const stamp = new URL('dist/.built', root);
  return existsSync(stamp) && newestMtimeMs(src) <= statSync(stamp).mtimeMs;
}

function tsxInstalled() {
  try {
    import.meta.resolve('tsx/esm/api');
    return true;
  } catch {
    return false;
  }
}

if (existsSync(compiled) && (buildIsCurrent() || !tsxInstalled())) {
  await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
