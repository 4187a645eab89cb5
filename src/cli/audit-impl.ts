/**
 * What `tresor audit verify` and `tresor audit export` do (audit.ts declares the commands and loads
 * this module only when one of them runs, so `tresor --help` does not load the audit code).
 */
import { existsSync, readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CommanderError } from 'commander';
import { type AuditArchive, archivedEntries } from '../audit/archived-segments.ts';
import { parseCheckpoint } from '../audit/checkpoint.ts';
import {
  type ArchiveIdentities,
  type ArchiveRecipients,
  AuditArchiveError,
  archiveEncrypter,
  encryptingStream,
  isAgeFile,
  openArchive,
} from '../audit/export-archive.ts';
import {
  AuditExportError,
  type AuditExportInput,
  readAuditExport,
  writeAuditExport,
} from '../audit/export-file.ts';
import type { AuditLogSnapshot } from '../audit/log-reader.ts';
import { parseNote, parseVerifierKey } from '../audit/note.ts';
import { type VerifyReport, verifyAuditLogAsync } from '../audit/verify.ts';
import { verifyAuditLogWithArchive } from '../audit/verify-archived.ts';
import { createWitness } from '../audit/witness.ts';
import { ConfigError, type DatabaseConfig, resolveDatabaseConfig } from '../config/server-config.ts';
import { archivedEndOf, type BackendConfig, openAuditLogOf } from '../server/backend.ts';
import { type ArchiveFlags, type CliArchive, cliArchive } from './audit-archive.ts';
import { info, out, readSecret, warn } from './io.ts';

/** How a passphrase reaches the command: a file (flag or env) or stdin, never the command line. */
interface PassphraseFlags {
  passphraseFile?: string;
  passphraseStdin?: boolean;
}

export interface VerifyFlags extends PassphraseFlags, ArchiveFlags {
  dataDir?: string;
  file?: string;
  export?: string;
  identity?: string[];
  publicKey?: string;
  witness?: string | false;
  origin?: string;
  json?: boolean;
}

export interface ExportFlags extends PassphraseFlags, ArchiveFlags {
  dataDir?: string;
  out: string;
  recipient?: string[];
  plaintext?: boolean;
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

/** Where the log is: `database.url` (TRESOR_DATABASE_URL, or the TRESOR_CONFIG file's), else the data folder. */
function databaseOf(): DatabaseConfig {
  try {
    return resolveDatabaseConfig({}, process.env);
  } catch (err) {
    if (err instanceof ConfigError) throw usage(err.problems.join('; '));
    throw err;
  }
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

/** The passphrase file named by the flag or TRESOR_EXPORT_PASSPHRASE_FILE, if any. */
function passphraseFileOf(flags: PassphraseFlags): string | undefined {
  const env = process.env.TRESOR_EXPORT_PASSPHRASE_FILE;
  return flags.passphraseFile ?? (env === undefined || env === '' ? undefined : env);
}

/** The passphrase from its file or stdin (one line), or undefined when none is asked for. */
async function passphraseOf(flags: PassphraseFlags): Promise<string | undefined> {
  const file = passphraseFileOf(flags);
  if (flags.passphraseStdin === true && flags.passphraseFile !== undefined)
    throw usage('give either --passphrase-file or --passphrase-stdin, not both');
  if (flags.passphraseStdin === true) return readSecret('archive passphrase: ');
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch {
    throw usage(`cannot read the passphrase file ${file}`);
  }
}

/** Whom the export is encrypted to, or 'plaintext'; checked before the store is opened. */
async function exportTargetOf(flags: ExportFlags): Promise<ArchiveRecipients | 'plaintext'> {
  const recipients = flags.recipient ?? [];
  const explicit = [
    recipients.length > 0,
    flags.passphraseFile !== undefined || flags.passphraseStdin === true,
    flags.plaintext === true,
  ].filter(Boolean).length;
  if (explicit > 1) throw usage('give one of --recipient, a passphrase or --plaintext');
  if (flags.plaintext === true) return 'plaintext';
  if (recipients.length > 0) return { recipients };
  const passphrase = await passphraseOf(flags);
  if (passphrase === undefined) {
    throw usage(
      'an export is encrypted: give --recipient <age1…>, --passphrase-file <file> (or TRESOR_EXPORT_PASSPHRASE_FILE) or --passphrase-stdin; --plaintext writes it unencrypted',
    );
  }
  return { passphrase };
}

/** The age identities of `files` (AGE-SECRET-KEY-… lines; `#` comments and blank lines skipped). */
function identitiesOf(files: readonly string[]): string[] {
  const identities: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw usage(`cannot read the identity file ${file}`);
    }
    for (const line of text.split(/\r?\n/)) {
      const trimmed = line.trim();
      if (trimmed !== '' && !trimmed.startsWith('#')) identities.push(trimmed);
    }
  }
  if (identities.length === 0) throw usage('the identity files hold no age identity');
  return identities;
}

