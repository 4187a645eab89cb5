/**
 * TEST-ONLY. Finds the places compiled JavaScript reaches a devDependency: static imports and
 * `export … from`, `import('…')`, `require('…')`, and resolutions (`import.meta.resolve('…')`,
 * `require.resolve('…')`) with a literal specifier, read with TypeScript's parser.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

export interface DevImport {
  file: string;
  specifier: string;
}

/**
 * The one allowed reference: ts-worker's branch for running from source resolves tsx's loader for
 * its worker; it is taken only when ts-worker itself is a `.ts` file, never in dist/ (the compiled
 * test starts both workers with no tsx installed).
 */
const SOURCE_ONLY: readonly DevImport[] = [{ file: 'ts-worker.js', specifier: 'tsx/esm/api' }];

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string);
}

function literalSpecifiers(source: ts.SourceFile): string[] {
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      if (ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node)) {
      const [first] = node.arguments;
      const callee = node.expression;
      const loads =
        callee.kind === ts.SyntaxKind.ImportKeyword ||
        (ts.isIdentifier(callee) && callee.text === 'require') ||
        (ts.isPropertyAccessExpression(callee) && callee.name.text === 'resolve');
      if (loads && first !== undefined && ts.isStringLiteralLike(first)) found.push(first.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Every reference under `dir` (.js, .mjs, .cjs) to one of `devDependencies`, but the source-only one. */
export function devDependencyImports(dir: string, devDependencies: readonly string[]): DevImport[] {
  const dev = new Set(devDependencies);
  const found: DevImport[] = [];
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.[cm]?js$/.test(entry.name)) continue;
    const path = join(entry.parentPath, entry.name);
    const file = relative(dir, path);
    const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
    for (const specifier of literalSpecifiers(source)) {
      const name = packageName(specifier);
      if (!dev.has(name) && !name.startsWith('@biomejs/')) continue;
      if (SOURCE_ONLY.some((s) => s.file === file && s.specifier === specifier)) continue;
      found.push({ file, specifier });
    }
  }
  return found;
}
