/**
 * The import graph of src/: every module each file loads, found by parsing (TypeScript's own
 * parser, so imports inside comments or strings are not mistaken for real ones).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

export type ImportKind = 'import' | 'import type' | 'export from' | 'dynamic import' | 'worker URL';

/** One reference from a file to a module, as written. */
export interface ImportReference {
  readonly specifier: string;
  readonly kind: ImportKind;
  readonly line: number;
}

/** A reference resolved to a file; paths are relative to src/ with `/` separators. */
export interface ImportEdge extends ImportReference {
  readonly from: string;
  readonly to: string;
}

export interface ImportGraph {
  /** Every source file, including those that import nothing. */
  readonly files: readonly string[];
  readonly edges: readonly ImportEdge[];
  /** Relative references that lead to no file, or out of src/: the check cannot see past them. */
  readonly unresolved: readonly string[];
}

const SOURCE = /\.(ts|js|mjs)$/;

function isImportMetaUrl(node: ts.Node): boolean {
  return (
    ts.isPropertyAccessExpression(node) &&
    node.name.text === 'url' &&
    ts.isMetaProperty(node.expression) &&
    node.expression.keywordToken === ts.SyntaxKind.ImportKeyword
  );
}

function literal(node: ts.Node | undefined): string | undefined {
  return node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))
    ? node.text
    : undefined;
}

/**
 * Static imports, exports-from, `import('x')` calls and `import('x')` types with a literal, and
 * `new URL('./x.ts', import.meta.url)` pointing at a source file (how a worker's entry is named).
 */
export function extractImports(fileName: string, text: string): ImportReference[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false);
  const found: ImportReference[] = [];
  const add = (specifier: string | undefined, kind: ImportKind, node: ts.Node): void => {
    if (specifier === undefined) return;
    const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
    found.push({ specifier, kind, line });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            named !== undefined &&
            ts.isNamedImports(named) &&
            named.elements.length > 0 &&
            named.elements.every((e) => e.isTypeOnly)));
      add(literal(node.moduleSpecifier), typeOnly ? 'import type' : 'import', node);
    } else if (ts.isExportDeclaration(node)) {
      add(literal(node.moduleSpecifier), 'export from', node);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(literal(node.arguments[0]), 'dynamic import', node);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(literal(node.argument.literal), 'import type', node);
    } else if (
      ts.isNewExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === 'URL' &&
      node.arguments?.length === 2 &&
      isImportMetaUrl(node.arguments[1] as ts.Node)
    ) {
      const specifier = literal(node.arguments[0]);
      if (specifier !== undefined && SOURCE.test(specifier)) add(specifier, 'worker URL', node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function listSources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listSources(path));
    else if (SOURCE.test(name)) out.push(path);
  }
  return out;
}

function toKey(srcRoot: string, path: string): string {
  return relative(srcRoot, path).split(sep).join('/');
}

/** Resolves a relative specifier the way Node does for our files (exact path), with `.js` → `.ts`. */
function resolveFile(fromFile: string, specifier: string): string | undefined {
  const base = resolve(dirname(fromFile), specifier);
  const candidates = [base, base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
}

/** Reads every .ts/.js/.mjs file under srcRoot; package and `node:` imports are not ours and are left out. */
export function readImportGraph(srcRoot: string): ImportGraph {
  const paths = listSources(srcRoot);
  const edges: ImportEdge[] = [];
  const unresolved: string[] = [];
  for (const path of paths) {
    const from = toKey(srcRoot, path);
    for (const ref of extractImports(path, readFileSync(path, 'utf8'))) {
      if (!ref.specifier.startsWith('.')) continue;
      const target = resolveFile(path, ref.specifier);
      const to = target === undefined ? undefined : toKey(srcRoot, target);
      // A URL out of src/ names a program the code starts (the launcher in bin/), not a module it loads.
      if (ref.kind === 'worker URL' && to?.startsWith('../')) continue;
      if (to === undefined || to.startsWith('../')) {
        unresolved.push(
          `src/${from}:${ref.line} ${ref.kind} '${ref.specifier}' ${to === undefined ? 'leads to no file' : 'leaves src/'}`,
        );
        continue;
      }
      edges.push({ ...ref, from, to });
    }
  }
  return { files: paths.map((p) => toKey(srcRoot, p)), edges, unresolved };
}
