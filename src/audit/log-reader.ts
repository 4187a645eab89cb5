/**
 * Reads the audit log tables of a control store file (log-schema.ts) for `tresor audit verify` and
 * `tresor audit export`, read-only: the verifier must not be able to change what it checks, and it
 * may run beside a live server (WAL lets it read while the sequencer appends).
 *
 * Everything is read inside one read transaction, so checkpoints and entries come from one snapshot:
 * the sequencer commits entries no later than the checkpoint that covers them, so a snapshot never
 * holds a checkpoint larger than its log unless the log was cut.
 */
import Database from 'better-sqlite3';
import { TresorError } from '../errors.ts';
import { entriesOf, leafBatchesOf, type StoredBlock } from './leaf-batch-read.ts';
import { LEAF_BLOCK_SPAN } from './leaf-store.ts';
import {
  type LeafBatch,
  type VerifyEntry,
  type VerifyInput,
  type VerifyReport,
  verifyAuditLogAsync,
  verifyAuditLogInParallel,
} from './verify.ts';

export type AuditLogReaderErrorCode = 'TRESOR_ERR_AUDIT_STORE_UNREADABLE';

export class AuditLogReaderError extends TresorError<AuditLogReaderErrorCode> {
  constructor(message: string) {
    super('TRESOR_ERR_AUDIT_STORE_UNREADABLE', message);
  }
}

export interface AuditLogReader {
  readonly path: string;
  /** Signed checkpoint notes, by tree size. */
  checkpoints(): string[];
  /** Number of entries stored. */
  size(): number;
  /** Entries by row index, each with the level-0 hash stored for its index (null if none). */
  entries(): IterableIterator<VerifyEntry>;
  /**
   * The same entries for the verifier, about `rows` at a time: a LeafBatch where their blocks are
   * clean (leaf-batch-read.ts), else those entries one by one as entries().
   */
  leafBatches(rows?: number): IterableIterator<LeafBatch | VerifyEntry>;
  /** Ends the snapshot and closes the file. */
  close(): void;
}

export function openAuditLogReader(path: string): AuditLogReader {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new AuditLogReaderError(`cannot open ${path} read-only: ${(err as Error).message}`);
  }
  try {
    db.exec('BEGIN');
    // The snapshot starts with the first read, not with BEGIN: read now.
    db.prepare('SELECT count(*) FROM audit_checkpoints').pluck().get();
  } catch (err) {
    db.close();
    throw new AuditLogReaderError(`${path} holds no audit log: ${(err as Error).message}`);
  }
  return {
    path,
    checkpoints() {
      return db.prepare('SELECT note FROM audit_checkpoints ORDER BY size').pluck().all() as string[];
    },
    size() {
      return db.prepare('SELECT coalesce(sum(n), 0) FROM audit_leaves').pluck().get() as number;
    },
    *entries() {
      for (const e of leafBatches(db, LEAF_BATCH_ROWS)) yield* entriesOf(e);
    },
    leafBatches(rows = LEAF_BATCH_ROWS) {
      return leafBatches(db, rows);
    },
    close() {
      if (db.inTransaction) db.exec('COMMIT');
      db.close();
    },
  };
}

/** Rows per LeafBatch, about: about 1.5 MB of leaves at the usual ~385 bytes; 64 full blocks. */
const LEAF_BATCH_ROWS = 4096;

/**
 * The stored leaf blocks (leaf-store.ts) read a few thousand leaves at a time, along the primary key
 * (`idx >= from`), so every block is visited once, in order, and handed to leafBatchesOf: a clean run
 * of blocks becomes one LeafBatch of their inflated bytes (the verifier then works on the UTF-8 bytes
 * the leaf hash covers without decoding them); anything else goes leaf by leaf.
 */
function* leafBatches(db: Database.Database, rows: number): IterableIterator<LeafBatch | VerifyEntry> {
  if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError('rows must be a positive integer');
  const blocks = db.prepare('SELECT idx, n, block FROM audit_leaves WHERE idx >= ? ORDER BY idx LIMIT ?');
  const hashRange = storedLeafHashRange(db);
  const leafHashes = storedLeafHashes(db);
  const hashes = { range: hashRange, one: leafHashes };
  const perRead = Math.max(1, Math.ceil(rows / LEAF_BLOCK_SPAN));
  for (let from = Number.MIN_SAFE_INTEGER; ; ) {
    const batch = blocks.all(from, perRead) as StoredBlock[];
    const last = batch[batch.length - 1];
    if (last === undefined) return;
    yield* leafBatchesOf(batch, hashes);
    if (batch.length < perRead || !Number.isSafeInteger(last.idx + 1)) return;
    from = last.idx + 1;
  }
}

/** The level-0 hashes of [first, first + count) as one latin1 string, or null unless all are there, 32 bytes each. */
function storedLeafHashRange(db: Database.Database): (first: number, count: number) => string | null {
  const packed = packedLeafHashes(db);
  return (first, count) => {
    const [n, min, max, bytes, hashes] = packed.get(first, first + count) as PackedRow;
    if (n !== count || min !== first || max !== first + count - 1 || bytes !== count * 32) return null;
    return hashes !== null && hashes.length === bytes ? hashes.toString('latin1') : null;
  };
}

