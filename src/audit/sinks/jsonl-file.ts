/**
 * The JSON Lines file sink (jsonlines.org): one record per line, for a log shipper (Filebeat,
 * Vector, Fluent Bit) or an archive.
 *
 *   {"type":"entry","index":12,"entry":{...}}
 *   {"type":"checkpoint","size":13,"note":"tresor.example/audit\n13\n...\n"}
 *
 * `entry` is the stored leaf text itself, byte for byte (RFC 8785 canonical JSON), so anyone can
 * recompute the RFC 9162 leaf hash SHA-256(0x00 ‖ leaf) from the line without re-canonicalising.
 *
 * A batch is appended with one write and fsynced before the promise resolves. Rotation is by
 * size, like logrotate's numbered scheme: `path` → `path.1` → … → `path.<keep>`, the oldest
 * dropped; a line never straddles two files. The file is 0600 (it holds the audit trail of who
 * read what), re-opened in append mode after a restart; a line torn by a crash is closed off with
 * a newline so the next record starts on its own line.
 */
import { type FileHandle, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AuditSink, SequencedEntry } from './types.ts';

export interface JsonlFileSinkOptions {
  name: string;
  path: string;
  /** Rotate before a line would take the file past this size. */
  maxBytes: number;
  /** Rotated files kept beside `path` (≥ 1). */
  keep: number;
}

const FILE_MODE = 0o600;

/** The record of one entry, shared with the syslog sink's MSG: the leaf is embedded verbatim. */
export function entryRecord(entry: SequencedEntry): string {
  if (!Number.isSafeInteger(entry.index) || entry.index < 0)
    throw new TypeError('entry index must be a count');
  // RFC 8785 output never holds a raw line break; one would split the JSON Lines record.
  if (/[\r\n]/.test(entry.leaf)) throw new TypeError(`entry ${entry.index} is not canonical JSON`);
  return `{"type":"entry","index":${entry.index},"entry":${entry.leaf}}`;
}

/** The record of one checkpoint; the note keeps its newlines, JSON-escaped. */
export function checkpointRecord(note: string, size: number): string {
  if (!Number.isSafeInteger(size) || size < 0) throw new TypeError('checkpoint size must be a count');
  return JSON.stringify({ type: 'checkpoint', size, note });
}

export function createJsonlFileSink(options: JsonlFileSinkOptions): AuditSink {
  const { name, path, maxBytes, keep } = options;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
    throw new TypeError('maxBytes must be a positive integer');
  if (!Number.isInteger(keep) || keep < 1) throw new TypeError('keep must be an integer ≥ 1');

  let file: FileHandle | undefined;
  let size = 0;
  let closed = false;
  // Appends are serialised: two batches never interleave, a rotation never races a write.
  let queue: Promise<unknown> = Promise.resolve();

  async function openCurrent(): Promise<FileHandle> {
    if (file !== undefined) return file;
    const handle = await open(path, 'a+', FILE_MODE);
    try {
      await handle.chmod(FILE_MODE); // an existing file keeps its mode on open
      size = (await handle.stat()).size;
      if (size > 0) {
        const last = Buffer.alloc(1);
        await handle.read(last, 0, 1, size - 1);
        if (last[0] !== 0x0a) {
          await handle.write('\n');
          size += 1;
        }
      }
    } catch (error) {
      await handle.close();
      throw error;
    }
    file = handle;
    return handle;
  }

  async function rotate(): Promise<void> {
    await file?.close();
    file = undefined;
    await rm(`${path}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i -= 1) {
      if (await exists(`${path}.${i}`)) await rename(`${path}.${i}`, `${path}.${i + 1}`);
    }
    await rename(path, `${path}.1`);
    await syncFolder(dirname(path));
    size = 0;
  }

  async function append(lines: readonly string[]): Promise<void> {
    if (closed) throw new Error(`file sink ${name} is closed`);
    let handle = await openCurrent();
    let chunk: Buffer[] = [];
    let chunkBytes = 0;
    const writeChunk = async () => {
      if (chunkBytes === 0) return;
      await handle.write(Buffer.concat(chunk, chunkBytes));
      size += chunkBytes;
      chunk = [];
      chunkBytes = 0;
    };
    for (const line of lines) {
      const bytes = Buffer.from(`${line}\n`, 'utf8');
      if (size + chunkBytes > 0 && size + chunkBytes + bytes.length > maxBytes) {
        await writeChunk();
        await handle.sync();
        await rotate();
        handle = await openCurrent();
        // A new file is a new directory entry: make it survive power loss too.
        await syncFolder(dirname(path));
      }
      chunk.push(bytes);
      chunkBytes += bytes.length;
    }
    await writeChunk();
    await handle.sync();
  }

  function enqueue(lines: readonly string[]): Promise<void> {
    const run = queue.then(() => append(lines));
    queue = run.catch(async () => {
      // After a failed write the size we track may be wrong: re-open and re-measure next time.
      const handle = file;
      file = undefined;
      await handle?.close().catch(() => undefined);
    });
    return run;
  }

  return {
    name,
    deliverEntries(entries) {
      try {
        return enqueue(entries.map(entryRecord));
      } catch (error) {
        return Promise.reject(error);
      }
    },
    deliverCheckpoint(note, checkpointSize) {
      try {
        return enqueue([checkpointRecord(note, checkpointSize)]);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    async close() {
      closed = true;
      await queue;
      await file?.close();
      file = undefined;
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
