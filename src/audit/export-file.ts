/**
 * The audit export file, verifiable offline with nothing but the verifier key (`tresor audit verify
 * --export`). JSON Lines, UTF-8, one record per line, stored inside an age archive
 * (export-archive.ts) unless the operator asked for plaintext:
 *
 *   {"format":"tresor-audit-export","version":1,"origin":"tresor.example/audit","size":n}
 *   {"index":0,"leaf":"<the entry's canonical JSON text>"}        n lines, by index
 *   {"checkpoint":"<signed note text>"}                             every checkpoint, by size
 *
 * The leaf is carried as a JSON string so its bytes survive exactly; nothing in the file is trusted:
 * the header only says what to expect, the signed checkpoints vouch for the leaves.
 */
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { TresorError } from '../errors.ts';
import type { VerifyEntry } from './verify.ts';

export const AUDIT_EXPORT_FORMAT = 'tresor-audit-export';
export const AUDIT_EXPORT_VERSION = 1;

export interface AuditExportHeader {
  format: typeof AUDIT_EXPORT_FORMAT;
  version: typeof AUDIT_EXPORT_VERSION;
  origin: string | null;
  size: number;
}

export interface AuditExportSource {
  origin: string | null;
  size: number;
  /** Synchronous from the store; asynchronous when archived entries are read back from segments first. */
  entries: Iterable<{ index: number; leaf: string }> | AsyncIterable<{ index: number; leaf: string }>;
  checkpoints: Iterable<string>;
}

export interface AuditExport {
  header: AuditExportHeader;
  /** Every checkpoint note of the file (read first: they are few and the verifier needs them first). */
  checkpoints: string[];
  /** The entries, streamed from the file; a malformed line throws AuditExportError. */
  entries: AsyncIterable<VerifyEntry>;
}

export type AuditExportErrorCode = 'TRESOR_ERR_AUDIT_EXPORT_MALFORMED';

export class AuditExportError extends TresorError<AuditExportErrorCode> {
  /** 1-based line of the file at fault. */
  readonly line: number;

  constructor(line: number, message: string) {
    super('TRESOR_ERR_AUDIT_EXPORT_MALFORMED', `export line ${line}: ${message}`);
    this.line = line;
  }
}

/** Lines are gathered into writes of about this many characters. */
const WRITE_CHUNK = 1 << 16;

/** Writes the export to `out` (not ended: the caller owns it), honouring back-pressure. */
export async function writeAuditExport(
  source: AuditExportSource,
  out: Writable,
): Promise<{ entries: number; checkpoints: number }> {
  let pending = '';
  const flush = async () => {
    if (pending.length === 0) return;
    const ok = out.write(pending);
    pending = '';
    if (!ok) await once(out, 'drain');
  };
  const header: AuditExportHeader = {
    format: AUDIT_EXPORT_FORMAT,
    version: AUDIT_EXPORT_VERSION,
    origin: source.origin,
    size: source.size,
  };
  pending += `${JSON.stringify(header)}\n`;
  let entries = 0;
  const line = async ({ index, leaf }: { index: number; leaf: string }) => {
    pending += `{"index":${index},"leaf":${JSON.stringify(leaf)}}\n`;
    entries += 1;
    if (pending.length >= WRITE_CHUNK) await flush();
  };
  if (Symbol.asyncIterator in source.entries) for await (const e of source.entries) await line(e);
  else for (const e of source.entries) await line(e);
  let checkpoints = 0;
  for (const note of source.checkpoints) {
    pending += `${JSON.stringify({ checkpoint: note })}\n`;
    checkpoints += 1;
  }
  await flush();
  return { entries, checkpoints };
}

/** Where the export's text is read from: a plaintext file, or a fresh stream per pass (an archive). */
export type AuditExportInput = string | (() => Promise<Readable>);

/**
 * Opens an export file: reads the header and the checkpoints in a first pass (checking the order of
 * the sections), and streams the entries in a second one. A stream that fails (an archive whose
 * ciphertext was changed) throws AuditExportError at the line it reached.
 */
export async function readAuditExport(source: AuditExportInput): Promise<AuditExport> {
  let header: AuditExportHeader | undefined;
  const checkpoints: string[] = [];
  let line = 0;
  for await (const text of lines(source, () => line + 1)) {
    line += 1;
    if (line === 1) {
      header = parseHeader(text);
    } else if (text.startsWith('{"checkpoint":')) {
      checkpoints.push(parseCheckpointLine(line, text));
    } else if (checkpoints.length > 0) {
      throw new AuditExportError(line, 'only checkpoints may follow the first checkpoint');
    } else if (!text.startsWith('{"index":')) {
      throw new AuditExportError(line, 'neither an entry nor a checkpoint');
    }
  }
  if (header === undefined) throw new AuditExportError(1, 'empty file');
  return { header, checkpoints, entries: readEntries(source) };
}

async function* readEntries(source: AuditExportInput): AsyncIterable<VerifyEntry> {
  let line = 0;
  for await (const text of lines(source, () => line + 1)) {
    line += 1;
    if (line === 1) continue;
    if (text.startsWith('{"checkpoint":')) return;
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch {
      throw new AuditExportError(line, 'not JSON');
    }
    const { index, leaf, ...rest } = record as { index?: unknown; leaf?: unknown };
    if (!Number.isSafeInteger(index) || typeof leaf !== 'string' || Object.keys(rest).length > 0) {
      throw new AuditExportError(line, 'an entry line is {"index": <integer>, "leaf": <string>}');
    }
    yield { index: index as number, leaf };
  }
}

function parseHeader(text: string): AuditExportHeader {
  let h: Partial<AuditExportHeader> | undefined;
  try {
    h = JSON.parse(text) as Partial<AuditExportHeader>;
  } catch {
    h = undefined;
  }
  if (h?.format !== AUDIT_EXPORT_FORMAT) throw new AuditExportError(1, `not a ${AUDIT_EXPORT_FORMAT} file`);
  if (h.version !== AUDIT_EXPORT_VERSION) throw new AuditExportError(1, `unsupported version ${h.version}`);
  if (
    !Number.isSafeInteger(h.size) ||
    (h.size as number) < 0 ||
    !(h.origin === null || typeof h.origin === 'string')
  ) {
    throw new AuditExportError(1, 'malformed header');
  }
  return { format: h.format, version: h.version, origin: h.origin, size: h.size as number };
}

function parseCheckpointLine(line: number, text: string): string {
  let record: { checkpoint?: unknown } | undefined;
  try {
    record = JSON.parse(text) as { checkpoint?: unknown };
  } catch {
    record = undefined;
  }
  if (typeof record?.checkpoint !== 'string' || Object.keys(record).length !== 1) {
    throw new AuditExportError(line, 'a checkpoint line is {"checkpoint": <note text>}');
  }
  return record.checkpoint;
}

async function* lines(source: AuditExportInput, lineNow: () => number): AsyncIterable<string> {
  let input: Readable | undefined;
  try {
    input = typeof source === 'string' ? createReadStream(source) : await source();
    input.setEncoding('utf8');
    yield* createInterface({ input, crlfDelay: Infinity });
  } catch (err) {
    if (err instanceof AuditExportError) throw err;
    throw new AuditExportError(lineNow(), `the file cannot be read: ${(err as Error).message}`);
  } finally {
    input?.destroy(); // a pass may stop early (the entries end where the checkpoints begin)
  }
}
