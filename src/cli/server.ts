/**
 * `tresor server`: one API node. Config from flags > TRESOR_* > config file > defaults; SIGHUP
 * reloads the TLS certificates without dropping connections; SIGTERM/SIGINT finish in-flight
 * requests, then stop. `tresor config show` prints the resolved config with secrets redacted;
 * `tresor config check FILE` lists every problem of a config file and exits 1 when there is one.
 * The flags are read from the config schema (src/config/server-schema.ts), like everything else.
 *
 * Before it listens it waits for keyd to answer, up to TRESOR_KEYD_WAIT_MS (60 s), saying what it
 * waits for; a keyd that never answers ends the start with one line and exit code 3. A sealed keyd
 * answers: the server starts, and routes that need keys answer 503 until keyd is unsealed.
 *
 * This file only declares the commands; what they do is in server-impl.ts, loaded when one runs.
 * The flags need the config schema (and typebox), the one thing `tresor --help` loads beside
 * commander: `tresor help server` prints them synchronously, before any command could load them.
 */
import type { Command } from 'commander';
import { CONFIG_FILE_SCHEMA } from '../config/server-schema.ts';
import { kebab, settingsOf } from '../config/settings.ts';
import type { ServerFlags } from './server-impl.ts';

const impl = () => import('./server-impl.ts');

/** The flags of the server's settings that have one (`dataDir` and the `server` section). */
const FLAG_SETTINGS = settingsOf(CONFIG_FILE_SCHEMA).filter(
  (s) => s.flag !== undefined && !s.pointer.startsWith('/keyd/'),
);

function withServerFlags(cmd: Command): Command {
  cmd.option('--config <file>', 'JSON config file; env TRESOR_CONFIG');
  for (const s of FLAG_SETTINGS) {
    const fallback = s.schema.default !== undefined ? String(s.schema.default) : s.defaultText;
    const text = s.description.replace(/\.$/, '');
    cmd.option(
      `--${kebab(s.flag ?? '')} <value>`,
      `${text}; env ${s.env}${fallback === undefined ? '' : ` (default ${fallback.replaceAll('`', '')})`}`,
    );
  }
  return cmd.option('--json', 'machine-readable output');
}

export function registerServerCommands(program: Command): void {
  withServerFlags(program.command('server'))
    .description('run one Tresor API node (HTTPS) against keyd and the data folder')
    .action(async (flags: ServerFlags) => (await impl()).server(flags));

  const cfg = program.command('config').description('configuration');
  withServerFlags(cfg.command('show'))
    .description('print the resolved server config, secrets redacted')
    .action(async (flags: ServerFlags) => (await impl()).configShow(flags));
  cfg
    .command('check <file>')
    .description(
      'validate a config file (with the TRESOR_* environment): every problem, then exit 1; "ok" and 0 when valid',
    )
    .option('--json', 'machine-readable output')
    .action(async (file: string, flags: { json?: boolean }) => (await impl()).configCheck(file, flags));
}
