#!/usr/bin/env node
// The `tresor` command. With a build (`npm run build` → dist/), it runs the compiled JavaScript on
// plain node, no TypeScript loader: what production runs after `npm ci --omit=dev`. A development
// checkout without dist/, or whose src/ has a file newer than the build, runs src/ through tsx's
// loader instead (a devDependency), so a stale build never stands in for the source; without tsx
// installed the build is all there is, and it runs.
import { existsSync, readdirSync, statSync } from 'node:fs';

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
