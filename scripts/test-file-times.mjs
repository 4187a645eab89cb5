// A test reporter (node:test) that prints, once a pass is over, its slowest test files: the sum of
// each file's top-level tests and suites (they run one after another within a file). npm test must
// stay under 15 minutes on 2 cores (docs/performance.md, "The test suite's time"); this says where
// the time went. With TRESOR_TEST_RECORD_DURATIONS=1 it also writes the pass's files of 5 s or more
// into scripts/test-durations.json, the order scripts/run-tests.mjs starts them in (slowest first):
// run it so on a quiet machine, and commit the list.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const SHOWN = 15;
/** The shortest file the list keeps: below it, the order makes no difference to a pass's end. */
const RECORDED_FROM_S = 5;
const DURATIONS = join(dirname(fileURLToPath(import.meta.url)), 'test-durations.json');

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
  if (process.env.TRESOR_TEST_RECORD_DURATIONS === '1') yield record(byFile);
}

/**
 * Writes this pass's measured files into the list: each file run is set (or dropped when under
 * RECORDED_FROM_S), the files it did not run keep their entries, so a run of a few files updates
 * those. The other pass's section is read again just before the write (the passes run together).
 */
function record(byFile) {
  const backend = process.env.TRESOR_TEST_BACKEND || 'sqlite';
  const root = join(dirname(DURATIONS), '..');
  const list = JSON.parse(readFileSync(DURATIONS, 'utf8'));
  const section = { ...(list[backend] ?? {}) };
  for (const [file, ms] of byFile) {
    const name = relative(root, file);
    if (ms >= RECORDED_FROM_S * 1000) section[name] = Math.round(ms / 100) / 10;
    else delete section[name];
  }
  list[backend] = Object.fromEntries(Object.entries(section).sort((a, b) => b[1] - a[1]));
  const temporary = `${DURATIONS}.${process.pid}`;
  writeFileSync(temporary, `${JSON.stringify(list, null, 2)}\n`);
  renameSync(temporary, DURATIONS);
  return `run-tests: recorded the ${backend} pass's files of ${RECORDED_FROM_S} s or more in ${relative(process.cwd(), DURATIONS)}\n`;
}
