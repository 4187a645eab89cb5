/**
 * `tresor probe`: measured availability, from outside (docs/monitoring.md).
 *
 *   TRESOR_TOKEN=<tenant admin API key> tresor probe --url https://vault.example:8443 \
 *       [--ca-file ca.pem] [--interval 60] [--count N] [--log probes.jsonl] [--json]
 *   tresor probe --report --log probes.jsonl [--interval 60] [--objective 0.999] [--json]
 *
 * Each probe checks the API end to end — TLS, authentication, a write, a read, the read's audit
 * entry, the record deleted — and appends its result to --log. `--report` gives availability per
 * day and over 30 days against the objective, with the error budget left. Exit codes: 0 every
 * probe passed (report: the objective is met), 1 one failed (report: not met), 2 usage.
 */
import type { Command } from 'commander';
import { withServerFlags } from './connection-flags.ts';
import type { ProbeFlags } from './probe-impl.ts';

const impl = () => import('./probe-impl.ts');

export function registerProbeCommands(program: Command): void {
  withServerFlags(
    program
      .command('probe')
      .description('probe the API end to end (TLS, auth, write, read, audit entry) and record the result'),
  )
    .option('--token-file <file>', 'file holding a tenant admin API key (else env TRESOR_TOKEN)')
    .option('--collection <name>', "the probe's own collection (default tresor_probe)")
    .option('--interval <seconds>', 'seconds between probes (default 60)')
    .option('--count <n>', 'how many probes, then stop (default 1; 0: until stopped)')
    .option('--log <file>', 'append each result to this file (one JSON line each)')
    .option('--report', 'instead of probing: availability per day and over 30 days from --log')
    .option('--objective <ratio>', 'with --report: the availability objective (default 0.999)')
    .action(async (flags: ProbeFlags) => {
      const commands = await impl();
      return flags.report ? commands.reportCommand(flags) : commands.probeCommand(flags);
    });
}
