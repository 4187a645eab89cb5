/**
 * `tresor login` and `tresor logout`: a console session for the CLI, kept in the profile file.
 *
 *   tresor login --url https://vault.example:8443 [--ca-file ca.pem] --email ada@example.com \
 *                --password-file pw.txt --code 123456 [--tenant ten_… for a tenant's person]
 *   tresor step-up [--code 123456]
 *   tresor password --current-password-file old.txt --new-password-file new.txt [--code 123456]
 *   tresor logout
 *
 * Login is the console's: the password, then a TOTP code (typed on a terminal when --code is not
 * given). The session's cookie and CSRF token, the URL, the CA file and the expiry are saved to the
 * profile (--profile, env TRESOR_PROFILE, default $XDG_CONFIG_HOME/tresor/profile.json or
 * ~/.config/tresor/profile.json), mode 0600, written atomically. Later commands use it when no
 * token is given. Step-up passes the second factor again (POST /v1/auth/reauthenticate): the
 * routes that create or raise staff, close tenants, change approval policies or mint tokens need
 * one from the last 5 minutes (a command given --code does it by itself when the server asks); the
 * session gets a new cookie and CSRF token, saved. `tresor password` changes the signed-in person's
 * own password (POST /v1/auth/password, a step-up route): every session of the person ends, and the
 * new session the server answers with is saved. Logout ends the session on the server and removes
 * the profile.
 */
import type { Command } from 'commander';
import { EXIT_CODES_HELP, withServerFlags } from './connection-flags.ts';
import type { LoginFlags, LogoutFlags, PasswordFlags, StepUpFlags } from './login-impl.ts';

const impl = () => import('./login-impl.ts');

export function registerLoginCommands(program: Command): void {
  withServerFlags(
    program
      .command('login')
      .description('sign in as a console person (password, then TOTP) and save the session to the profile'),
  )
    .requiredOption('--email <address>', 'your sign-in e-mail')
    .requiredOption(
      '--password-file <file>',
      'file holding your password (- for stdin; never on the command line)',
    )
    .option('--code <totp>', 'a current TOTP code (else typed on the terminal)')
    .option('--tenant <id>', "a tenant's person signs in to that tenant (customer side)")
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (flags: LoginFlags) => (await impl()).loginCommand(flags));

  withServerFlags(
    program
      .command('step-up')
      .description("pass the saved session's second factor again (fresh for 5 minutes)"),
  )
    .option('--code <totp>', 'a current TOTP code (else typed on the terminal)')
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (flags: StepUpFlags) => (await impl()).stepUpCommand(flags));

  withServerFlags(
    program
      .command('password')
      .description("change the saved session's own password: every other session ends, this one is renewed"),
  )
    .requiredOption('--current-password-file <file>', 'file holding your current password (- for stdin)')
    .requiredOption('--new-password-file <file>', 'file holding the new password (- for stdin)')
    .option('--code <totp>', 'a current TOTP code, if the second factor is not fresh (else typed)')
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (flags: PasswordFlags) => (await impl()).passwordCommand(flags));

  withServerFlags(program.command('logout').description('end the saved session and remove the profile'))
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (flags: LogoutFlags) => (await impl()).logoutCommand(flags));
}
