/**
 * The flags of every command that talks to a server over HTTPS (api-client.ts reads them), and the
 * help text saying where each value comes from when the flag is not given. Declarations only, so
 * `tresor --help` loads nothing more.
 */
import type { Command } from 'commander';

export const EXIT_CODES_HELP = [
  '',
  'Exit codes:',
  '  0  done',
  '  1  refused or failed: the server answered with an error (printed as tresor: CODE: message)',
  '  2  usage (bad flags, no credential, no server URL)',
  '  3  the server cannot be reached (refused, unknown host, TLS failure, no answer in 10 s)',
].join('\n');

/** --url, --ca-file and --json: the server and the output (commands that need no credential). */
export function withServerFlags(cmd: Command): Command {
  return cmd
    .option('--url <https-url>', "the server's HTTPS origin; env TRESOR_URL, else the profile's")
    .option(
      '--ca-file <pem>',
      "trust only this CA for the server's certificate; env TRESOR_CA_FILE, else the profile's, else the system's CAs",
    )
    .option(
      '--profile <file>',
      'the profile file; env TRESOR_PROFILE (default ~/.config/tresor/profile.json)',
    )
    .option('--json', 'machine-readable output');
}

/** The server flags plus the credential: a bearer token file, or the profile's session and --code. */
export function withConnectionFlags(cmd: Command): Command {
  return withServerFlags(cmd)
    .option(
      '--token-file <file>',
      'file holding an operator token or tenant API key (else env TRESOR_TOKEN, else the profile’s session)',
    )
    .option(
      '--code <totp>',
      'a current TOTP code, used only if the server asks the session for a fresh second factor (step-up)',
    )
    .addHelpText('after', EXIT_CODES_HELP);
}
