/** Plain-text tables for the CLI's readable output: one header row, columns padded, cells printable. */
import { printable } from './api-client.ts';

export function table(header: readonly string[], rows: readonly (readonly unknown[])[]): string {
  const all = [
    [...header],
    ...rows.map((r) => r.map((cell) => (cell === null || cell === undefined ? '-' : printable(cell)))),
  ];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
