/**
 * `tresor restore`: bring a whole deployment back from a backup into an empty data folder.
 *
 *   tresor restore --from <folder | s3://bucket/prefix> [--backup <id>] --to <empty data folder>
 *                  [--s3-endpoint <url>] [--s3-region <region>] [--s3-path-style]
 *                  [--config <file> | --keyd-socket <path>] [--json]
 *
 * The backup is checked end to end before the target appears (src/server/restore-deployment.ts):
 * keyd's signature of the manifest, every chunk's digest, decryption through keyd, every file's
 * digest, and the restored audit log against the signed checkpoint the backup carries. Then the
 * checked folder is renamed into place: never a half-restored data folder. S3 credentials come from
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or from files, never from the command line.
 */
import type { Command } from 'commander';
import type { RestoreFlags } from './restore-impl.ts';

const impl = () => import('./restore-impl.ts');

export function registerRestoreCommand(program: Command): void {
  program
    .command('restore')
    .description(
      'restore a whole deployment from a backup into an empty data folder, after checking its signature, digests and audit checkpoint',
    )
    .requiredOption('--from <destination>', 'where the backup is: a folder, or s3://bucket/prefix')
    .option('--backup <id>', 'the backup to restore (default: the newest complete one)')
    .requiredOption('--to <folder>', 'the data folder to create: must not exist, or be empty')
    .option('--s3-endpoint <url>', 'the S3-compatible service URL (default: AWS S3)')
    .option('--s3-region <region>', 'the bucket region; env AWS_REGION (default us-east-1)')
    .option('--s3-path-style', 'path-style bucket URLs (default when --s3-endpoint is given)')
    .option(
      '--s3-access-key-id-file <file>',
      'a file holding the access key id; env TRESOR_S3_ACCESS_KEY_ID_FILE, else AWS_ACCESS_KEY_ID',
    )
    .option(
      '--s3-secret-access-key-file <file>',
      'a file holding the secret access key; env TRESOR_S3_SECRET_ACCESS_KEY_FILE, else AWS_SECRET_ACCESS_KEY',
    )
    .option('--config <file>', "the server's JSON config file (how to reach keyd); env TRESOR_CONFIG")
    .option('--keyd-socket <path>', "keyd's Unix socket, instead of the config's; env TRESOR_KEYD_SOCKET")
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      [
        '',
        'Exit codes:',
        '  0  restored: the target holds the checked backup',
        '  1  refused or failed: no such backup, a check failed, the target is not empty, the destination failed',
        '  2  usage (bad flags, no credentials, unreadable config)',
        '  3  keyd unavailable or sealed',
      ].join('\n'),
    )
    .action(async (flags: RestoreFlags) => (await impl()).restoreCommand(flags));
}
