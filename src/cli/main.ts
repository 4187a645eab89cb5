/**
 * The `tresor` command: `tresor <noun> <verb>`, `--help` everywhere, `--json` where a script reads
 * the output, data on stdout, diagnostics on stderr, non-zero exit codes on failure.
 */
import { Command, CommanderError } from 'commander';
import { registerAccessCommands } from './access.ts';
import { registerApiKeyCommands } from './apikey.ts';
import { registerAuditCommands } from './audit.ts';
import { registerBackupCommands } from './backup.ts';
import { registerDevCommand } from './dev.ts';
import { registerDoctorCommand } from './doctor.ts';
import { registerEnrolCommands } from './enrol.ts';
import { registerInitCommand } from './init.ts';
import { warn } from './io.ts';
import { registerKeydCommands } from './keyd.ts';
import { registerLoginCommands } from './login.ts';
import { registerPersonCommands } from './person.ts';
import { registerProbeCommands } from './probe.ts';
import { registerRestoreCommand } from './restore.ts';
import { registerServerCommands } from './server.ts';
import { registerStatusCommand } from './status.ts';
import { registerTenantCommands } from './tenant.ts';
import { registerTokenCommands } from './token.ts';

export function buildProgram(): Command {
  const program = new Command('tresor')
    .description('Tresor: a self-hosted vault for customer data')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  registerKeydCommands(program);
  registerServerCommands(program);
  registerDevCommand(program);
  registerInitCommand(program);
  registerEnrolCommands(program);
  registerLoginCommands(program);
  registerAuditCommands(program);
  registerAccessCommands(program);
  registerStatusCommand(program);
  registerProbeCommands(program);
  registerDoctorCommand(program);
  registerTenantCommands(program);
  registerPersonCommands(program);
  registerTokenCommands(program);
  registerApiKeyCommands(program);
  registerRestoreCommand(program);
  registerBackupCommands(program);
  return program;
}

/**
 * Exit codes: 0 ok, 1 operation failed or refused, 2 usage error, 3 keyd unavailable or sealed, or
 * the server unreachable (a CliFailure carries its own).
 */
export function exitCodeFor(err: unknown): number {
  const own = (err as { exitCode?: unknown }).exitCode;
  if (typeof own === 'number' && !(err instanceof CommanderError)) return own;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'TRESOR_ERR_KEYD_UNAVAILABLE' || code === 'TRESOR_ERR_KEYD_SEALED') return 3;
  if (code.startsWith('commander.')) return 2;
  return 1;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    const e = err as { code?: string; message?: string };
    warn(`tresor: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`);
    process.exitCode = exitCodeFor(err);
  }
}

await main();
