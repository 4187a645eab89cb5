// One pass of the tests, started by scripts/run-tests.mjs with the preloads every test file gets
// (node --import tsx --import …/test-time-limit.mjs --import …/test-password-cost.mjs; the files'
// processes inherit these flags): node:test's run() on the files named, two at a time, started in
// the order named. Not `node --test <files>`: that sorts its files by path (Node's
// createTestFileList), so no order given to it holds. The spec report goes to stdout, the slowest
// files (scripts/test-file-times.mjs) to stderr; the exit status is 1 when a test or a file failed.

import { PassThrough } from 'node:stream';
import { finished } from 'node:stream/promises';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import fileTimes from './test-file-times.mjs';

const events = run({
  files: process.argv.slice(2),
  concurrency: 2,
  // A test that timed out leaves its handles open: its file would otherwise wait for the run's limit.
  forceExit: true,
});

let failed = false;
const toSpec = new PassThrough({ objectMode: true });
const toTimes = new PassThrough({ objectMode: true });
events.on('data', (event) => {
  if (event.type === 'test:fail' && !event.data.todo) failed = true;
  toSpec.write(event);
  toTimes.write(event);
});
events.on('end', () => {
  toSpec.end();
  toTimes.end();
});
const specReport = toSpec.pipe(new spec());
specReport.pipe(process.stdout);
const times = toTimes.compose(fileTimes);
times.pipe(process.stderr);
await Promise.all([finished(specReport), finished(times)]);
process.exitCode = failed ? 1 : 0;
