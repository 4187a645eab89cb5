/**
 * The architecture check: imports in src/ only point down the floors of test/architecture/floors.ts
 * (see docs/architecture.md), never sideways between parts of one floor unless the table allows it,
 * and no files import each other in a circle. The checker is tested on a synthetic graph too, so a
 * broken checker cannot pass silently.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findImportCycles, type ImportCycle } from './cycles.ts';
import { FLOORS, type Floor, SIDEWAYS_ALLOWED } from './floors.ts';
import { extractImports, type ImportEdge, readImportGraph } from './import-graph.ts';
import { checkLayering } from './layering.ts';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

function assertNone(found: readonly string[], what: string): void {
  if (found.length > 0) assert.fail(`${found.length} ${what}:\n  ${found.join('\n  ')}`);
}

function describeCycle(cycle: ImportCycle): string {
  return `${cycle.path.map((f) => `src/${f}`).join(' → ')} (component of ${cycle.files.length} files: ${cycle.files.join(', ')})`;
}

describe('imports in src/', () => {
  const graph = readImportGraph(SRC);
  const layering = checkLayering(graph.files, graph.edges, FLOORS, SIDEWAYS_ALLOWED);

  test('the graph is not empty (the check reads the source it means to)', () => {
    assert.ok(graph.files.length > 50, `only ${graph.files.length} files found under ${SRC}`);
    assert.ok(graph.edges.length > 100, `only ${graph.edges.length} imports found`);
  });

  test('every relative import resolves to a file in src/', () => {
    assertNone(graph.unresolved, 'import(s) the check cannot follow');
  });

  test('every part of src/ is on a floor', () => {
    assertNone(layering.unplaced, 'file(s) on no floor');
  });

  test('no import points to a higher floor', () => {
    assertNone(layering.upward, 'upward import(s)');
  });

  test('no import between two parts of the same floor, unless the table allows it', () => {
    assertNone(layering.sideways, 'sideways import(s)');
  });

  test('no import circle among files', () => {
    assertNone(findImportCycles(graph.files, graph.edges).map(describeCycle), 'import circle(s)');
  });
});

describe('the import checker itself', () => {
  test('finds every kind of import, and none in comments or strings', () => {
    const text = [
      "import { a } from './a.ts';",
      "import type { B } from './b.ts';",
      "import { type C } from './c.ts';",
      "import './side-effect.ts';",
      "export { d } from './d.ts';",
      "export * from './e.ts';",
      "const f = await import('./f.ts');",
      "let g: import('./g.ts').G;",
      "const h = new URL('./h-worker.ts', import.meta.url);",
      "const data = new URL('./words.txt', import.meta.url);",
      "// import { no } from './comment.ts';",
      'const s = "import(\'./string.ts\')";',
      "import { readFileSync } from 'node:fs';",
    ].join('\n');
    assert.deepEqual(
      extractImports('x.ts', text).map((r) => `${r.line} ${r.kind} ${r.specifier}`),
      [
        '1 import ./a.ts',
        '2 import type ./b.ts',
        '3 import type ./c.ts',
        '4 import ./side-effect.ts',
        '5 export from ./d.ts',
        '6 export from ./e.ts',
        '7 dynamic import ./f.ts',
        '8 import type ./g.ts',
        '9 worker URL ./h-worker.ts',
        '13 import node:fs',
      ],
    );
  });

  test('reports an upward import, a sideways import and a circle in a synthetic graph', () => {
    const floors: Floor[] = [
      { parts: ['top'], holds: 'top' },
      { parts: ['left', 'right'], holds: 'middle' },
      { parts: ['bottom'], holds: 'bottom' },
    ];
    const edge = (from: string, to: string): ImportEdge => ({
      from,
      to,
      specifier: `../${to}`,
      kind: 'import',
      line: 1,
    });
    const files = ['top/a.ts', 'left/b.ts', 'right/c.ts', 'bottom/d.ts', 'bottom/e.ts', 'stray/f.ts'];
    const edges = [
      edge('top/a.ts', 'left/b.ts'), // down: fine
      edge('left/b.ts', 'bottom/d.ts'), // down: fine
      edge('bottom/d.ts', 'top/a.ts'), // up, and closes a circle a → b → d → a
      edge('left/b.ts', 'right/c.ts'), // sideways
      edge('bottom/e.ts', 'bottom/e.ts'), // a file importing itself is a circle too
    ];
    const found = checkLayering(files, edges, floors, []);
    assert.deepEqual(found.unplaced.length, 1);
    assert.match(found.unplaced[0] as string, /src\/stray\/f\.ts: part 'stray' is on no floor/);
    assert.deepEqual(found.upward.length, 1);
    assert.match(
      found.upward[0] as string,
      /^src\/bottom\/d\.ts:1 import '\.\.\/top\/a\.ts' \(src\/top\/a\.ts\): bottom on floor 3 of 3 \(bottom\) imports top on higher floor 1 of 3 \(top\)$/,
    );
    assert.deepEqual(found.sideways.length, 1);
    assert.match(found.sideways[0] as string, /left and right share floor 2 of 3 \(left, right\)/);
    assert.deepEqual(
      checkLayering(files, edges, floors, [{ from: 'left', to: 'right', why: 'test' }]).sideways,
      [],
    );
    assert.deepEqual(findImportCycles(files, edges), [
      {
        files: ['bottom/d.ts', 'left/b.ts', 'top/a.ts'],
        path: ['bottom/d.ts', 'top/a.ts', 'left/b.ts', 'bottom/d.ts'],
      },
      { files: ['bottom/e.ts'], path: ['bottom/e.ts', 'bottom/e.ts'] },
    ]);
  });
});
