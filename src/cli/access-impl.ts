/**
 * What `tresor access …` does (access.ts declares the commands, with what they do and their exit
 * codes, and loads this module only when one of them runs, so `tresor --help` does not load the
 * control store).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CommanderError } from 'commander';
import { type AccessReport, createAccessReviewService } from '../access/review.ts';
import { parseInstant } from '../access/review-period.ts';
import type { AuditArchive } from '../audit/archived-segments.ts';
import { readAuditOrigin } from '../audit/log-identity.ts';
import { ConfigError, type DatabaseConfig, resolveDatabaseConfig } from '../config/server-config.ts';
import { TresorError } from '../errors.ts';
import type { IdentityActor } from '../identity/identity-actor.ts';
import { backendLocation, openControlOf } from '../server/backend.ts';
import type { ControlDB } from '../server/control-store.ts';
import type { Store } from '../store/types.ts';
import { type ArchiveFlags, cliArchive } from './audit-archive.ts';
import { out, warn } from './io.ts';

/** The CLI's audit actor: local access to the data folder is operator-level access. */
export const CLI_ACTOR: IdentityActor = { kind: 'system', job: 'cli' };
const DAY_PATTERN = /^\d{4}-\d{2}-\d{2}$/;

interface CommonFlags {
  dataDir?: string;
  json?: boolean;
}

export interface ReviewFlags extends CommonFlags, ArchiveFlags {
  from: string;
  to: string;
  tenant?: string;
  person?: string;
}

export interface UnreviewedFlags extends CommonFlags, ArchiveFlags {
  until?: string;
}

export interface AttestFlags extends CommonFlags {
  from: string;
  to: string;
  tenant?: string;
  note: string;
  by: string;
}

function usage(message: string): CommanderError {
  warn(`tresor access: ${message}`);
  return new CommanderError(2, 'commander.tresorUsage', `tresor access: ${message}`);
}

function day(flag: string, value: string | undefined): string {
  if (value === undefined || !DAY_PATTERN.test(value) || parseInstant(value) === undefined)
    throw usage(`${flag} must be a date YYYY-MM-DD`);
  return value;
}

/** What the review service is given: the control store, and the archived part of the log (readers). */
interface OpenedStores {
  control: Store<ControlDB>;
  /**
   * The sealed segments holding the audit entries below the archived end, reached as `tresor audit
   * verify` reaches them (audit-archive.ts), only when the review finds the log partly archived.
   * Fails with a message when they cannot be reached: the review then fails whole, never reports
   * the live part alone.
   */
  archive: () => Promise<AuditArchive>;
}

async function withControlStore<T>(
  flags: CommonFlags & ArchiveFlags,
  work: (stores: OpenedStores) => Promise<T>,
): Promise<T> {
  const dataDir = resolve(flags.dataDir ?? process.env.TRESOR_DATA_DIR ?? '.tresor-data');
  let database: DatabaseConfig;
  try {
    database = resolveDatabaseConfig({}, process.env);
  } catch (err) {
    if (err instanceof ConfigError) throw usage(err.problems.join('; '));
    throw err;
  }
  const path = backendLocation({ dataDir, database });
  if (database.kind === 'sqlite' && !existsSync(path))
    throw usage(`no control store at ${path} (give --data-dir or TRESOR_DATA_DIR)`);
  let control: Store<ControlDB>;
  try {
    control = await openControlOf({ dataDir, database }, { mustExist: true });
  } catch (err) {
    throw usage(`cannot open ${path}: ${(err as Error).message}`);
  }
  const segments = cliArchive(flags, dataDir);
  const archive = async (): Promise<AuditArchive> => {
    const origin = await readAuditOrigin(control.db);
    if (origin === null)
      throw new Error('the audit log is partly archived, and no checkpoint names its origin: no review');
    try {
      return await segments.open(origin);
    } catch (err) {
      // Exit 1 (main.ts): without the archived part the review would be partial, so none is printed.
      throw new Error(
        `audit entries below the archived end are in sealed segments: ${(err as Error).message}; no review`,
      );
    }
  };
  try {
    return await work({ control, archive });
  } catch (err) {
    // Bad input the service refused is a usage error here; a permission refusal stays exit 1.
    if (err instanceof TresorError && err.code === 'TRESOR_ERR_VALIDATION') throw usage(err.message);
    throw err;
  } finally {
    await segments.close();
    await control.close();
  }
}

