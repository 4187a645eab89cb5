/**
 * `tresor audit …`: check the audit log and export it.
 *
 *   tresor audit verify [--data-dir <dir> | --file <export.jsonl>] --public-key <key | @file> [--witness <dir>]
 *   tresor audit export [--data-dir <dir>] --out <file>
 *
 * verify exits 0 when the log verifies, 1 on any problem (the first bad index and each problem on
 * stdout, or one JSON report with --json), 2 on a usage error (unreadable key, store or witness).
 * It reads the store read-only and can run beside a live server.
 */
import { existsSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Command, CommanderError } from 'commander';
import { parseCheckpoint } from '../audit/checkpoint.ts';
import { AuditExportError, readAuditExport, writeAuditExport } from '../audit/export-file.ts';
import { openAuditLogReader } from '../audit/log-reader.ts';
import { parseNote, parseVerifierKey } from '../audit/note.ts';
import { type VerifyReport, verifyAuditLogAsync, verifyAuditLogInParallel } from '../audit/verify.ts';
import { createWitness } from '../audit/witness.ts';
import { controlStorePath } from '../server/control-store.ts';
import { info, out, warn } from './io.ts';

interface VerifyFlags {
  dataDir?: string;
  file?: string;
  publicKey?: string;
  witness?: string | false;
  origin?: string;
  json?: boolean;
}

interface ExportFlags {
  dataDir?: string;
  out: string;
  json?: boolean;
}

/** A usage error, printed here: main.ts exits with 2 on a CommanderError without printing it. */
function usage(message: string): CommanderError {
  warn(`tresor audit: ${message}`);
  return new CommanderError(2, 'commander.tresorUsage', `tresor audit: ${message}`);
}

function dataDirOf(flags: { dataDir?: string }): string {
  return resolve(flags.dataDir ?? process.env.TRESOR_DATA_DIR ?? '.tresor-data');
}

/** The verifier key from the flag, `@file`, or TRESOR_AUDIT_PUBLIC_KEY; checked before anything is read. */
function verifierKeyOf(flags: VerifyFlags): string {
  const given = flags.publicKey ?? process.env.TRESOR_AUDIT_PUBLIC_KEY;
  if (given === undefined || given === '') throw usage('--public-key is required (the audit verifier key)');
  let key = given;
  if (given.startsWith('@')) {
    try {
      key = readFileSync(given.slice(1), 'utf8').trim();
    } catch (err) {
      throw usage(`cannot read the public key file: ${(err as Error).message}`);
    }
  }
  try {
    parseVerifierKey(key);
  } catch (err) {
    throw usage((err as Error).message);
  }
  return key;
}

async function witnessNotes(dir: string): Promise<string[]> {
  const witness = createWitness(dir);
  const notes: string[] = [];
  try {
    for await (const note of witness.all()) notes.push(note);
    const latest = await witness.latest();
    if (latest !== null && !notes.includes(latest)) notes.push(latest);
  } catch (err) {
    throw usage(`cannot read the witness in ${dir}: ${(err as Error).message}`);
  }
  return notes;
}

function printReport(report: VerifyReport, source: string, json: boolean): void {
  if (json) {
    out({ source, ...report }, true);
    return;
  }
  const lines = [
    `${report.ok ? 'OK' : 'FAILED'}: ${source}`,
    `  entries ${report.size}, store checkpoints ${report.checkpoints}, witness checkpoints ${report.witnessCheckpoints}, verified up to ${report.verifiedSize}`,
  ];
  if (!report.ok) {
    lines.push(`  first bad index: ${report.firstBadIndex ?? 'none (checkpoint problems only)'}`);
    for (const p of report.problems) {
      const at = p.index === undefined ? '' : ` at index ${p.index}`;
      lines.push(`  ${p.kind}${at}: ${p.message}`);
    }
    if (report.omittedProblems > 0) lines.push(`  … and ${report.omittedProblems} more problems`);
  } else if (report.verifiedSize < report.size) {
    lines.push(
      `  note: entries [${report.verifiedSize}, ${report.size}) are not covered by a checkpoint yet`,
    );
  }
  out(lines.join('\n'), false);
}

