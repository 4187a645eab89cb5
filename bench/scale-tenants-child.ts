/**
 * The Tresor API server as its own process, for the tenant-count bench (scale-tenants.ts): the
 * composition root `startTresorServer` — the one `tresor server` runs — on 127.0.0.1 with a free
 * port, its metrics listener on another (the bench reads the stores' counters there), and keyd as
 * the separate process the bench started. Before it answers, it makes the tenants the bench asks
 * for, each with the bench's collection, a few records and its first API key, and prints one JSON
 * line on stdout: { url, metricsUrl, tenants: [{ id, apiKey, records }] }.
 *
 * The tenants are made through the server's own services in this process (tenant service: keyd key,
 * store, API key; vault: collection and records, each audited as an API key's write), not through
 * HTTP: 10,000 tenants over HTTPS would take most of an hour of requests that are not what is
 * measured. The stores hold what the HTTP routes would have written.
 *
 * As http-tresor-child.ts: rate limits raised, jobs timer off, stops on SIGTERM/SIGINT or when its
 * stdin ends; API keys travel on stdout (a pipe to the bench), never on a command line.
 */
import { resolveServerConfig } from '../src/config/server-config.ts';
import { startTresorServer } from '../src/server/tresor-server.ts';
import { COLLECTION, COLLECTION_DECLARATION, recordTemplate } from './http.ts';

export interface ScaleTenantsChildArgs {
  dataDir: string;
  keydSocket: string;
  /** A PostgreSQL database (bench/pg-database.ts) for the server's stores, as `database.url`. */
  databaseUrl?: string;
  tenants: number;
  recordsPerTenant: number;
  logLevel: string;
}

export interface ScaleTenant {
  id: string;
  apiKey: string;
  /** Record ids in the tenant's collection. */
  records: string[];
}

export interface ScaleTenantsChildAddress {
  url: string;
  metricsUrl: string;
  tenants: ScaleTenant[];
}

/** Far above any rate the bench reaches (the configuration's maximum is 10,000,000 a window). */
const BENCH_RATE_LIMIT = '10000000';
/** Tenants made at once: enough to fill the group commits, few enough to keep keyd's queue short. */
const MAKE_CONCURRENCY = 16;

const args = JSON.parse(process.argv[2] ?? '{}') as ScaleTenantsChildArgs;
const config = resolveServerConfig(
  { dataDir: args.dataDir, host: '127.0.0.1', port: '0' },
  {
    TRESOR_KEYD_SOCKET: args.keydSocket,
    TRESOR_RATE_LIMIT_PER_KEY: BENCH_RATE_LIMIT,
    TRESOR_RATE_LIMIT_PER_ADDRESS: BENCH_RATE_LIMIT,
    TRESOR_LOG_LEVEL: args.logLevel,
    TRESOR_METRICS_PORT: '0',
    ...(args.databaseUrl === undefined ? {} : { TRESOR_DATABASE_URL: args.databaseUrl }),
  },
);
const server = await startTresorServer(config, { jobIntervalMs: 0 });
if (server.metricsUrl === undefined) throw new Error('the metrics listener did not start');

const template = recordTemplate();
let nextEmail = 0;
async function makeTenant(n: number): Promise<ScaleTenant> {
  const system = { actor: { kind: 'system', id: 'bench' } } as const;
  const tenant = await server.tenants.createTenant({ name: `Scale bench ${n}` }, system);
  const origin = { actor: { kind: 'api-key', id: tenant.apiKeyId } } as const;
  await server.vault.putCollection(tenant.id, COLLECTION, COLLECTION_DECLARATION, origin);
  const records: string[] = [];
  for (let i = 0; i < args.recordsPerTenant; i++) {
    const created = await server.vault.createRecord(
      tenant.id,
      COLLECTION,
      template.data(nextEmail++),
      origin,
    );
    records.push(created.id);
  }
  return { id: tenant.id, apiKey: tenant.apiKey, records };
}

const tenants: ScaleTenant[] = new Array(args.tenants);
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(MAKE_CONCURRENCY, args.tenants) }, async () => {
    while (next < args.tenants) {
      const n = next++;
      tenants[n] = await makeTenant(n);
      if ((n + 1) % 1000 === 0) process.stderr.write(`scale-tenants: ${n + 1} tenants made\n`);
    }
  }),
);
// Their audit events moved into the log before anything is measured.
await server.audit.sequencer.drain();

const address: ScaleTenantsChildAddress = { url: server.url, metricsUrl: server.metricsUrl, tenants };
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
