/**
 * What `tresor server` and `tresor config …` do (server.ts declares the commands and loads this
 * module only when one of them runs, so `tresor --help` does not load the server and its packages).
 */
import {
  checkConfigFile,
  redactedServerConfig,
  resolveServerConfig,
  type ServerConfig,
} from '../config/server-config.ts';
import { startTresorServer, type TresorServer } from '../server/tresor-server.ts';
import { info, out, warn } from './io.ts';
import { keydTarget } from './keyd-target.ts';
import { deadlineFromEnv, waitForKeyd } from './wait-for-keyd.ts';

const KEYD_WAIT_MS = 60_000;

function describeKeyd(config: ServerConfig): string {
  const k = config.keyd;
  return k.kind === 'unix' ? `keyd on ${k.socketPath}` : `keyd at ${k.host}:${k.port} (mutual TLS)`;
}

/** Waits until keyd answers (sealed or not), saying so on stderr if it does not at once. */
async function waitForServerKeyd(config: ServerConfig): Promise<void> {
  const deadlineMs = deadlineFromEnv('TRESOR_KEYD_WAIT_MS', KEYD_WAIT_MS);
  const which = describeKeyd(config);
  const health = await waitForKeyd({
    connect: keydTarget(config),
    clientName: 'tresor-server',
    deadlineMs,
    until: 'answers',
    onWaiting: () =>
      info(`tresor: waiting for ${which} to answer (up to ${deadlineMs} ms, TRESOR_KEYD_WAIT_MS)…`),
  }).catch((err: unknown) => {
    throw Object.assign(err as Error, { message: `${which}: ${(err as Error).message}` });
  });
  if (health.status !== 'ok')
    warn(`tresor: ${which} is ${health.status}: routes that need keys answer 503 until it is unsealed`);
}

export interface ServerFlags {
  config?: string;
  json?: boolean;
  [flag: string]: unknown;
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

export async function server(flags: ServerFlags): Promise<void> {
  const config = resolveServerConfig(flags as Record<string, unknown>);
  await waitForServerKeyd(config);
  // On PostgreSQL Tresor takes no backups of its own (server-config.ts): nothing to warn about.
  if (config.backup.defaultDestinations && config.database.kind === 'sqlite') {
    warn(
      `tresor: backups go to the default destinations ${config.backup.destinations.map((d) => (d.kind === 'folder' ? d.path : d.name)).join(' and ')}, on the same disk as the data: a lost disk loses both. Configure server.backup.destinations (TRESOR_BACKUP_DESTINATIONS) on other disks or sites.`,
    );
  }
  const server = await startTresorServer(config);
  // Signals first: whoever reads the URL may send SIGTERM at once (it would kill, not stop).
  const stopped = handleServerSignals(server);
  if (flags.json)
    out({ url: server.url, ...(server.metricsUrl ? { metricsUrl: server.metricsUrl } : {}) }, true);
  else {
    info(`tresor: listening on ${server.url}`);
    if (server.metricsUrl) info(`tresor: metrics on ${server.metricsUrl}/metrics (plain HTTP, no token)`);
  }
  await stopped;
}

export function configShow(flags: ServerFlags): void {
  const config = redactedServerConfig(resolveServerConfig(flags as Record<string, unknown>));
  out(flags.json ? config : JSON.stringify(config, null, 2), flags.json === true);
}

export function configCheck(file: string, flags: { json?: boolean }): void {
  const problems = checkConfigFile(file);
  if (flags.json) out({ ok: problems.length === 0, problems }, true);
  else out(problems.length === 0 ? 'ok' : problems.join('\n'), false);
  if (problems.length > 0) process.exitCode = 1;
}
