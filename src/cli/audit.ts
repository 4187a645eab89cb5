/**
 * `tresor audit …`: check the audit log and export it.
 *
 *   tresor audit verify [--data-dir <dir> | --export <file> [--identity <file> | --passphrase-…]]
 *                       --public-key <key | @file> [--witness <dir>]
 *   tresor audit export [--data-dir <dir>] --out <file>
 *                       (--recipient <age1…>… | --passphrase-file <file> | --passphrase-stdin | --plaintext)
 *
 * Entries below the archived end (pruned from the store after they were sealed into segments on the
 * backup destinations) are read back from the segments, with keyd, as the server's config names them.
 *
 * verify exits 0 when the log verifies, 1 on any problem (the first bad index and each problem on
 * stdout, or one JSON report with --json), 2 on a usage error (unreadable key, store or witness,
 * an archive the identity or passphrase does not open). It reads the store read-only and can run
 * beside a live server. An export is an age archive; plaintext only when asked for, with a warning.
 */
import type { Command } from 'commander';
import type { ExportFlags, VerifyFlags } from './audit-impl.ts';

const impl = () => import('./audit-impl.ts');

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
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
    .option('--export <file>', 'verify an export (tresor audit export) offline instead of a store')
    .option('--file <export>', 'former name of --export')
    .option(
      '--identity <file>',
      'age identity file (AGE-SECRET-KEY-1…) that opens an encrypted export; repeatable',
      collect,
      [],
    )
    .option(
      '--passphrase-file <file>',
      'file holding the passphrase of an encrypted export; env TRESOR_EXPORT_PASSPHRASE_FILE',
    )
    .option('--passphrase-stdin', 'read the passphrase of an encrypted export from stdin')
    .option(
      '--public-key <key>',
      'the checkpoint verifier key (name+id+base64, as GET /v1/audit/public-key returns), or @file; env TRESOR_AUDIT_PUBLIC_KEY',
    )
    .option('--witness <folder>', 'witness folder (default <data dir>/witness; none for --file)')
    .option('--no-witness', 'do not read the witness')
    .option('--origin <origin>', "the log's origin line (default: that of the store's checkpoints)")
    .option(
      '--config <file>',
      'server config file (env TRESOR_CONFIG): the backup destinations and keyd that open the sealed segments of the archived part',
    )
    .option(
      '--keyd-socket <path>',
      "keyd's Unix socket for the sealed segments (default: as the config says)",
    )
    .option('--json', 'machine-readable report')
    .action(async (flags: VerifyFlags) => (await impl()).verifyCommand(flags));

  audit
    .command('export')
    .description(
      'write the log, its entries and signed checkpoints, to an age-encrypted archive of JSON Lines (mode 0600)',
    )
    .option(
      '--data-dir <folder>',
      'data folder holding control.sqlite; env TRESOR_DATA_DIR (default ./.tresor-data)',
    )
    .requiredOption('--out <file>', 'file to create (never overwritten)')
    .option('--recipient <age1…>', 'age recipient to encrypt to; repeatable', collect, [])
    .option(
      '--passphrase-file <file>',
      'encrypt to the passphrase in this file; env TRESOR_EXPORT_PASSPHRASE_FILE',
    )
    .option('--passphrase-stdin', 'encrypt to a passphrase read from stdin (a terminal prompts)')
    .option('--plaintext', 'write the JSON Lines unencrypted (a warning is printed)')
    .option(
      '--config <file>',
      'server config file (env TRESOR_CONFIG): the backup destinations and keyd that open the sealed segments of the archived part',
    )
    .option(
      '--keyd-socket <path>',
      "keyd's Unix socket for the sealed segments (default: as the config says)",
    )
    .option('--json', 'machine-readable output')
    .action(async (flags: ExportFlags) => (await impl()).exportCommand(flags));
}
