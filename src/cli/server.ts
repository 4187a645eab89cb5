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
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  checkConfigFile,
  redactedServerConfig,
  resolveServerConfig,
  type ServerConfig,
} from '../config/server-config.ts';
import { CONFIG_FILE_SCHEMA } from '../config/server-schema.ts';
import { kebab, settingsOf } from '../config/settings.ts';
import type { KeydConnectTarget } from '../keyd/client.ts';
import { startTresorServer, type TresorServer } from '../server/tresor-server.ts';
import { info, out, warn } from './io.ts';
import { deadlineFromEnv, waitForKeyd } from './wait-for-keyd.ts';

const KEYD_WAIT_MS = 60_000;

function keydTarget(config: ServerConfig): KeydConnectTarget {
  const k = config.keyd;
  if (k.kind === 'unix') return { kind: 'unix', path: k.socketPath };
  return {
    kind: 'tls',
    host: k.host,
    port: k.port,
    cert: readFileSync(k.certFile),
    key: readFileSync(k.keyFile),
    ca: readFileSync(k.caFile),
    ...(k.servername ? { servername: k.servername } : {}),
  };
}

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

interface ServerFlags {
  config?: string;
  json?: boolean;
  [flag: string]: unknown;
}

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
      await waitForServerKeyd(config);
      const server = await startTresorServer(config);
      // Signals first: whoever reads the URL may send SIGTERM at once (it would kill, not stop).
      const stopped = handleServerSignals(server);
      if (flags.json) out({ url: server.url }, true);
      else info(`tresor: listening on ${server.url}`);
      await stopped;
    });

  const cfg = program.command('config').description('configuration');
  withServerFlags(cfg.command('show'))
    .description('print the resolved server config, secrets redacted')
    .action((flags: ServerFlags) => {
      const config = redactedServerConfig(resolveServerConfig(flags as Record<string, unknown>));
      out(flags.json ? config : JSON.stringify(config, null, 2), flags.json === true);
    });
  cfg
    .command('check <file>')
    .description(
      'validate a config file (with the TRESOR_* environment): every problem, then exit 1; "ok" and 0 when valid',
    )
    .option('--json', 'machine-readable output')
    .action((file: string, flags: { json?: boolean }) => {
      const problems = checkConfigFile(file);
      if (flags.json) out({ ok: problems.length === 0, problems }, true);
      else out(problems.length === 0 ? 'ok' : problems.join('\n'), false);
      if (problems.length > 0) process.exitCode = 1;
    });
}
