/**
 * `tresor doctor`: checks a deployment against the promises and prints a pass/fail table.
 *
 *   tresor doctor --config /etc/tresor/config.json [--url https://vault.example:8443] [--ca-file ca.pem] [--json]
 *
 * Run it on the server's host, as the server's user: it reads the configuration as `tresor server`
 * does, asks keyd for its status over the server's own channel, reads the control store (read-only)
 * and connects to the server's URL. Checks: keyd and the stores on no public address, TLS settings
 * and the certificate, keyd unsealed, no development root key, backups fresh and at two or more
 * destinations apart from the data, the audit log verified recently, clock skew, rate limits,
 * operator tokens that never expire. Exit 0 when none fails, 1 when one does, 2 usage.
 */
import type { Command } from 'commander';
import type { DoctorFlags } from './doctor-impl.ts';

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check this deployment against the promises: a pass/fail table; exit 1 on a failure')
    .option('--config <file>', 'the server’s JSON config file; env TRESOR_CONFIG')
    .option('--data-dir <dir>', 'the data folder; env TRESOR_DATA_DIR')
    .option(
      '--url <https-url>',
      'the server’s origin (default: publicUrl, else https://<host>:<port>); env TRESOR_URL',
    )
    .option(
      '--ca-file <pem>',
      'the CA of the server’s certificate (default: the system’s); env TRESOR_CA_FILE',
    )
    .option('--json', 'machine-readable output')
    .action(async (flags: DoctorFlags) => (await import('./doctor-impl.ts')).doctorCommand(flags));
}
