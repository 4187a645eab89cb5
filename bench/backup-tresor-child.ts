/**
 * The Tresor API server as its own process, for the backup bench (backup.ts): the composition root
 * `startTresorServer` — what `tresor server` runs — on 127.0.0.1 with a free port, keyd as the
 * separate process the bench started (the stores in SQLite files, or in a PostgreSQL database given
 * by `databaseUrl`), and one folder backup destination, backups on demand only
 * (POST /v1/backups, exactly as `tresor backup now`). Before it announces itself it makes one
 * tenant with a collection of 1 KiB records and fills it with `records` records through the vault
 * in process (the same encryption, blind index and audit entry per record as over HTTP, without the
 * TLS and HTTP cost, so 100,000 records take a minute, not several), and an operator admin person
 * owning two operator tokens (backups:run, backups:read). Then it prints one JSON line on stdout:
 * { url, tenant, apiKey, runToken, readToken, filled, fillSeconds }.
 *
 * It stops on SIGTERM or SIGINT and when its stdin ends (the bench exited or died). The secrets
 * travel on stdout, a pipe to the bench, never on a command line.
 */
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { resolveServerConfig } from '../src/config/server-config.ts';
import { startTresorServer } from '../src/server/tresor-server.ts';
import { BENCH_COLLECTION, BENCH_DECLARATION, benchRecord } from './backup-record.ts';

export interface BackupChildArgs {
  dataDir: string;
  keydSocket: string;
  /** The folder destinations' parent: destination i is `<backupDir>/d<i>`. */
  backupDir: string;
  /** Folder destinations (default 1); `npm start`'s default deployment has two. */
  destinations?: number;
  /** Records to fill before announcing. */
  records: number;
  logLevel: string;
  /**
   * Tenants made empty for the write load, one per measured window, each closed (and so shredded
   * and its store removed, the grace being 0) when its window ends: the store a later backup copies
   * stays the size of the filled one instead of growing with every round's writes.
   */
  loadTenants?: number;
  /** The stores in this PostgreSQL database (a fresh one, bench/pg-database.ts) instead of SQLite. */
  databaseUrl?: string;
}

export interface BackupChildAddress {
  url: string;
  tenant: string;
  apiKey: string;
  runToken: string;
  readToken: string;
  filled: number;
  fillSeconds: number;
  /** The write load's tenants (see loadTenants), with their API keys. */
  loadKeys: { tenant: string; apiKey: string }[];
}

/** Far above any rate the bench reaches (the configuration's maximum is 10,000,000 a window). */
const BENCH_RATE_LIMIT = '10000000';
/** Records written at once while filling: the store's group commit batches them. */
const FILL_CONCURRENCY = 64;

const args = JSON.parse(process.argv[2] ?? '{}') as BackupChildArgs;
const config = resolveServerConfig(
  { dataDir: args.dataDir, host: '127.0.0.1', port: '0' },
  {
    TRESOR_KEYD_SOCKET: args.keydSocket,
    TRESOR_RATE_LIMIT_PER_KEY: BENCH_RATE_LIMIT,
    TRESOR_RATE_LIMIT_PER_ADDRESS: BENCH_RATE_LIMIT,
    TRESOR_LOG_LEVEL: args.logLevel,
    TRESOR_BACKUP_INTERVAL_MINUTES: '0',
    TRESOR_CLOSE_GRACE_DAYS: '0',
    ...(args.databaseUrl ? { TRESOR_DATABASE_URL: args.databaseUrl } : {}),
    TRESOR_BACKUP_DESTINATIONS: JSON.stringify(
      Array.from({ length: args.destinations ?? 1 }, (_, i) => ({
        name: `d${i}`,
        kind: 'folder',
        path: join(args.backupDir, `d${i}`),
      })),
    ),
  },
);
const server = await startTresorServer(config, { jobIntervalMs: 0 });
const actor = { kind: 'system', id: 'bench' } as const;
const tenant = await server.tenants.createTenant({ name: 'Backup bench' }, { actor });
await server.vault.putCollection(tenant.id, BENCH_COLLECTION, BENCH_DECLARATION, { actor });

const fillStarted = process.hrtime.bigint();
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(FILL_CONCURRENCY, args.records) }, async () => {
    while (next < args.records) {
      const n = next++;
      await server.vault.createRecord(tenant.id, BENCH_COLLECTION, benchRecord(n), { actor });
    }
  }),
);
const fillSeconds = Number(process.hrtime.bigint() - fillStarted) / 1e9;

const admin = await server.people.createPerson(
  { kind: 'system', job: 'bootstrap' },
  { side: 'operator', role: 'operator-admin', email: 'bench-admin@tresor.local' },
);
const token = (scope: 'backups:run' | 'backups:read') =>
  server.operatorTokens.issue('bench', {
    owner: admin.person.id,
    scope,
    name: `backup bench ${scope}`,
    lifetimeMs: 3_600_000,
  });
const loadKeys: { tenant: string; apiKey: string }[] = [];
for (let i = 0; i < (args.loadTenants ?? 0); i++) {
  const t = await server.tenants.createTenant({ name: `Backup bench load ${i + 1}` }, { actor });
  await server.vault.putCollection(t.id, BENCH_COLLECTION, BENCH_DECLARATION, { actor });
  loadKeys.push({ tenant: t.id, apiKey: t.apiKey });
}
const address: BackupChildAddress = {
  url: server.url,
  tenant: tenant.id,
  apiKey: tenant.apiKey,
  runToken: (await token('backups:run')).token,
  readToken: (await token('backups:read')).token,
  filled: args.records,
  fillSeconds,
  loadKeys,
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
// `close <tenant>` on stdin: that load tenant is closed at once; `closed <tenant>` answers on stdout.
createInterface({ input: process.stdin }).on('line', (line) => {
  const [verb, id] = line.trim().split(' ');
  if (verb !== 'close' || !id) return;
  void server.tenants.closeTenant(id, { reason: 'backup bench: its write window ended' }, { actor }).then(
    () => process.stdout.write(`closed ${id}\n`),
    (error: unknown) =>
      process.stdout.write(`failed ${id} ${(error as { code?: string }).code ?? 'error'}\n`),
  );
});
