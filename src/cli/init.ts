/**
 * `tresor init`: the production bootstrap, run once per deployment on the server's host.
 *
 *   tresor init --config /etc/tresor/config.json --email ada@example.com [--audit-origin O]
 *               [--out-file link.txt] [--json]
 *
 * It works on the server's stores directly (the control store in the config's data folder), with
 * the server stopped or running beside it: whoever can read the server's config and data folder is
 * all-powerful over the deployment already, so it needs no network credential. It
 *
 *   - creates the first operator admin as a *person* (role operator-admin), who can do nothing
 *     until they enrol a password and a second factor with the one-time enrolment link it prints
 *     (`<console origin>/signin#enrol=<token>`, valid 72 hours; finish it in a browser or with
 *     `tresor enrol`); audited as system actor `init`;
 *   - fixes the audit log's origin, its identity for ever (the checkpoint key's name equals it):
 *     --audit-origin, else the config's audit.origin, else generated from the public host name and
 *     a random part; when it is fixed already it is kept, and a different --audit-origin refused.
 *
 * With the server running, the audit entry is in the log within seconds; otherwise at its next start.
 *
 * Exit codes: 0 done; 1 refused (an operator admin exists already; a different audit origin is
 * fixed); 2 usage (bad flags or config). The data folder is made (0700) if it does not exist yet.
 */
import type { Command } from 'commander';
import type { InitFlags } from './init-impl.ts';

const impl = () => import('./init-impl.ts');

export function registerInitCommand(program: Command): void {
  program
    .command('init')
    .description(
      "bootstrap a deployment: its first operator admin (a person who must enrol) and its audit origin; on the server's data folder",
    )
    .option('--config <file>', "the server's JSON config file; env TRESOR_CONFIG")
    .option('--data-dir <folder>', "the server's data folder, if not the config's; env TRESOR_DATA_DIR")
    .requiredOption('--email <address>', "the first operator admin's e-mail (their sign-in name)")
    .option(
      '--audit-origin <origin>',
      "the audit log's identity, e.g. vault.example.com/audit/2030 (default: config audit.origin, else generated)",
    )
    .option('--out-file <file>', 'write the enrolment link to this new 0600 file instead of printing it')
    .option('--json', 'machine-readable output: person, auditOrigin, enrolmentLink, enrolmentExpiresAt')
    .addHelpText(
      'after',
      [
        '',
        'Exit codes:',
        '  0  done: the enrolment link is printed (or in --out-file)',
        '  1  refused: an operator admin exists already, or another audit origin is fixed',
        '  2  usage (bad flags, bad config)',
      ].join('\n'),
    )
    .action(async (flags: InitFlags) => (await impl()).initCommand(flags));
}