type PackedRow = [number, number | null, number | null, number | null, Buffer | null];

function packedLeafHashes(db: Database.Database): Database.Statement {
  return db
    .prepare(
      // The subquery's ORDER BY is the primary key's order (no sort step); an ORDER BY inside
      // group_concat would sort again and cost a tenth of the verifier's time. group_concat copies
      // blobs byte for byte (a UTF-8 database does not transcode); callers also check the length.
      `SELECT count(*), min(idx), max(idx), sum(length(hash)), CAST(group_concat(hash, '') AS BLOB)
         FROM (SELECT idx, hash FROM audit_nodes WHERE level = 0 AND idx >= ? AND idx < ? ORDER BY idx)`,
    )
    .raw();
}

/** Level-0 hashes fetched per chunk of this many indices. */
const HASH_CHUNK = 4096;

/**
 * The stored level-0 hash of each index, read a chunk at a time as one blob: one row per entry
 * costs a Buffer per row in better-sqlite3, which was a third of the verifier's time. A chunk that is
 * not one 32-byte hash for every index in it (rows deleted or mangled) is read row by row instead.
 * Asked for increasing indices, as entries() does; returns null where no hash is stored.
 * Packed hashes are handed out as latin1 strings (VerifyEntry allows it): a string slice is far
 * cheaper than a Buffer view per entry.
 */
function storedLeafHashes(db: Database.Database): (index: number) => Buffer | string | null {
  const packed = packedLeafHashes(db);
  const byRow = db
    .prepare('SELECT idx, hash FROM audit_nodes WHERE level = 0 AND idx >= ? AND idx < ?')
    .raw();
  let start = -1;
  let chunk: string | null = null; // the chunk's hashes back to back, one latin1 character per byte
  let rows: Map<number, Buffer> | null = null;
  return (index) => {
    if (!Number.isSafeInteger(index) || index < 0) return null;
    if (index < start || index >= start + HASH_CHUNK || start < 0) {
      start = index - (index % HASH_CHUNK);
      const [count, min, max, bytes, hashes] = packed.get(start, start + HASH_CHUNK) as PackedRow;
      // Packed hashes are usable when they are those of [start, start + count), 32 bytes each.
      if (
        count === 0 ||
        (min === start && max === start + count - 1 && bytes === count * 32 && hashes?.length === bytes)
      ) {
        chunk = hashes === null ? '' : hashes.toString('latin1');
        rows = null;
      } else {
        chunk = null;
        rows = new Map(byRow.all(start, start + HASH_CHUNK) as [number, Buffer][]);
      }
    }
    if (chunk !== null) {
      const offset = (index - start) * 32;
      return offset + 32 <= chunk.length ? chunk.slice(offset, offset + 32) : null;
    }
    return rows?.get(index) ?? null;
  };
}

/**
 * One consistent snapshot of a control store's audit log, whichever backend holds it: what `tresor
 * audit verify` and the scheduled verification read. The SQLite file's reader above hands its rows
 * synchronously; the PostgreSQL reader (log-reader-pg.ts) asynchronously; the verifier takes both.
 */
export interface AuditLogSnapshot {
  /** Where the log is, for messages: a file path, or a database URL with its password redacted. */
  readonly location: string;
  /** Signed checkpoint notes, by tree size. */
  checkpoints(): Promise<string[]>;
  /** Number of entry rows. */
  size(): Promise<number>;
  /** The rows for the verifier, a batch (an index range) at a time; see AuditLogReader.leafBatches. */
  leafBatches(rows?: number): Iterable<LeafBatch | VerifyEntry> | AsyncIterable<LeafBatch | VerifyEntry>;
  /** Entries by row index, one by one (the export); see AuditLogReader.entries. */
  entries(): Iterable<VerifyEntry> | AsyncIterable<VerifyEntry>;
  /** Ends the snapshot and closes the connection. */
  close(): Promise<void>;
}

/** The SQLite control store file's log as an AuditLogSnapshot. */
export function openSqliteLogSnapshot(path: string): AuditLogSnapshot {
  const reader = openAuditLogReader(path);
  return {
    location: path,
    checkpoints: async () => reader.checkpoints(),
    size: async () => reader.size(),
    leafBatches: (rows) => reader.leafBatches(rows),
    entries: () => reader.entries(),
    close: async () => reader.close(),
  };
}

/**
 * Verifies a snapshot: a synchronous one (SQLite) on worker threads beside this one
 * (verifyAuditLogInParallel), an asynchronous one (PostgreSQL) as its batches arrive.
 */
export async function verifyAuditLogSnapshot(
  snapshot: AuditLogSnapshot,
  input: Omit<VerifyInput, 'entries' | 'checkpoints'>,
  options: { workers?: number; nice?: number } = {},
): Promise<VerifyReport> {
  const checkpoints = await snapshot.checkpoints();
  const entries = snapshot.leafBatches();
  if (Symbol.iterator in entries)
    return verifyAuditLogInParallel({ ...input, entries, checkpoints }, options);
  return verifyAuditLogAsync({ ...input, entries, checkpoints });
}
