/**
 * `tresor enrol`: finish a one-time enrolment link from a terminal or a script, without a browser.
 *
 *   tresor enrol [begin] --link-file link.txt --password-file pw.txt --totp-secret-file totp.secret
 *       sets the password, begins TOTP, writes the base32 TOTP secret to a new 0600 file and prints
 *       the factor id (and the otpauth:// URI for an authenticator app only with --otpauth-uri);
 *   tresor enrol confirm --link-file link.txt --factor-id fac_… --code 123456 [--recovery-codes-file R]
 *       confirms TOTP with a current code; enrolment is then complete and the recovery codes are
 *       shown once (printed, or written to a new 0600 file).
 *
 * The link (`https://…/signin#enrol=<token>`, as `tresor init` and `tresor person invite` print
 * it) or its bare token is a secret: it is read from a file (`-` for standard input), never from
 * the command line. The server is the link's origin unless --url or TRESOR_URL says otherwise.
 */
import type { Command } from 'commander';
import { EXIT_CODES_HELP, withServerFlags } from './connection-flags.ts';
import type { EnrolConfirmFlags, EnrolFlags } from './enrol-impl.ts';

const impl = () => import('./enrol-impl.ts');

const LINK_HELP = 'file holding the enrolment link or its token (- for stdin; never on the command line)';

export function registerEnrolCommands(program: Command): void {
  const enrol = program
    .command('enrol')
    .description('finish an enrolment link from a terminal: begin (the default), then confirm');

  withServerFlags(
    enrol
      .command('begin', { isDefault: true })
      .description('set the password and begin TOTP (the default: `tresor enrol --link-file …` runs it)'),
  )
    .requiredOption('--link-file <file>', LINK_HELP)
    .requiredOption('--password-file <file>', 'file holding the new password (- for stdin)')
    .requiredOption('--totp-secret-file <file>', 'new file (0600) to write the base32 TOTP secret to')
    .option('--otpauth-uri', 'also print the otpauth:// URI (a secret) for an authenticator app')
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (flags: EnrolFlags) => (await impl()).enrolCommand(flags));

  withServerFlags(
    enrol
      .command('confirm')
      .description('confirm TOTP with a current code: enrolment complete, recovery codes shown once'),
  )
    .requiredOption('--link-file <file>', LINK_HELP)
    .requiredOption('--factor-id <id>', 'the factor id tresor enrol printed (fac_…)')
    .requiredOption('--code <totp>', 'a current TOTP code of the secret tresor enrol wrote')
    .option('--recovery-codes-file <file>', 'new file (0600) for the recovery codes instead of printing them')
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (flags: EnrolConfirmFlags) => (await impl()).confirmCommand(flags));
}
