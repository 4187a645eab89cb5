// A test reporter (node:test) that prints, once a pass is over, its slowest test files: the sum of
// each file's top-level tests and suites (they run one after another within a file). npm test must
// stay under 15 minutes on 2 cores (docs/operations.md); this says where the time went.
import { relative } from 'node:path';

const SHOWN = 15;

export default async function* fileTimes(source) {
  const byFile = new Map();
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { data } = event;
    if (data.nesting !== 0 || data.file === undefined) continue;
    byFile.set(data.file, (byFile.get(data.file) ?? 0) + (data.details?.duration_ms ?? 0));
  }
  const slowest = [...byFile].sort((a, b) => b[1] - a[1]).slice(0, SHOWN);
  const total = [...byFile.values()].reduce((sum, ms) => sum + ms, 0);
  yield `\nrun-tests: the ${slowest.length} slowest of ${byFile.size} files (tests in all files: ${Math.round(total / 1000)} s)\n`;
  for (const [file, ms] of slowest)
    yield `  ${(ms / 1000).toFixed(1).padStart(7)} s  ${relative(process.cwd(), file)}\n`;
}
