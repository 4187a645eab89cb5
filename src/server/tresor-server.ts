/**
 * The composition root: builds every piece of a Tresor API node from its config and starts it.
 * Only this file knows all of them; each domain gets just what it needs (STYLE.md rule 3).
 *
 *   keyd client ─┬─ DataKeyring (bounded key cache) ─ vault (collections, records, export)
 *                └─ tenant service (tenant keys, deletion certificates)
 *   control store (tenants, API keys, operators, audit events)   tenant stores (one file each)
 *   authenticator ─ HTTP pipeline ─ routes
 *
 * Audit events of a tenant's API keys go to that tenant's store (in the same transaction as the
 * change); operator and system events go to the control store.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AuditEvent, appendAuditEvent } from '../audit/event.ts';
import type { ServerConfig } from '../config/server-config.ts';
import { allRouteModules } from '../http/routes/index.ts';
import { createHttpServer, type HttpServer } from '../http/server.ts';
import { createApiKeyService } from '../identity/api-keys.ts';
import { createAuthenticator } from '../identity/authenticate.ts';
import { createOperatorService, type OperatorService } from '../identity/operators.ts';
import { createKeydClient, type KeydClient } from '../keyd/client.ts';
import { createKeyCache, type KeyCache } from '../keyd/key-cache.ts';
import { openSqliteStore } from '../store/sqlite/store.ts';
import { createTenantStores, type TenantStores } from '../store/sqlite/tenant-stores.ts';
import type { Store } from '../store/types.ts';
import { createVault, type Vault } from '../vault/collections.ts';
import { type ControlDB, controlStoreMigrations } from '../vault/control-store-schema.ts';
import { createTenantDataKeyStore } from '../vault/data-key-store.ts';
import { createDataKeyring } from '../vault/data-keys.ts';
import { type TenantDB, tenantStoreMigrations } from '../vault/tenant-store-schema.ts';
import { createTenantService, type TenantService } from '../vault/tenants.ts';

export interface TresorServerOptions {
  /** How long backups are kept: the deletion certificate's horizon (days). */
  backupRetentionDays?: number;
  /** Key cache bounds (keys stay in memory at most this long / this many uses). */
  keyCache?: { maxEntries: number; ttlMs: number; maxUses: number };
  /** Period of the contract-end and retention jobs; 0 turns them off (tests). */
  jobIntervalMs?: number;
}

export interface TresorServer {
  url: string;
  http: HttpServer;
  control: Store<ControlDB>;
  tenantStores: TenantStores<TenantDB>;
  tenants: TenantService;
  operators: OperatorService;
  vault: Vault;
  keyd: KeydClient;
  keyCache: KeyCache;
  /** One pass of the system jobs: contract-end closing and retention. */
  runJobs(): Promise<void>;
  close(): Promise<void>;
}

const SYSTEM_EVENT = (job: string): AuditEvent => ({
  at: new Date().toISOString(),
  actor: { kind: 'system', id: job },
  tenant: null,
  action: 'system.job',
  outcome: 'success',
});

export async function startTresorServer(
  config: ServerConfig,
  options: TresorServerOptions = {},
): Promise<TresorServer> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const keyd = createKeydClient({
    connect:
      config.keyd.kind === 'unix'
        ? { kind: 'unix', path: config.keyd.socketPath }
        : {
            kind: 'tls',
            host: config.keyd.host,
            port: config.keyd.port,
            cert: readFileSync(config.keyd.certFile),
            key: readFileSync(config.keyd.keyFile),
            ca: readFileSync(config.keyd.caFile),
            ...(config.keyd.servername ? { servername: config.keyd.servername } : {}),
          },
    clientName: 'tresor-server',
  });
  const control = await openSqliteStore<ControlDB>(
    join(config.dataDir, 'control.sqlite'),
    controlStoreMigrations,
  );
  const tenantStores = createTenantStores<TenantDB>({
    dir: config.dataDir,
    migrations: tenantStoreMigrations,
  });
  const openTenant = (tenant: string) => tenantStores.open(tenant);
  const keyCache = createKeyCache(
    options.keyCache ?? { maxEntries: 10_000, ttlMs: 5 * 60_000, maxUses: 1_000_000 },
  );
  const dataKeys = createDataKeyring({
    keys: keyd,
    store: createTenantDataKeyStore(openTenant),
    cache: keyCache,
  });
  const vault = createVault({ stores: openTenant, keys: dataKeys });
  const apiKeys = createApiKeyService({ control });
  const tenantService = createTenantService({
    control,
    onApiKeysRevoked: (tenant) => apiKeys.forgetTenant(tenant),
    tenantStores,
    keys: keyd,
    exporter: (tenant, target) => vault.exportTenant(tenant, target, SYSTEM_EVENT('tenant-close')),
    config: { closeGraceDays: config.closeGraceDays, backupRetentionDays: options.backupRetentionDays ?? 35 },
  });
  // A closed tenant's keys must not outlive it in memory (DESIGN invariant 9).
  const tenants: TenantService = {
    ...tenantService,
    async closeTenant(id, input, context) {
      try {
        return await tenantService.closeTenant(id, input, context);
      } finally {
        if ((await tenantService.getTenant(id).catch(() => undefined))?.state === 'closed')
          dataKeys.forgetTenant(id);
      }
    },
    async autoClose(now) {
      const report = await tenantService.autoClose(now);
      for (const id of report.closed) dataKeys.forgetTenant(id);
      return report;
    },
    async resume() {
      const report = await tenantService.resume();
      for (const id of report.closed) dataKeys.forgetTenant(id);
      return report;
    },
  };
  const operators = createOperatorService({ control });
  const authenticate = createAuthenticator({ control, apiKeys, operators });

  const http = await createHttpServer({
    config,
    authenticate,
    audit: {
      async record(event, tenant) {
        const store = tenant !== null && event.actor.kind === 'api-key' ? await openTenant(tenant) : control;
        await (store as Store<ControlDB>).write((trx) => appendAuditEvent(trx, event));
      },
    },
    readiness: [
      { name: 'store', check: () => control.healthy() },
      { name: 'keyd', check: async () => (await keyd.call('health', {})).status === 'ok' },
      { name: 'audit', check: () => control.healthy() },
    ],
    routes: allRouteModules({ vault: { vault }, tenants: { tenants, apiKeys } }),
  });

  await tenants.resume().catch(() => undefined); // keyd may still be starting; the job timer retries

  async function runJobs(): Promise<void> {
    await tenants.resume().catch(() => undefined);
    await tenants.autoClose().catch(() => undefined);
    for (const t of await tenants.listTenants({ state: 'active' })) {
      await vault.runRetention(t.id).catch(() => undefined);
    }
  }
  const interval = options.jobIntervalMs ?? 3_600_000;
  const timer = interval > 0 ? setInterval(() => void runJobs(), interval) : undefined;
  timer?.unref();

  const { url } = await http.listen();
  return {
    url,
    http,
    control,
    tenantStores,
    tenants,
    operators,
    vault,
    keyd,
    keyCache,
    runJobs,
    async close() {
      if (timer) clearInterval(timer);
      await http.close();
      await apiKeys.flush().catch(() => undefined);
      await operators.flush().catch(() => undefined);
      await tenantStores.close();
      await control.close();
      keyCache.close();
      await keyd.close();
    },
  };
}
