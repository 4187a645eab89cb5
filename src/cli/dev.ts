/**
 * `tresor dev` (what `npm start` runs): the whole stack on embedded defaults. keyd runs as its own
 * child process with the dev-only root key file in `<data dir>/keyd`, on a 0600 Unix socket.
 * Ctrl-C stops every process cleanly; a second start reuses the data folder.
 */
import type { Command } from 'commander';
import type { DevFlags } from './dev-impl.ts';

const impl = () => import('./dev-impl.ts');

export function registerDevCommand(program: Command): void {
  program
    .command('dev')
    .description('run the whole stack on embedded defaults (what `npm start` runs)')
    .option(
      '--data-dir <folder>',
      'data folder; env TRESOR_DATA_DIR',
      process.env.TRESOR_DATA_DIR ?? '.tresor-data',
    )
    .option('--port <n>', 'HTTPS port; env TRESOR_PORT (default 8443)')
    .option('--json', 'print the credentials as JSON on stdout (what dev-credentials.json holds)')
    .action(async (flags: DevFlags) => (await impl()).dev(flags));
}
