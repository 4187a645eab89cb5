/**
 * `tresor backup …`: backups over the HTTPS API, as an operator admin (a session of `tresor login`,
 * or an operator token of scope backups:run / backups:read).
 *
 *   tresor backup now [--wait [--read-token-file F]] [--timeout S]
 *       POST /v1/backups; with --wait, follows it (GET /v1/backups/:id) until it has ended and been
 *       verified: a session can do both, an operator token needs a backups:read one to follow
 *   tresor backup list [--limit N]             GET /v1/backups
 *   tresor backup verify ID [--no-wait] [--timeout S] [--read-token-file F]
 *       POST /v1/backups/:id/verify (202: it runs in the server), then follows it (GET
 *       /v1/backups/:id) until its result is recorded; exit code 1 when it failed
 */
import type { Command } from 'commander';
import type { BackupListFlags, BackupNowFlags, BackupVerifyFlags } from './backup-impl.ts';
import { withConnectionFlags } from './connection-flags.ts';

const impl = () => import('./backup-impl.ts');

export function registerBackupCommands(program: Command): void {
  const backup = program.command('backup').description('backups (operator admins; over HTTPS)');

  withConnectionFlags(backup.command('now').description('take a backup now'))
    .option('--wait', 'wait until it has ended; exit code 1 unless every destination holds it')
    .option('--timeout <seconds>', 'with --wait, give up after this many seconds (default 600)')
    .option(
      '--read-token-file <file>',
      'with --wait and an operator token of scope backups:run: a token of scope backups:read to follow the backup with',
    )
    .action(async (flags: BackupNowFlags) => (await impl()).nowCommand(flags));

  withConnectionFlags(
    backup
      .command('list')
      .description('the backups: time, size, destinations with their read-back state, verification'),
  )
    .option('--limit <n>', 'at most this many, newest first (default 100)')
    .action(async (flags: BackupListFlags) => (await impl()).listCommand(flags));

  withConnectionFlags(
    backup
      .command('verify <id>')
      .description(
        'verify a backup again: signature, digests, decryption through keyd; exit code 1 if it fails',
      ),
  )
    .option('--no-wait', 'answer once the verification has started (tresor backup list shows its result)')
    .option('--timeout <seconds>', 'give up waiting after this many seconds (default 3600)')
    .option(
      '--read-token-file <file>',
      'with an operator token of scope backups:run: a token of scope backups:read to follow the verification with',
    )
    .action(async (id: string, flags: BackupVerifyFlags) => (await impl()).verifyCommand(id, flags));
}
