/**
 * The sequencer's worker thread (sequencer-thread.ts). Two requests, always in this order for a batch:
 *
 *   sequence  the batch's events → leaves, tree nodes and new peaks (sequenceBatch); the leaves and
 *             peaks go back, the whole batch is kept for the write;
 *   write     the kept batch, with its tenants and the sources' new cursors, in ONE transaction of
 *             this thread's own connection to the control store (BEGIN IMMEDIATE … COMMIT): the
 *             same statements the main thread would run (logStatements). The main thread sends it
 *             only while its own writer of that store is idle (SqliteStore.whileIdle).
 *
 * A request that throws answers with the error's name, code (SQLITE_FULL, SQLITE_READONLY, …) and
 * message, and the transaction is rolled back.
 */
import { parentPort } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { openSqlite } from '../store/sqlite/open.ts';
import { type LeafBlockRow, tailBlockQuery, tailOf } from './leaf-store.ts';
import { type LogAppend, logStatements } from './log-append.ts';
import { type SequencedBatch, sequenceBatch, unpackHashes } from './sequence-batch.ts';

export type SequencerRequest =
  | { op: 'sequence'; id: number; size: number; peaks: Uint8Array; events: string[] }
  | {
      op: 'write';
      id: number;
      batch: number;
      path: string;
      tenants: (string | null)[];
      cursors: [string, number][];
    }
  | { op: 'close'; id: number };

export interface SequencerReply {
  id: number;
  leaves?: string[];
  peaks?: Uint8Array;
  error?: { name: string; code?: string; message: string };
}

const port = parentPort;
if (port === null) throw new Error('sequencer-worker.ts runs as a worker thread');

let db: Database.Database | undefined;
let dbPath: string | undefined;
const statements = new Map<string, Database.Statement>();
let kept: { id: number; size: number; batch: SequencedBatch } | undefined;

function connection(path: string): Database.Database {
  if (db !== undefined && dbPath === path) return db;
  db?.close();
  statements.clear();
  db = openSqlite(path, { fileMustExist: true });
  dbPath = path;
  return db;
}

function write(request: Extract<SequencerRequest, { op: 'write' }>): void {
  if (kept?.id !== request.batch) throw new Error('no sequenced batch is kept for this write');
  const { size, batch } = kept;
  const hashes = unpackHashes(batch.nodeHashes);
  const conn = connection(request.path);
  const run = conn.transaction(() => {
    // The block the log ends inside, read in this transaction: the new leaves complete it.
    const tailQuery = tailBlockQuery(size);
    const tailRows =
      tailQuery === null ? [] : (conn.prepare(tailQuery.sql).all(...tailQuery.parameters) as LeafBlockRow[]);
    const append: LogAppend = {
      entries: batch.leaves.map((leaf, i) => [size + i, request.tenants[i] ?? null, leaf] as const),
      tail: tailOf(tailRows, size),
      nodes: hashes.map(
        (hash, i) => [batch.nodeLevels[i] as number, batch.nodeIndexes[i] as number, hash] as const,
      ),
      cursors: request.cursors,
    };
    for (const { sql, parameters } of logStatements(append)) {
      let statement = statements.get(sql);
      if (statement === undefined) {
        statement = conn.prepare(sql);
        statements.set(sql, statement);
      }
      statement.run(...parameters);
    }
  });
  run.immediate();
  kept = undefined;
}

port.on('message', (request: SequencerRequest) => {
  try {
    if (request.op === 'sequence') {
      const batch = sequenceBatch(request);
      kept = { id: request.id, size: request.size, batch };
      const peaks = batch.peaks.slice();
      port.postMessage({ id: request.id, leaves: batch.leaves, peaks } satisfies SequencerReply, [
        peaks.buffer as ArrayBuffer,
      ]);
    } else if (request.op === 'write') {
      write(request);
      port.postMessage({ id: request.id } satisfies SequencerReply);
    } else {
      db?.close();
      db = undefined;
      port.postMessage({ id: request.id } satisfies SequencerReply);
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    const error = {
      name: e.name,
      message: e.message,
      ...(typeof e.code === 'string' ? { code: e.code } : {}),
    };
    port.postMessage({ id: request.id, error } satisfies SequencerReply);
  }
});
