/**
 * `tresor backup …`: backups over the HTTPS API, as an operator admin (a session of `tresor login`,
 * or an operator token of scope backups:run / backups:read).
 *
 *   tresor backup now [--wait [--read-token-file F]] [--timeout S]
 *       POST /v1/backups; with --wait, follows it (GET /v1/backups/:id) until it has ended and been
 *       verified: a session can do both, an operator token needs a backups:read one to follow
 *   tresor backup list [--limit N]             GET /v1/backups
 *   tresor backup verify ID                    POST /v1/backups/:id/verify
 */
import type { Command } from 'commander';
import type { BackupFlags, BackupListFlags, BackupNowFlags } from './backup-impl.ts';
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
  ).action(async (id: string, flags: BackupFlags) => (await impl()).verifyCommand(id, flags));
}
