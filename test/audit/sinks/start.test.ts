/**
 * Starting the sinks from the sinks file: none configured means no dispatcher; configured sinks
 * get what the log holds at start and, through the log's listeners, what it gains afterwards.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startSinks } from '../../../src/audit/sinks/start.ts';
import { MemoryLog, tempDir } from './helpers.ts';

/** The audit log as startSinks sees it, over a MemoryLog, with the listeners it registers. */
function fakeAudit(log: MemoryLog) {
  const listeners: (() => void)[] = [];
  return {
    listeners,
    audit: {
      reader: {
        entries: async (o: { from: number; limit: number; below?: number }) =>
          (await log.readEntries(o.from, Math.min(o.limit, (o.below ?? Infinity) - o.from))).map((e) => ({
            ...e,
            leafHash: '',
          })),
        checkpointsAfter: async (after: number, limit: number) =>
          (await log.readCheckpoints(after, limit)).map((c) => ({ ...c, at: '' })),
      },
      sequencer: { treeHead: () => ({ size: log.entries.length, root: Buffer.alloc(32) }) },
      onEntries: (listener: () => void) => listeners.push(listener),
      onCheckpoint: (listener: () => void) => listeners.push(listener),
    },
  };
}

const quiet = () => {};

test('starts nothing without a sinks file or with an empty one', async (t) => {
  const dir = await tempDir(t);
  const { audit } = fakeAudit(new MemoryLog());
  assert.equal(
    startSinks({ sinksFile: undefined, stateDir: join(dir, 'state'), audit, warn: quiet }),
    undefined,
  );
  const file = join(dir, 'sinks.json');
  await writeFile(file, '[]');
  assert.equal(startSinks({ sinksFile: file, stateDir: join(dir, 'state'), audit, warn: quiet }), undefined);
});

test('feeds the configured sinks from the log, at start and on each new batch', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'audit.jsonl');
  const file = join(dir, 'sinks.json');
  await writeFile(
    file,
    JSON.stringify([{ kind: 'file', name: 'siem-file', path, maxBytes: 1 << 20, keep: 2 }]),
  );
  const log = new MemoryLog().append(3).checkpoint();
  const { audit, listeners } = fakeAudit(log);
  const stateDir = join(dir, 'state');
  const dispatcher = startSinks({ sinksFile: file, stateDir, audit, warn: quiet });
  assert.ok(dispatcher);
  t.after(() => dispatcher.close());
  assert.equal(listeners.length, 2, 'follows both entries and checkpoints');
  await dispatcher.flush();
  const lines = async () =>
    (await readFile(path, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string });
  assert.deepEqual(
    (await lines()).map((l) => l.type),
    ['entry', 'entry', 'entry', 'checkpoint'],
  );

  log.append(2);
  for (const listener of listeners) listener();
  await dispatcher.flush();
  assert.equal((await lines()).length, 6);
  assert.deepEqual(await readdir(stateDir), ['siem-file.cursor.json']);
});