async function verifyCommand(flags: VerifyFlags): Promise<void> {
  const verifierKey = verifierKeyOf(flags);
  if (flags.file !== undefined && flags.dataDir !== undefined) {
    throw usage('give either --data-dir or --file, not both');
  }
  const origin = flags.origin === undefined ? {} : { origin: flags.origin };
  let report: VerifyReport;
  let source: string;
  if (flags.file !== undefined) {
    source = resolve(flags.file);
    if (!existsSync(source)) throw usage(`no such export file: ${source}`);
    const witness = typeof flags.witness === 'string' ? await witnessNotes(resolve(flags.witness)) : [];
    try {
      const file = await readAuditExport(source);
      report = await verifyAuditLogAsync({
        entries: file.entries,
        checkpoints: file.checkpoints,
        witness,
        verifierKey,
        ...(flags.origin === undefined && file.header.origin !== null
          ? { origin: file.header.origin }
          : origin),
      });
      if (report.size < file.header.size) {
        report.problems.push({
          kind: 'truncated',
          index: report.size,
          message: `the export announces ${file.header.size} entries but holds ${report.size}`,
        });
        report.ok = false;
        report.firstBadIndex = Math.min(report.firstBadIndex ?? report.size, report.size);
      }
    } catch (err) {
      if (!(err instanceof AuditExportError)) throw err;
      // A line that is not even well-formed: the file was altered (or cut) by something.
      report = malformedReport(err);
    }
  } else {
    const dataDir = dataDirOf(flags);
    source = controlStorePath(dataDir);
    const witnessDir = typeof flags.witness === 'string' ? resolve(flags.witness) : join(dataDir, 'witness');
    if (typeof flags.witness === 'string' && !existsSync(witnessDir))
      throw usage(`no witness folder ${witnessDir}`);
    const witness = flags.witness === false ? [] : await witnessNotes(witnessDir);
    if (flags.witness !== false && witness.length === 0) {
      info(
        `tresor audit: the witness in ${witnessDir} holds no checkpoint; a rollback of the store cannot be seen`,
      );
    }
    let reader: ReturnType<typeof openAuditLogReader>;
    try {
      reader = openAuditLogReader(source);
    } catch (err) {
      throw usage((err as Error).message);
    }
    try {
      report = await verifyAuditLogInParallel({
        entries: reader.leafBatches(),
        checkpoints: reader.checkpoints(),
        witness,
        verifierKey,
        ...origin,
      });
    } finally {
      reader.close();
    }
  }
  printReport(report, source, flags.json === true);
  process.exitCode = report.ok ? 0 : 1;
}

function malformedReport(err: AuditExportError): VerifyReport {
  // Line 1 is the header, so entry lines start at line 2 with index 0.
  const index = err.line >= 2 ? err.line - 2 : 0;
  return {
    ok: false,
    size: 0,
    checkpoints: 0,
    witnessCheckpoints: 0,
    verifiedSize: 0,
    origin: null,
    firstBadIndex: index,
    problems: [{ kind: 'entry-modified', index, message: `malformed export file: ${err.message}` }],
    omittedProblems: 0,
  };
}

async function exportCommand(flags: ExportFlags): Promise<void> {
  const path = resolve(flags.out);
  let reader: ReturnType<typeof openAuditLogReader>;
  try {
    reader = openAuditLogReader(controlStorePath(dataDirOf(flags)));
  } catch (err) {
    throw usage((err as Error).message);
  }
  try {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(path, 'wx', 0o600); // never overwrite: an export is evidence
    } catch (err) {
      throw usage(`cannot create ${path}: ${(err as Error).message}`);
    }
    const checkpoints = reader.checkpoints();
    const stream = handle.createWriteStream();
    const written = await writeAuditExport(
      { origin: originOf(checkpoints), size: reader.size(), entries: reader.entries(), checkpoints },
      stream,
    );
    await new Promise<void>((res, rej) => stream.end((err?: Error | null) => (err ? rej(err) : res())));
    const again = await open(path, 'r');
    await again.sync().finally(() => again.close());
    out(
      flags.json
        ? { file: path, ...written }
        : `exported ${written.entries} entries and ${written.checkpoints} checkpoints to ${path}`,
      flags.json === true,
    );
  } finally {
    reader.close();
  }
}

// The origin named by the latest checkpoint, unverified: the file's header is only a hint.
function originOf(notes: readonly string[]): string | null {
  const last = notes.at(-1);
  if (last === undefined) return null;
  try {
    return parseCheckpoint(parseNote(last).text).origin;
  } catch {
    warn('tresor audit: the latest checkpoint is malformed; the export header names no origin');
    return null;
  }
}

export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('the tamper-evident audit log: verify and export');

  audit
    .command('verify')
    .description(
      'recompute the Merkle tree from the store (or an export file) and check every signed checkpoint and the witness; exit 1 on any problem',
    )
    .option(
      '--data-dir <folder>',
      'data folder holding control.sqlite; env TRESOR_DATA_DIR (default ./.tresor-data)',
    )
    .option('--file <export>', 'verify an export file (tresor audit export) offline instead of a store')
    .option(
      '--public-key <key>',
      'the checkpoint verifier key (name+id+base64, as GET /v1/audit/public-key returns), or @file; env TRESOR_AUDIT_PUBLIC_KEY',
    )
    .option('--witness <folder>', 'witness folder (default <data dir>/witness; none for --file)')
    .option('--no-witness', 'do not read the witness')
    .option('--origin <origin>', "the log's origin line (default: that of the store's checkpoints)")
    .option('--json', 'machine-readable report')
    .action(verifyCommand);

  audit
    .command('export')
    .description('write the log, its entries and signed checkpoints, to a JSON Lines file (mode 0600)')
    .option(
      '--data-dir <folder>',
      'data folder holding control.sqlite; env TRESOR_DATA_DIR (default ./.tresor-data)',
    )
    .requiredOption('--out <file>', 'file to create (never overwritten)')
    .option('--json', 'machine-readable output')
    .action(exportCommand);
}