function printReport(report: AccessReport): void {
  const lines = [
    `${report.unreviewed ? 'UNREVIEWED' : 'REVIEWED'}: staff access ${report.from} … ${report.to} (end excluded)`,
    `  grants ${report.grants.length}, staff accesses ${report.accesses.length}, attestations ${report.attestations.length}`,
  ];
  for (const [tenant, c] of Object.entries(report.byTenant))
    lines.push(`  tenant ${tenant}: grants ${c.grants}, accesses ${c.accesses}`);
  for (const [person, c] of Object.entries(report.byPerson))
    lines.push(`  person ${person}: grants ${c.grants}, accesses ${c.accesses}`);
  for (const g of report.grants) {
    const glass = g.breakGlass ? ' BREAK-GLASS' : '';
    lines.push(
      `  grant ${g.id}${glass} ${g.state} tenant ${g.tenant} by ${g.requester} ${g.access} ${JSON.stringify(g.collections)} ticket ${g.ticket}: ${g.reason}`,
    );
  }
  for (const a of report.attestations)
    lines.push(`  attested ${a.from} … ${a.to} ${a.tenant ?? 'all tenants'} by ${a.attestedBy}: ${a.note}`);
  out(lines.join('\n'), false);
}

export async function reviewCommand(flags: ReviewFlags): Promise<void> {
  const from = day('--from', flags.from);
  const to = day('--to', flags.to);
  const report = await withControlStore(flags, ({ control, archive }) =>
    createAccessReviewService({ control, now: () => new Date(), archive }).report(CLI_ACTOR, {
      from,
      to,
      ...(flags.tenant !== undefined ? { tenant: flags.tenant } : {}),
      ...(flags.person !== undefined ? { person: flags.person } : {}),
    }),
  );
  if (flags.json) out(report, true);
  else printReport(report);
  process.exitCode = report.unreviewed ? 1 : 0;
}

export async function unreviewedCommand(flags: UnreviewedFlags): Promise<void> {
  const until = flags.until === undefined ? undefined : day('--until', flags.until);
  const periods = await withControlStore(flags, ({ control, archive }) =>
    createAccessReviewService({ control, now: () => new Date(), archive }).unreviewed(
      CLI_ACTOR,
      until === undefined ? {} : { until },
    ),
  );
  if (flags.json) out({ periods }, true);
  else if (periods.length === 0) out('every month with staff access is attested', false);
  else
    out(
      periods
        .map(
          (p) => `${p.from} … ${p.to} tenant ${p.tenant ?? '-'}: grants ${p.grants}, accesses ${p.accesses}`,
        )
        .join('\n'),
      false,
    );
  process.exitCode = periods.length > 0 ? 1 : 0;
}

export async function attestCommand(flags: AttestFlags): Promise<void> {
  const from = day('--from', flags.from);
  const to = day('--to', flags.to);
  const attestation = await withControlStore(flags, ({ control }) =>
    createAccessReviewService({ control, now: () => new Date() }).attest(CLI_ACTOR, {
      from,
      to,
      tenant: flags.tenant ?? null,
      note: flags.note,
      attestedBy: flags.by,
    }),
  );
  out(
    flags.json
      ? attestation
      : `attested ${attestation.from} … ${attestation.to} (${attestation.tenant ?? 'all tenants'}) by ${attestation.attestedBy}: ${attestation.id}`,
    flags.json === true,
  );
}
