/**
 * Import circles among files, found as strongly connected components (Tarjan). A circle makes
 * load order matter (a module can see another half-initialised) and means neither file can be
 * understood or moved alone; type-only imports count too, since they tie the concepts together.
 */
import type { ImportEdge } from './import-graph.ts';

export interface ImportCycle {
  /** Every file of the strongly connected component, sorted. */
  readonly files: readonly string[];
  /** One shortest circle through the component's first file, start repeated at the end. */
  readonly path: readonly string[];
}

function adjacency(files: readonly string[], edges: readonly ImportEdge[]): Map<string, string[]> {
  const next = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const edge of edges) {
    const targets = next.get(edge.from) ?? [];
    if (!targets.includes(edge.to)) targets.push(edge.to);
    next.set(edge.from, targets);
    if (!next.has(edge.to)) next.set(edge.to, []);
  }
  return next;
}

function stronglyConnected(next: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const v of next.keys()) if (!index.has(v)) connect(v);
  return components;
}

/** Breadth-first inside the component, so the printed circle is as short as it can be. */
function shortestCircle(start: string, members: ReadonlySet<string>, next: Map<string, string[]>): string[] {
  const cameFrom = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i] as string;
    for (const w of next.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = cameFrom.get(u) as string) path.unshift(u);
        path.unshift(start);
        return path;
      }
      if (!cameFrom.has(w)) {
        cameFrom.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

export function findImportCycles(files: readonly string[], edges: readonly ImportEdge[]): ImportCycle[] {
  const next = adjacency(files, edges);
  return stronglyConnected(next)
    .filter((c) => c.length > 1 || (next.get(c[0] as string) ?? []).includes(c[0] as string))
    .map((component) => {
      const sorted = [...component].sort();
      const start = sorted[0] as string;
      return { files: sorted, path: shortestCircle(start, new Set(sorted), next) };
    })
    .sort((a, b) => (a.files[0] as string).localeCompare(b.files[0] as string));
}
