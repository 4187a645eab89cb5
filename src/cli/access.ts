/**
 * `tresor access …`: access reviews from the operator's host.
 *
 *   tresor access review --from YYYY-MM-DD --to YYYY-MM-DD [--tenant T] [--person P] [--json]
 *                        [--config <file>] [--keyd-socket <path>]
 *   tresor access unreviewed [--until YYYY-MM-DD] [--json] [--config <file>] [--keyd-socket <path>]
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
 * Staff accesses below the audit log's archived end (pruned from the store after they were sealed
 * into segments on the backup destinations) are read back from the segments with keyd, reached as
 * `tresor audit verify` reaches them (--config / TRESOR_CONFIG, --keyd-socket). When they cannot be
 * read (no keyd, no destination, a segment missing or failing everywhere) the command prints no
 * report and exits 1: a review of the live part alone would look whole.
 *
 * Exit codes: 0 ok (review: every grant and access in the period is covered by an attestation);
 * 1 unreviewed activity found, or refused; 2 usage (bad flags, no store).
 */
import type { Command } from 'commander';
import type { AttestFlags, ReviewFlags, UnreviewedFlags } from './access-impl.ts';

const impl = () => import('./access-impl.ts');

const DATA_DIR_HELP = 'data folder holding control.sqlite; env TRESOR_DATA_DIR (default ./.tresor-data)';
const CONFIG_HELP =
  'server config file (env TRESOR_CONFIG): the backup destinations and keyd that open the sealed segments of the archived part of the audit log';
const KEYD_SOCKET_HELP = "keyd's Unix socket for the sealed segments (default: as the config says)";

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
    .option('--config <file>', CONFIG_HELP)
    .option('--keyd-socket <path>', KEYD_SOCKET_HELP)
    .option('--json', 'machine-readable report')
    .action(async (flags: ReviewFlags) => (await impl()).reviewCommand(flags));

  access
    .command('unreviewed')
    .description('calendar months (UTC) with staff access no attestation covers; exit 1 if any')
    .option('--until <YYYY-MM-DD>', 'consider months that ended by this day (default: today)')
    .option('--data-dir <folder>', DATA_DIR_HELP)
    .option('--config <file>', CONFIG_HELP)
    .option('--keyd-socket <path>', KEYD_SOCKET_HELP)
    .option('--json', 'machine-readable output')
    .action(async (flags: UnreviewedFlags) => (await impl()).unreviewedCommand(flags));

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
    .action(async (flags: AttestFlags) => (await impl()).attestCommand(flags));
}