/** Where the export's text comes from: the plaintext file, or the archive opened with what was given. */
async function exportInputOf(path: string, flags: VerifyFlags): Promise<AuditExportInput> {
  const identityFiles = flags.identity ?? [];
  if (!(await isAgeFile(path))) {
    if (identityFiles.length > 0 || passphraseFileOf(flags) !== undefined || flags.passphraseStdin === true)
      info('tresor audit: the export is not encrypted; the identity or passphrase is not used');
    return path;
  }
  let by: ArchiveIdentities;
  if (identityFiles.length > 0) {
    if (flags.passphraseFile !== undefined || flags.passphraseStdin === true)
      throw usage('give either --identity or a passphrase, not both');
    by = { identities: identitiesOf(identityFiles) };
  } else {
    const passphrase = await passphraseOf(flags);
    if (passphrase === undefined) {
      throw usage(
        'the export is encrypted: give --identity <file>, --passphrase-file <file> (or TRESOR_EXPORT_PASSPHRASE_FILE) or --passphrase-stdin',
      );
    }
    by = { passphrase };
  }
  try {
    return await openArchive(path, by);
  } catch (err) {
    if (err instanceof AuditArchiveError) throw usage(err.message);
    throw err;
  }
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

export async function verifyCommand(flags: VerifyFlags): Promise<void> {
  const verifierKey = verifierKeyOf(flags);
  if (flags.file !== undefined && flags.export !== undefined) {
    throw usage('--file is the former name of --export: give one');
  }
  const exportFile = flags.export ?? flags.file;
  if (exportFile !== undefined && flags.dataDir !== undefined) {
    throw usage('give either --data-dir or --export, not both');
  }
  const origin = flags.origin === undefined ? {} : { origin: flags.origin };
  let report: VerifyReport;
  let source: string;
  if (exportFile !== undefined) {
    source = resolve(exportFile);
    if (!existsSync(source)) throw usage(`no such export file: ${source}`);
    const input = await exportInputOf(source, flags);
    const witness = typeof flags.witness === 'string' ? await witnessNotes(resolve(flags.witness)) : [];
    try {
      const file = await readAuditExport(input);
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
    const database = databaseOf();
    const witnessDir = typeof flags.witness === 'string' ? resolve(flags.witness) : join(dataDir, 'witness');
    if (typeof flags.witness === 'string' && !existsSync(witnessDir))
      throw usage(`no witness folder ${witnessDir}`);
    const witness = flags.witness === false ? [] : await witnessNotes(witnessDir);
    if (flags.witness !== false && witness.length === 0) {
      info(
        `tresor audit: the witness in ${witnessDir} holds no checkpoint; a rollback of the store cannot be seen`,
      );
    }
    let reader: AuditLogSnapshot;
    try {
      reader = await openAuditLogOf({ dataDir, database });
    } catch (err) {
      throw usage((err as Error).message);
    }
    source = reader.location;
    // Read after the snapshot is taken: the end only grows, so the snapshot holds every row from it.
    const archive = cliArchive(flags, dataDir);
    try {
      let end: number;
      try {
        end = await archivedEndOf({ dataDir, database });
      } catch (err) {
        throw usage((err as Error).message);
      }
      report = await verifyAuditLogWithArchive(
        reader,
        { end, archive: (logOrigin) => archive.open(logOrigin) },
        { witness, verifierKey, ...origin },
      );
    } finally {
      await reader.close();
      await archive.close();
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

export async function exportCommand(flags: ExportFlags): Promise<void> {
  const path = resolve(flags.out);
  const target = await exportTargetOf(flags);
  let encrypter: ReturnType<typeof archiveEncrypter> | undefined;
  if (target === 'plaintext') {
    warn(
      `tresor audit: WARNING: --plaintext writes the audit log unencrypted to ${path}; keep it off shared disks and delete it after use`,
    );
  } else {
    try {
      encrypter = archiveEncrypter(target);
    } catch (err) {
      if (err instanceof AuditArchiveError) throw usage(err.message);
      throw err;
    }
  }
  const dataDir = dataDirOf(flags);
  const { snapshot, end } = await openAtArchivedEnd({ dataDir, database: databaseOf() });
  const archive = cliArchive(flags, dataDir);
  try {
    const checkpoints = await snapshot.checkpoints();
    const origin = originOf(checkpoints);
    // The archive is reached before the file is made: an export that cannot hold the archived part is not begun.
    const archived = end === 0 ? undefined : await archiveOf(archive, origin);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(path, 'wx', 0o600); // never overwrite: an export is evidence
    } catch (err) {
      throw usage(`cannot create ${path}: ${(err as Error).message}`);
    }
    const stream = handle.createWriteStream();
    const source = {
      origin,
      size: end + (await snapshot.size()),
      entries: archived === undefined ? snapshot.entries() : withArchived(archived, end, snapshot),
      checkpoints,
    };
    let written: Awaited<ReturnType<typeof writeAuditExport>>;
    try {
      if (encrypter === undefined) {
        written = await writeAuditExport(source, stream);
      } else {
        // The JSON Lines go through the encrypter only: no plaintext byte reaches the file.
        const { input, done } = await encryptingStream(encrypter, stream);
        written = await writeAuditExport(source, input);
        input.end();
        await done;
      }
      await new Promise<void>((res, rej) => stream.end((err?: Error | null) => (err ? rej(err) : res())));
    } catch (err) {
      // A segment that fails half-way (or a full disk): no partial export is left to be taken for whole.
      stream.destroy();
      await rm(path, { force: true });
      throw err;
    }
    const again = await open(path, 'r');
    await again.sync().finally(() => again.close());
    out(
      flags.json
        ? { file: path, encrypted: encrypter !== undefined, ...written }
        : `exported ${written.entries} entries and ${written.checkpoints} checkpoints to ${path}${encrypter === undefined ? ' (plaintext)' : ' (age-encrypted)'}`,
      flags.json === true,
    );
  } finally {
    await snapshot.close();
    await archive.close();
  }
}

/**
 * The store's snapshot with the archived end E of its snapshot: E read before and after the snapshot
 * is taken and equal (else a pruning pass ran in between: read again), so the snapshot's rows start
 * exactly at E and the export has neither a hole nor a row twice.
 */
async function openAtArchivedEnd(
  config: BackendConfig,
): Promise<{ snapshot: AuditLogSnapshot; end: number }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    let snapshot: AuditLogSnapshot;
    let before: number;
    let after: number;
    try {
      before = await archivedEndOf(config);
      snapshot = await openAuditLogOf(config);
    } catch (err) {
      throw usage((err as Error).message);
    }
    try {
      after = await archivedEndOf(config);
    } catch (err) {
      await snapshot.close();
      throw usage((err as Error).message);
    }
    if (before === after) return { snapshot, end: before };
    await snapshot.close();
  }
  throw usage('the audit log was being archived and pruned throughout: run the export again');
}

async function archiveOf(archive: CliArchive, origin: string | null): Promise<AuditArchive> {
  if (origin === null) throw usage('the log is partly archived, and no checkpoint names its origin');
  try {
    return await archive.open(origin);
  } catch (err) {
    // Exit 1 (main.ts): the archived part cannot be reached, so no export is written.
    throw new Error(`entries below the archived end are in sealed segments: ${(err as Error).message}`);
  }
}

/** The archived entries [0, end) from the segments, then the store's rows from `end` on. */
async function* withArchived(
  archive: AuditArchive,
  end: number,
  snapshot: AuditLogSnapshot,
): AsyncGenerator<{ index: number; leaf: string }> {
  yield* archivedEntries(archive, 0, end);
  for await (const e of snapshot.entries()) if (e.index >= end) yield e;
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
