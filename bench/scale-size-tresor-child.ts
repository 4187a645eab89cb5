/**
 * The Tresor API server as its own process, for the size half of the scale bench (scale-size.ts):
 * the composition root `startTresorServer` — what `tresor server` runs — on 127.0.0.1 with a free
 * port, keyd as the separate process the bench started, SQLite files in `dataDir` or PostgreSQL
 * (`databaseUrl`). Before it announces itself it makes (first start) or reuses (`tenant`) one tenant
 * with the HTTPS bench's collection of 1 KiB records, and grows that collection to `records` records
 * directly in the tenant's store (fixtures-records.ts: the vault's own sealing and blind index, no
 * HTTP) — from `filled`, what earlier starts made. Then one JSON line on stdout:
 * { url, tenant, apiKey, fillSeconds }. With `records` absent it fills nothing: the audit curve's
 * restarts, which want only the start.
 *
 * It stops on SIGTERM or SIGINT and when its stdin ends (the bench exited or died). The API key
 * travels on stdout, a pipe to the bench, never on a command line.
 */
import { resolveServerConfig } from '../src/config/server-config.ts';
import { createKeyCache } from '../src/keyd/key-cache.ts';
import { startTresorServer } from '../src/server/tresor-server.ts';
import { createTenantDataKeyStore } from '../src/vault/data-key-store.ts';
import { createDataKeyring } from '../src/vault/data-keys.ts';
import { DEFAULT_LIMITS } from '../src/vault/schema.ts';
import type { CryptoContext } from '../src/vault/vault-context.ts';
import { fillRecordFixture } from './fixtures-records.ts';
import { COLLECTION, COLLECTION_DECLARATION, recordTemplate } from './http.ts';

export interface ScaleSizeChildArgs {
  dataDir: string;
  keydSocket: string;
  databaseUrl?: string;
  /** The tenant an earlier start made: reused, not created. */
  tenant?: { id: string; apiKey: string };
  /** Grow the collection to this many records (fixture), from `filled`. */
  records?: number;
  filled?: number;
  /** Seed of the fixture's record ids (fixtures-records.ts). */
  seed?: string;
  logLevel: string;
}

export interface ScaleSizeChildAddress {
  url: string;
  tenant: string;
  apiKey: string;
  fillSeconds: number;
}

/** Far above any rate the bench reaches (the configuration's maximum is 10,000,000 a window). */
const BENCH_RATE_LIMIT = '10000000';

const args = JSON.parse(process.argv[2] ?? '{}') as ScaleSizeChildArgs;
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
const actor = { kind: 'system', id: 'bench' } as const;
let tenant = args.tenant;
if (tenant === undefined) {
  const made = await server.tenants.createTenant({ name: 'Scale bench' }, { actor });
  await server.vault.putCollection(made.id, COLLECTION, COLLECTION_DECLARATION, { actor });
  tenant = { id: made.id, apiKey: made.apiKey };
}

let fillSeconds = 0;
if (args.records !== undefined && args.records > (args.filled ?? 0)) {
  // A keyring of its own over the server's keyd client and tenant stores: the data keys and their
  // reservations live in the tenant's store, shared with the server's keyring as between processes.
  const stores = (id: string) => server.tenantStores.open(id);
  const ctx: CryptoContext = {
    stores,
    keys: createDataKeyring({
      keys: server.keyd,
      store: createTenantDataKeyStore(stores),
      cache: createKeyCache({ maxEntries: 64, ttlMs: 300_000, maxUses: 1_000_000 }),
    }),
    clock: () => new Date(),
    limits: DEFAULT_LIMITS,
  };
  const template = recordTemplate();
  fillSeconds = await fillRecordFixture({
    ctx,
    tenant: tenant.id,
    collection: COLLECTION,
    seed: args.seed ?? 'scale',
    from: args.filled ?? 0,
    to: args.records,
    data: template.data,
  });
}

const address: ScaleSizeChildAddress = {
  url: server.url,
  tenant: tenant.id,
  apiKey: tenant.apiKey,
  fillSeconds,
};
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
