/**
 * `tresor access …`: access reviews from the operator's host.
 *
 *   tresor access review --from YYYY-MM-DD --to YYYY-MM-DD [--tenant T] [--person P] [--json]
 *   tresor access unreviewed [--until YYYY-MM-DD] [--json]
 *   tresor access attest --from YYYY-MM-DD --to YYYY-MM-DD [--tenant T] --note TEXT --by <person id>
 *
 * Periods are half-open: --to is the first day NOT included (June 2030 is --from 2030-06-01
 * --to 2030-07-01), midnight UTC.
 *
 * The command opens the control store of the data folder (--data-dir, else TRESOR_DATA_DIR, else
 * ./.tresor-data — as `tresor audit verify`) and acts as the system actor `cli`: whoever can read and
 * write that folder on the host has operator-level access already, so the CLI claims no more than
 * that, and says so in the audit log. It never reaches tenant records. An attestation is a security
 * officer's statement, so `attest` must name one (--by) who exists and is active; the audit entry
 * records both the system actor `cli` and that officer. Reports are audited too. Beside a running
 * server the entries wait in the control store's outbox until its sequencer's next pass (a few
 * seconds), or its next start.
 *
 * Exit codes: 0 ok (review: every grant and access in the period is covered by an attestation);
 * 1 unreviewed activity found, or refused; 2 usage (bad flags, no store).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Command, CommanderError } from 'commander';
import { type AccessReport, createAccessReviewService } from '../access/review.ts';
import { parseInstant } from '../access/review-period.ts';
import { TresorError } from '../errors.ts';
import type { IdentityActor } from '../identity/identity-actor.ts';
import { type ControlDB, controlStorePath, openControlStore } from '../server/control-store.ts';
import type { Store } from '../store/types.ts';
import { out, warn } from './io.ts';

/** The CLI's audit actor: local access to the data folder is operator-level access. */
export const CLI_ACTOR: IdentityActor = { kind: 'system', job: 'cli' };
const DAY_PATTERN = /^\d{4}-\d{2}-\d{2}$/;

interface CommonFlags {
  dataDir?: string;
  json?: boolean;
}

interface ReviewFlags extends CommonFlags {
  from: string;
  to: string;
  tenant?: string;
  person?: string;
}

interface UnreviewedFlags extends CommonFlags {
  until?: string;
}

interface AttestFlags extends CommonFlags {
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

async function withControlStore<T>(
  flags: CommonFlags,
  work: (control: Store<ControlDB>) => Promise<T>,
): Promise<T> {
  const dataDir = resolve(flags.dataDir ?? process.env.TRESOR_DATA_DIR ?? '.tresor-data');
  const path = controlStorePath(dataDir);
  if (!existsSync(path)) throw usage(`no control store at ${path} (give --data-dir or TRESOR_DATA_DIR)`);
  let control: Store<ControlDB>;
  try {
    control = await openControlStore(path, { fileMustExist: true });
  } catch (err) {
    throw usage(`cannot open ${path}: ${(err as Error).message}`);
  }
  try {
    return await work(control);
  } catch (err) {
    // Bad input the service refused is a usage error here; a permission refusal stays exit 1.
    if (err instanceof TresorError && err.code === 'TRESOR_ERR_VALIDATION') throw usage(err.message);
    throw err;
  } finally {
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

async function reviewCommand(flags: ReviewFlags): Promise<void> {
  const from = day('--from', flags.from);
  const to = day('--to', flags.to);
  const report = await withControlStore(flags, (control) =>
    createAccessReviewService({ control, now: () => new Date() }).report(CLI_ACTOR, {
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

async function unreviewedCommand(flags: UnreviewedFlags): Promise<void> {
  const until = flags.until === undefined ? undefined : day('--until', flags.until);
  const periods = await withControlStore(flags, (control) =>
    createAccessReviewService({ control, now: () => new Date() }).unreviewed(
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

async function attestCommand(flags: AttestFlags): Promise<void> {
  const from = day('--from', flags.from);
  const to = day('--to', flags.to);
  const attestation = await withControlStore(flags, (control) =>
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

const DATA_DIR_HELP = 'data folder holding control.sqlite; env TRESOR_DATA_DIR (default ./.tresor-data)';

export function registerAccessCommands(program: Command): void {
  const access = program
    .command('access')
    .description(
      'staff access reviews: what staff reached under grants, and attestations (acts as system actor "cli")',
    );

  access
    .command('review')
    .description(
      'grants and staff accesses in [--from, --to), per tenant and person; exit 1 if not all attested',
    )
    .requiredOption('--from <YYYY-MM-DD>', 'first day of the period (UTC)')
    .requiredOption('--to <YYYY-MM-DD>', 'first day AFTER the period (UTC, excluded)')
    .option('--tenant <id>', 'one tenant only')
    .option('--person <id>', 'one staff member only')
    .option('--data-dir <folder>', DATA_DIR_HELP)
    .option('--json', 'machine-readable report')
    .action(reviewCommand);

  access
    .command('unreviewed')
    .description('calendar months (UTC) with staff access no attestation covers; exit 1 if any')
    .option('--until <YYYY-MM-DD>', 'consider months that ended by this day (default: today)')
    .option('--data-dir <folder>', DATA_DIR_HELP)
    .option('--json', 'machine-readable output')
    .action(unreviewedCommand);

  access
    .command('attest')
    .description("record a security officer's attestation that [--from, --to) was reviewed (audited)")
    .requiredOption('--from <YYYY-MM-DD>', 'first day of the period (UTC)')
    .requiredOption('--to <YYYY-MM-DD>', 'first day AFTER the period (UTC, excluded)')
    .option('--tenant <id>', 'the review covered this tenant only (default: all tenants)')
    .requiredOption('--note <text>', 'what was reviewed and found (at most 1000 characters)')
    .requiredOption('--by <person id>', 'the attesting security officer (must exist and be active)')
    .option('--data-dir <folder>', DATA_DIR_HELP)
    .option('--json', 'machine-readable output')
    .action(attestCommand);
}
