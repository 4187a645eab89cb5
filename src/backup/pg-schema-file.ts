/**
 * The file format of one PostgreSQL schema in a backup (pg-snapshot.ts writes it, pg-schema-load.ts
 * loads it): Tresor's own framing around PostgreSQL's binary COPY format, so a restore needs no
 * tool but a connection.
 *
 *   file   := MAGIC table* 'Z'
 *   MAGIC  := the 12 bytes "TRESOR-PGS1\n"
 *   table  := 'T' u32 len JSON{table, columns, sequences}   the table's name, its column list in
 *                                                            the order of the data, and the values of
 *                                                            the sequences its columns draw from
 *             ('D' u32 len bytes)*                          the table's rows: together one whole
 *                                                            `COPY … TO STDOUT (FORMAT binary)` stream
 *                                                            (www.postgresql.org/docs/current/sql-copy.html,
 *                                                            "Binary Format"), in pieces as it came
 *             'E'                                           end of the table
 *
 * u32 is big-endian. Tables come parents first (a table another one references by foreign key
 * comes before it), then by name, so a restore loads them in file order. The migration history
 * (`kysely_migration`) is not in the file: the manifest's schemaVersion says how far a restore
 * migrates before it loads the rows.
 */
import type { FileHandle } from 'node:fs/promises';
import { BackupError } from './errors.ts';

export const PG_SCHEMA_FILE_MAGIC = Buffer.from('TRESOR-PGS1\n', 'ascii');

/** A frame's payload at most: COPY hands out far smaller pieces; a bigger length is a damaged file. */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export interface PgTableHeader {
  table: string;
  columns: string[];
  /** Sequence values by column (identity and serial columns): set again after the rows are loaded. */
  sequences: Record<string, number>;
}

export type PgSchemaFrame =
  | { kind: 'table'; header: PgTableHeader }
  | { kind: 'data'; bytes: Buffer }
  | { kind: 'end-table' }
  | { kind: 'end' };

/** The bytes of one frame. */
export function frameBytes(frame: PgSchemaFrame): Buffer {
  switch (frame.kind) {
    case 'table':
      return withLength('T', Buffer.from(JSON.stringify(frame.header), 'utf8'));
    case 'data':
      return withLength('D', frame.bytes);
    case 'end-table':
      return Buffer.from('E', 'ascii');
    case 'end':
      return Buffer.from('Z', 'ascii');
  }
}

function withLength(tag: string, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(tag, 0, 'ascii');
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** The frames of a schema file, checked as they are read; a damaged file throws BACKUP_INVALID. */
export async function* readPgSchemaFile(file: FileHandle, name: string): AsyncGenerator<PgSchemaFrame> {
  let position = 0;
  const read = async (length: number): Promise<Buffer> => {
    const buffer = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await file.read(buffer, got, length - got, position + got);
      if (bytesRead === 0) throw damaged(name, 'it ends early');
      got += bytesRead;
    }
    position += length;
    return buffer;
  };
  if (!(await read(PG_SCHEMA_FILE_MAGIC.length)).equals(PG_SCHEMA_FILE_MAGIC))
    throw damaged(name, 'it is not a PostgreSQL schema file of Tresor');
  let inTable = false;
  for (;;) {
    const tag = (await read(1)).toString('ascii');
    if (tag === 'Z') {
      if (inTable) throw damaged(name, 'a table is not ended');
      yield { kind: 'end' };
      return;
    }
    if (tag === 'E') {
      if (!inTable) throw damaged(name, 'a table ends that never began');
      inTable = false;
      yield { kind: 'end-table' };
      continue;
    }
    if (tag !== 'T' && tag !== 'D') throw damaged(name, 'an unknown frame');
    const length = (await read(4)).readUInt32BE(0);
    if (length > MAX_FRAME_BYTES) throw damaged(name, 'a frame is too long');
    const payload = await read(length);
    if (tag === 'D') {
      if (!inTable) throw damaged(name, 'rows outside a table');
      yield { kind: 'data', bytes: payload };
      continue;
    }
    if (inTable) throw damaged(name, 'a table begins inside another');
    inTable = true;
    yield { kind: 'table', header: parseHeader(payload, name) };
  }
}

function parseHeader(payload: Buffer, name: string): PgTableHeader {
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    throw damaged(name, 'a table header is not JSON');
  }
  const h = v as Partial<PgTableHeader>;
  const ok =
    typeof h === 'object' &&
    h !== null &&
    typeof h.table === 'string' &&
    Array.isArray(h.columns) &&
    h.columns.length > 0 &&
    h.columns.every((c) => typeof c === 'string') &&
    typeof h.sequences === 'object' &&
    h.sequences !== null &&
    Object.entries(h.sequences).every(([c, n]) => h.columns?.includes(c) && Number.isSafeInteger(n));
  if (!ok) throw damaged(name, 'a table header is malformed');
  return h as PgTableHeader;
}

function damaged(name: string, why: string): BackupError {
  return new BackupError('TRESOR_ERR_BACKUP_INVALID', `${name}: ${why}`);
}
