/**
 * The devDependency scan of the compiled build (dev-imports.ts) finds every way JavaScript reaches
 * a package, so an empty answer on dist/ means something.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { devDependencyImports } from './dev-imports.ts';

describe('the devDependency scan', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-dev-imports-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('finds static, dynamic, require and resolve references, and passes runtime ones', () => {
    mkdirSync(join(dir, 'a'));
    writeFileSync(
      join(dir, 'a', 'x.js'),
      [
        "import { register } from 'tsx/esm/api';",
        "export { fc } from 'fast-check';",
        "const ts = await import('typescript');",
        "const p = require('playwright-core');",
        "const b = import.meta.resolve('@biomejs/cli-linux-x64');",
        "import Database from 'better-sqlite3';",
        "import { join } from 'node:path';",
        "import './y.js';",
      ].join('\n'),
    );
    writeFileSync(join(dir, 'a', 'z.mjs'), "import autocannon from 'autocannon';\n");
    writeFileSync(join(dir, 'a', 'notes.txt'), "import 'tsx';\n");
    const found = devDependencyImports(dir, [
      'tsx',
      'fast-check',
      'typescript',
      'playwright-core',
      'autocannon',
    ]);
    assert.deepEqual(
      found.map((f) => `${f.file} ${f.specifier}`),
      [
        'a/x.js tsx/esm/api',
        'a/x.js fast-check',
        'a/x.js typescript',
        'a/x.js playwright-core',
        'a/x.js @biomejs/cli-linux-x64',
        'a/z.mjs autocannon',
      ],
    );
  });
});
