/**
 * `tresor restore`: two forms.
 *
 *   tresor restore --from <folder | s3://bucket/prefix> [--backup <id>] --to <empty data folder>
 *                  [--s3-endpoint <url>] [--s3-region <region>] [--s3-path-style]
 *                  [--config <file> | --keyd-socket <path>] [--json]
 *     brings a whole deployment back, offline, into an empty data folder. The backup is checked end
 *     to end before the target appears (src/server/restore-deployment.ts): keyd's signature of the
 *     manifest, every chunk's digest, decryption through keyd, every file's digest, and the
 *     restored audit log against the signed checkpoint the backup carries, and every audit segment
 *     its manifest names (opened whole). Then the segments are copied to the destinations the config
 *     names, and the checked folder is renamed into place: never a half-restored data folder. S3 credentials come from
 *     AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or from files, never from the command line.
 *
 *   tresor restore --from <folder | s3://bucket/prefix> [--backup <id>] [--database-url <url>] …
 *     the same for a PostgreSQL deployment's backup, into an EMPTY database (--database-url, without
 *     a password; else TRESOR_DATABASE_URL or the config file's database.url, which may carry one):
 *     src/server/restore-deployment.ts restoreDeploymentToPg. Without --to, the database is used.
 *
 *   tresor restore --tenant <id> [--backup <id>] [--from <destination name>] [--timeout <s>] [--json]
 *                  [--url …] [--ca-file …] [--profile …] [--token-file …] [--code <totp>]
 *     brings one tenant back into the running server (restore-tenant-impl.ts; the server's
 *     src/backup/tenant-restore.ts does and checks everything): an operator admin's session with a
 *     fresh second factor.
 */
import type { Command } from 'commander';
import { usageError } from './io.ts';
import type { RestoreFlags } from './restore-impl.ts';
import type { TenantRestoreFlags } from './restore-tenant-impl.ts';

const impl = () => import('./restore-impl.ts');
const tenantImpl = () => import('./restore-tenant-impl.ts');

type Flags = Partial<RestoreFlags> &
  Partial<TenantRestoreFlags> & { timeout?: string; url?: string; tokenFile?: string; profile?: string };

export function registerRestoreCommand(program: Command): void {
  program
    .command('restore')
    .description(
      'restore a whole deployment from a backup into an empty data folder (--from --to), or one tenant into the running server (--tenant); the backup is checked first: signature, digests, audit checkpoint',
    )
    .option(
      '--from <destination>',
      'whole deployment: where the backup is, a folder or s3://bucket/prefix; --tenant: the name of one of the server’s configured destinations (default: the first holding the backup)',
    )
    .option(
      '--backup <id>',
      'the backup to restore (default: the newest complete one; --tenant: the newest holding the tenant)',
    )
    .option('--to <folder>', 'whole deployment: the data folder to create (must not exist, or be empty)')
    .option(
      '--database-url <url>',
      'whole deployment of a PostgreSQL backup: the EMPTY database to load it into, without a password (env TRESOR_DATABASE_URL, which may hold one, or the config file’s database.url)',
    )
    .option('--tenant <id>', 'restore this one tenant into the running server (see below)')
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
    .option(
      '--config <file>',
      "the server's JSON config file (how to reach keyd; its backup destinations receive the backup's audit segments); env TRESOR_CONFIG",
    )
    .option('--keyd-socket <path>', "keyd's Unix socket, instead of the config's; env TRESOR_KEYD_SOCKET")
    .option('--url <https-url>', "--tenant: the server's HTTPS origin; env TRESOR_URL, else the profile's")
    .option(
      '--ca-file <pem>',
      "--tenant: trust only this CA for the server's certificate; env TRESOR_CA_FILE, else the profile's",
    )
    .option('--profile <file>', '--tenant: the profile file of `tresor login`; env TRESOR_PROFILE')
    .option(
      '--token-file <file>',
      '--tenant: a credential file (operator tokens are refused: a person restores)',
    )
    .option(
      '--code <totp>',
      '--tenant: a current TOTP code, if the server asks the session for a fresh second factor',
    )
    .option(
      '--timeout <seconds>',
      '--tenant: how long to follow the restore (default 3600); it goes on in the server',
    )
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      [
        '',
        'Two forms:',
        '  tresor restore --from <folder|s3://bucket/prefix> [--backup <id>] --to <empty folder>',
        '      the whole deployment, offline (the server stopped), into an empty data folder; needs keyd',
        '  tresor restore --from <folder|s3://bucket/prefix> [--backup <id>] [--database-url <url>]',
        "      a PostgreSQL deployment's backup into an EMPTY database (--database-url, TRESOR_DATABASE_URL",
        "      or the config's database.url): schemas migrated, rows loaded, the audit log checked",
        '  tresor restore --tenant <id> [--backup <id>] [--from <destination name>]',
        '      one tenant, into the running server: its records become those of the backup (written since:',
        '      gone; the audit log keeps everything). An operator admin session with a fresh second factor.',
        '      Refused: a backup whose signature, digests or audit checkpoint do not hold; a tenant closed',
        '      since (its key is shredded) or closing (cancel the close first).',
        '',
        'Exit codes:',
        '  0  restored',
        '  1  refused or failed: no such backup or tenant, a check failed, the target is not empty, the destination failed',
        '  2  usage (bad flags, no credentials, unreadable config)',
        '  3  whole deployment: keyd unavailable or sealed; --tenant: the server cannot be reached',
      ].join('\n'),
    )
    .action(async (flags: Flags) => {
      if (flags.tenant !== undefined) {
        for (const [flag, given] of [
          ['--to', flags.to],
          ['--database-url', flags.databaseUrl],
          ['--s3-endpoint', flags.s3Endpoint],
          ['--config', flags.config],
          ['--keyd-socket', flags.keydSocket],
        ] as const) {
          if (given !== undefined)
            throw usageError('tresor restore', `${flag} is for a whole-deployment restore, not --tenant`);
        }
        return (await tenantImpl()).restoreTenantCommand(flags as TenantRestoreFlags);
      }
      for (const [flag, given] of [
        ['--url', flags.url],
        ['--token-file', flags.tokenFile],
        ['--code', flags.code],
        ['--timeout', flags.timeout],
      ] as const) {
        if (given !== undefined) throw usageError('tresor restore', `${flag} is for --tenant`);
      }
      if (flags.to !== undefined && flags.databaseUrl !== undefined)
        throw usageError(
          'tresor restore',
          'give --to (a data folder) or --database-url (a database), not both',
        );
      if (flags.from === undefined)
        throw usageError(
          'tresor restore',
          'give --from and --to (a whole deployment) or --tenant (one tenant)',
        );
      return (await impl()).restoreCommand(flags as RestoreFlags);
    });
}
