/**
 * Judges each import against the floors: up is never allowed, sideways between two parts of one
 * floor only where the table names the pair. Messages name the file, the line, the import and both
 * floors, so a failure says what to move without reading this code.
 */
import type { Floor, SidewaysImport } from './floors.ts';
import type { ImportEdge } from './import-graph.ts';

export interface LayeringViolations {
  /** Files whose part is on no floor: the table must say where a new folder lives. */
  readonly unplaced: string[];
  readonly upward: string[];
  readonly sideways: string[];
}

/** `vault/tenants.ts` → `vault`; a file directly in src/ is its own part (`errors.ts`). */
export function partOf(file: string): string {
  return file.split('/')[0] ?? file;
}

function describeFloor(floors: readonly Floor[], index: number): string {
  return `floor ${index + 1} of ${floors.length} (${floors[index]?.parts.join(', ')})`;
}

export function checkLayering(
  files: readonly string[],
  edges: readonly ImportEdge[],
  floors: readonly Floor[],
  allowed: readonly SidewaysImport[],
): LayeringViolations {
  const floorOf = new Map<string, number>();
  floors.forEach((floor, index) => {
    for (const part of floor.parts) floorOf.set(part, index);
  });
  const unplaced = files
    .filter((file) => !floorOf.has(partOf(file)))
    .map(
      (file) => `src/${file}: part '${partOf(file)}' is on no floor; add it to test/architecture/floors.ts`,
    );
  const upward: string[] = [];
  const sideways: string[] = [];
  for (const edge of edges) {
    const fromPart = partOf(edge.from);
    const toPart = partOf(edge.to);
    if (fromPart === toPart) continue;
    const fromFloor = floorOf.get(fromPart);
    const toFloor = floorOf.get(toPart);
    if (fromFloor === undefined || toFloor === undefined) continue;
    const where = `src/${edge.from}:${edge.line} ${edge.kind} '${edge.specifier}' (src/${edge.to})`;
    if (toFloor < fromFloor) {
      upward.push(
        `${where}: ${fromPart} on ${describeFloor(floors, fromFloor)} imports ${toPart} on higher ${describeFloor(floors, toFloor)}`,
      );
    } else if (toFloor === fromFloor && !allowed.some((a) => a.from === fromPart && a.to === toPart)) {
      sideways.push(
        `${where}: ${fromPart} and ${toPart} share ${describeFloor(floors, fromFloor)} and must not import each other`,
      );
    }
  }
  return { unplaced, upward, sideways };
}
