/**
 * The Tresor API server as its own process, for the HTTPS bench (http.ts): the composition root
 * `startTresorServer` — the same one `tresor server` and `tresor dev` run — on 127.0.0.1 with a
 * free port, its data folder and the dev TLS certificate from the bench's arguments, and keyd as the
 * separate process the bench started. It creates one tenant (what `tresor dev` does for its demo
 * tenant) and prints one JSON line on stdout once listening: { url, tenant, apiKey }.
 *
 * The configuration goes through resolveServerConfig, so it is validated as an operator's would be.
 * Only the rate limits are raised: the default budget (600,000 a minute per key and per address)
 * is below what one bench client sends. The jobs timer is off, as in tests.
 *
 * It stops on SIGTERM or SIGINT (in-flight requests finish, stores close) and also when its stdin
 * ends — when the bench that holds the other end exits or dies — so no server outlives a bench run.
 * The API key travels on stdout (a pipe to the bench), never on a command line.
 */
import { resolveServerConfig } from '../src/config/server-config.ts';
import { startTresorServer } from '../src/server/tresor-server.ts';

export interface TresorChildArgs {
  dataDir: string;
  keydSocket: string;
  /** A PostgreSQL database (bench/pg-database.ts) for the server's stores, as `database.url`. */
  databaseUrl?: string;
  /** A tenant made by another node on the same database: served, not created again. */
  tenant?: { id: string; apiKey: string };
  /** Pino level for the server's log (its stderr goes to a file); `info` logs one line per request. */
  logLevel: string;
}

export interface TresorChildAddress {
  url: string;
  tenant: string;
  apiKey: string;
}

/** Far above any rate the bench reaches (the configuration's maximum is 10,000,000 a window). */
const BENCH_RATE_LIMIT = '10000000';

const args = JSON.parse(process.argv[2] ?? '{}') as TresorChildArgs;
const config = resolveServerConfig(
  { dataDir: args.dataDir, host: '127.0.0.1', port: '0' },
  {
    TRESOR_KEYD_SOCKET: args.keydSocket,
    TRESOR_RATE_LIMIT_PER_KEY: BENCH_RATE_LIMIT,
    TRESOR_RATE_LIMIT_PER_ADDRESS: BENCH_RATE_LIMIT,
    TRESOR_LOG_LEVEL: args.logLevel,
    ...(args.databaseUrl === undefined ? {} : { TRESOR_DATABASE_URL: args.databaseUrl }),
  },
);
const server = await startTresorServer(config, { jobIntervalMs: 0 });
const tenant =
  args.tenant ??
  (await server.tenants.createTenant({ name: 'HTTPS bench' }, { actor: { kind: 'system', id: 'bench' } }));
const address: TresorChildAddress = { url: server.url, tenant: tenant.id, apiKey: tenant.apiKey };
process.stdout.write(`${JSON.stringify(address)}\n`);

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  void server.close().finally(() => process.exit(0));
}
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
