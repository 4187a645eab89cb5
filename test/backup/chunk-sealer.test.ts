/**
 * The chunk sealer (src/backup/chunk-sealer.ts): the snapshot files as one stream of sealed chunks,
 * made on a worker thread at a lower CPU priority. Each chunk opens at its place under the key, the
 * chunks together are the files' bytes in order, the last (and only the last) is final, an empty
 * stream is one empty chunk, a file that shrank fails the stream, and on Linux the worker thread
 * runs at nice BACKUP_THREAD_NICE (its loader thread too) while the request thread keeps its own priority.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type SealedChunk, sealedChunks } from '../../src/backup/chunk-sealer.ts';
import type { SnapshotFile } from '../../src/backup/snapshot.ts';
import { openChunk } from '../../src/objects/chunk-cipher.ts';
import { BACKUP_THREAD_NICE } from '../../src/thread-priority.ts';

const dir = mkdtempSync(join(tmpdir(), 'tresor-sealer-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const BACKUP_ID = '20261206T120000Z-0a1b2c3d';

function file(name: string, bytes: Buffer): SnapshotFile {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { name, kind: 'tenant', tenant: null, schemaVersion: 'x', size: bytes.length, sha256: '', path };
}

async function all(files: SnapshotFile[], key: Buffer, chunkSize: number): Promise<SealedChunk[]> {
  const out: SealedChunk[] = [];
  for await (const c of sealedChunks({ files, key, backupId: BACKUP_ID, chunkSize })) out.push(c);
  return out;
}

/** Nice values of this process's threads (Linux /proc), by thread id. */
function threadNices(): Map<number, number> {
  const nices = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // proc(5): field 19 is nice; fields after the command's closing parenthesis start at field 3.
    nices.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
  }
  return nices;
}

describe('sealed chunks from a worker thread', () => {
  it('cuts the files into chunks that open at their place and are the files’ bytes in order', async () => {
    const key = randomBytes(32);
    const a = randomBytes(10_000);
    const b = randomBytes(5_003);
    const chunks = await all([file('a', a), file('b', b)], key, 4096);
    assert.equal(chunks.length, Math.ceil((a.length + b.length) / 4096));
    const plain = chunks.map((c, index) => {
      assert.equal(c.index, index);
      assert.equal(c.final, index === chunks.length - 1);
      return openChunk(key, { backupId: BACKUP_ID, index, final: c.final }, c.stored);
    });
    assert.deepEqual(Buffer.concat(plain), Buffer.concat([a, b]));
    assert.throws(() =>
      openChunk(key, { backupId: BACKUP_ID, index: 0, final: true }, (chunks[0] as SealedChunk).stored),
    );
  });

  it('makes one empty final chunk of an empty stream', async () => {
    const key = randomBytes(32);
    const [only, ...rest] = await all([file('empty', Buffer.alloc(0))], key, 4096);
    assert.equal(rest.length, 0);
    assert.ok(only?.final);
    assert.equal(openChunk(key, { backupId: BACKUP_ID, index: 0, final: true }, only.stored).length, 0);
  });

  it('fails when a file holds fewer bytes than the snapshot said', async () => {
    const short = { ...file('short', randomBytes(100)), size: 200 };
    await assert.rejects(all([short], randomBytes(32), 64), /TRESOR_ERR_BACKUP_FAILED|shrank/);
  });

  it('runs at a lower CPU priority than the thread that asks for the chunks (Linux)', async () => {
    const before = threadNices();
    const chunks = sealedChunks({
      files: [file('big', randomBytes(64 * 1024))],
      key: randomBytes(32),
      backupId: BACKUP_ID,
      chunkSize: 4096,
    });
    try {
      await chunks.next(); // the worker is running and has sealed a chunk
      // Every thread the worker brought: the worker's own, and from source on Node 20 and 22 the
      // thread of its TypeScript loader (Node 24 runs tsx's hooks in the worker's own thread), which
      // would stay at normal priority if the worker lowered its priority only once its module ran
      // (src/ts-worker.ts).
      const added = [...threadNices()].filter(([tid]) => !before.has(tid));
      assert.ok(added.length >= 1, 'the worker thread');
      assert.deepEqual(
        added.map(([, nice]) => nice),
        added.map(() => BACKUP_THREAD_NICE),
        'every new thread at the backup nice value',
      );
      assert.equal(
        threadNices().get(process.pid),
        before.get(process.pid),
        'the main thread keeps its priority',
      );
    } finally {
      await chunks.return(undefined);
    }
  });
});
