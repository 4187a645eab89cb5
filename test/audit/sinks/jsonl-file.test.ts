/**
 * The JSON Lines file sink: records in order, the leaf embedded verbatim, fsynced appends,
 * size-based rotation that keeps `keep` files, mode 0600, and appending across restarts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { createJsonlFileSink } from '../../../src/audit/sinks/jsonl-file.ts';
import { makeEntry, tempDir } from './helpers.ts';

async function lines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), 'every record ends with a newline');
  return text === '' ? [] : text.slice(0, -1).split('\n');
}

test('writes one record per line, in order, with the leaf embedded byte for byte', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'audit.jsonl');
  const sink = createJsonlFileSink({ name: 'file', path, maxBytes: 1 << 20, keep: 3 });
  const entries = [0, 1, 2].map((i) => makeEntry(i, i === 1 ? null : 't-1'));
  await sink.deliverEntries(entries);
  await sink.deliverCheckpoint('tresor.test/audit\n3\nroot=\n\n— k sig\n', 3);
  await sink.close();

  const got = await lines(path);
  assert.equal(got.length, 4);
  for (const [i, entry] of entries.entries()) {
    assert.equal(got[i], `{"type":"entry","index":${i},"entry":${entry.leaf}}`);
    const record = JSON.parse(got[i] ?? '');
    assert.deepEqual(record.entry, JSON.parse(entry.leaf));
    // A reader can recompute the RFC 9162 leaf hash from the line alone.
    const embedded = (got[i] ?? '').slice((got[i] ?? '').indexOf('"entry":') + 8, -1);
    assert.equal(
      createHash('sha256')
        .update(Buffer.from([0]))
        .update(embedded)
        .digest('hex'),
      createHash('sha256')
        .update(Buffer.from([0]))
        .update(entry.leaf)
        .digest('hex'),
    );
  }
  assert.deepEqual(JSON.parse(got[3] ?? ''), {
    type: 'checkpoint',
    size: 3,
    note: 'tresor.test/audit\n3\nroot=\n\n— k sig\n',
  });
});

test('rotates by size: path, path.1 … path.<keep>, oldest dropped, no line split or lost among the kept', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'audit.jsonl');
  const lineBytes = Buffer.byteLength(`{"type":"entry","index":10,"entry":${makeEntry(10).leaf}}\n`);
  const maxBytes = lineBytes * 3; // three two-digit-index records per file
  const sink = createJsonlFileSink({ name: 'file', path, maxBytes, keep: 2 });
  for (let i = 10; i < 40; i += 5) {
    await sink.deliverEntries([0, 1, 2, 3, 4].map((n) => makeEntry(i + n)));
  }
  await sink.close();

  assert.deepEqual((await readdir(dir)).sort(), ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2']);
  const kept: number[] = [];
  for (const file of [`${path}.2`, `${path}.1`, path]) {
    assert.ok((await stat(file)).size <= maxBytes, `${file} is within maxBytes`);
    for (const line of await lines(file)) kept.push(JSON.parse(line).index);
  }
  // 30 records, 3 per file, 3 files kept: the newest 9, contiguous, ending with the last.
  assert.deepEqual(
    kept,
    Array.from({ length: 9 }, (_, i) => 31 + i),
  );
});

test('creates the file 0600 and tightens an existing, wider file to 0600', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'audit.jsonl');
  const sink = createJsonlFileSink({ name: 'file', path, maxBytes: 200, keep: 1 });
  await sink.deliverEntries([makeEntry(0), makeEntry(1)]); // the second rotates
  await sink.close();
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal((await stat(`${path}.1`)).mode & 0o777, 0o600);

  const other = join(dir, 'existing.jsonl');
  await writeFile(other, '');
  await chmod(other, 0o644);
  const again = createJsonlFileSink({ name: 'file', path: other, maxBytes: 1 << 20, keep: 1 });
  await again.deliverEntries([makeEntry(0)]);
  await again.close();
  assert.equal((await stat(other)).mode & 0o777, 0o600);
});

test('appends after a restart, and starts a torn last line afresh', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'audit.jsonl');
  const first = createJsonlFileSink({ name: 'file', path, maxBytes: 1 << 20, keep: 1 });
  await first.deliverEntries([makeEntry(0), makeEntry(1)]);
  await first.close();

  const second = createJsonlFileSink({ name: 'file', path, maxBytes: 1 << 20, keep: 1 });
  await second.deliverEntries([makeEntry(2)]);
  await second.close();
  assert.deepEqual(
    (await lines(path)).map((l) => JSON.parse(l).index),
    [0, 1, 2],
  );

  // A crash in the middle of a write leaves a partial record without its newline.
  await writeFile(path, '{"type":"entry","index":3,"ent', { flag: 'a' });
  const third = createJsonlFileSink({ name: 'file', path, maxBytes: 1 << 20, keep: 1 });
  await third.deliverEntries([makeEntry(3)]);
  await third.close();
  const got = await lines(path);
  assert.equal(got[3], '{"type":"entry","index":3,"ent');
  assert.equal(JSON.parse(got[4] ?? '').index, 3);
});

test('refuses a leaf with a raw line break, which would split a record', async (t) => {
  const dir = await tempDir(t);
  const sink = createJsonlFileSink({ name: 'file', path: join(dir, 'a.jsonl'), maxBytes: 1000, keep: 1 });
  await assert.rejects(
    sink.deliverEntries([{ index: 0, tenant: null, leaf: '{"a":\n1}' }]),
    /not canonical JSON/,
  );
  await sink.close();
});
