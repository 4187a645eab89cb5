/**
 * `tresor server`: one API node. Config from flags > TRESOR_* > config file > defaults; SIGHUP
 * reloads the TLS certificates without dropping connections; SIGTERM/SIGINT finish in-flight
 * requests, then stop. `tresor config show` prints the resolved config with secrets redacted.
 */
import type { Command } from 'commander';
import { redactedServerConfig, resolveServerConfig } from '../config/server-config.ts';
import { startTresorServer, type TresorServer } from '../server/tresor-server.ts';
import { info, out } from './io.ts';

interface ServerFlags {
  config?: string;
  dataDir?: string;
  host?: string;
  port?: string;
  tlsCert?: string;
  tlsKey?: string;
  json?: boolean;
}

function withServerFlags(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'JSON config file; env TRESOR_CONFIG')
    .option('--data-dir <folder>', 'data folder; env TRESOR_DATA_DIR (default ./.tresor-data)')
    .option('--host <address>', 'listen address; env TRESOR_HOST (default 127.0.0.1)')
    .option('--port <n>', 'HTTPS port; env TRESOR_PORT (default 8443)')
    .option('--tls-cert <file>', 'PEM certificate chain; env TRESOR_TLS_CERT (default: the dev CA)')
    .option('--tls-key <file>', 'PEM private key; env TRESOR_TLS_KEY')
    .option('--json', 'machine-readable output');
}

/** Stops the server on SIGTERM/SIGINT and reloads certificates on SIGHUP. */
export function handleServerSignals(
  server: TresorServer,
  onStop: () => Promise<void> = async () => {},
): Promise<void> {
  return new Promise((resolveStopped) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      info('tresor: finishing in-flight requests…');
      void server
        .close()
        .then(onStop)
        .finally(() => {
          process.off('SIGHUP', reload);
          resolveStopped();
        });
    };
    const reload = () => {
      server.reloadCertificates().then(
        () => info('tresor: TLS certificates reloaded'),
        (error: unknown) =>
          info(`tresor: TLS certificates NOT reloaded: ${error instanceof Error ? error.message : 'error'}`),
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', reload);
  });
}

export function registerServerCommands(program: Command): void {
  withServerFlags(program.command('server'))
    .description('run one Tresor API node (HTTPS) against keyd and the data folder')
    .action(async (flags: ServerFlags) => {
      const config = resolveServerConfig(flags as Record<string, unknown>);
      const server = await startTresorServer(config);
      if (flags.json) out({ url: server.url }, true);
      else info(`tresor: listening on ${server.url}`);
      await handleServerSignals(server);
    });

  const cfg = program.command('config').description('configuration');
  withServerFlags(cfg.command('show'))
    .description('print the resolved server config, secrets redacted')
    .action((flags: ServerFlags) => {
      const config = redactedServerConfig(resolveServerConfig(flags as Record<string, unknown>));
      out(flags.json ? config : JSON.stringify(config, null, 2), flags.json === true);
    });
}
