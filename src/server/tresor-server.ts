/**
 * The composition root: builds every piece of a Tresor API node from its config and starts it.
 * Only this file knows all of them; each domain gets just what it needs (STYLE.md rule 3).
 *
 *   keyd client ─┬─ DataKeyring (bounded key cache) ─ vault (collections, records, export)
 *                └─ tenant service (tenant keys, deletion certificates)
 *   control store (tenants, API keys, operators, audit events)   tenant stores (one file each)
 *   authenticator ─ HTTP pipeline ─ routes
 *
 *   identity: sessions, login, people (TOTP secrets sealed by the factor key, which keyd wraps:
 *   identity/factor-key.ts), WebAuthn — console sessions in the pipeline, routes/identity.ts
 *
 * Audit events of a tenant's API keys go to that tenant's store (in the same transaction as the
 * change); operator and system events go to the control store.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGrantService, type GrantService } from '../access/grants.ts';
import { createAccessReviewService } from '../access/review.ts';
import { type AuditLog, createAuditLog } from '../audit/audit-log.ts';
import { createDiskWatch } from '../audit/disk-space.ts';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from '../audit/event.ts';
import { createKeydOpsMirror } from '../audit/keyd-ops.ts';
import { CONTROL_SOURCE } from '../audit/sequencer.ts';
import {
  createSinkDispatcher,
  createSinks,
  parseSinkConfig,
  type SinkDispatcher,
} from '../audit/sinks/index.ts';
import { createWitness } from '../audit/witness.ts';
import type { ServerConfig } from '../config/server-config.ts';
import { allRouteModules } from '../http/routes/index.ts';
import { createHttpServer, type HttpServer } from '../http/server.ts';
import { personAuditActor } from '../identity/accounts.ts';
import { createApiKeyService, tenantApiKeys } from '../identity/api-keys.ts';
import { createAuthenticator } from '../identity/authenticate.ts';
import { createFactorKeySource } from '../identity/factor-key.ts';
import { createLoginService } from '../identity/login.ts';
import { createOperatorService, type OperatorService } from '../identity/operators.ts';
import { createPeopleService, type PeopleService } from '../identity/people.ts';
import { createSessionService, type SessionService } from '../identity/sessions.ts';
import { createWebAuthnService } from '../identity/webauthn.ts';
import { createSqliteWebAuthnStore } from '../identity/webauthn-store.ts';
import { createKeydClient, type KeydClient } from '../keyd/client.ts';
import { createKeyCache, type KeyCache } from '../keyd/key-cache.ts';
import { createTenantStores, type TenantStores } from '../store/sqlite/tenant-stores.ts';
import type { Store } from '../store/types.ts';
import { createVault, type Vault } from '../vault/collections.ts';
import { createTenantDataKeyStore } from '../vault/data-key-store.ts';
import { createDataKeyring } from '../vault/data-keys.ts';
import { type TenantDB, tenantStoreMigrations } from '../vault/tenant-store-schema.ts';
import { createTenantService, type TenantService } from '../vault/tenants.ts';
import { recordConfigAtStart } from './config-audit.ts';
import { type ControlDB, controlStorePath, openControlStore } from './control-store.ts';

export interface TresorServerOptions {
  /** How long backups are kept: the deletion certificate's horizon (days). */
  backupRetentionDays?: number;
  /** Key cache bounds (keys stay in memory at most this long / this many uses). */
  keyCache?: { maxEntries: number; ttlMs: number; maxUses: number };
  /** Period of copying keyd's operations into the audit log (default 2 s). */
  keydOpsIntervalMs?: number;
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
  /** Console accounts (the bootstrap console admin is made through it). */
  people: PeopleService;
  sessions: SessionService;
  vault: Vault;
  keyd: KeydClient;
  keyCache: KeyCache;
  audit: AuditLog;
  grants: GrantService;
  /** Reads the TLS certificate files again (SIGHUP) and records it in the audit log (`tls.reload`). */
  reloadCertificates(): Promise<void>;
  /** One pass of the system jobs: contract-end closing and retention. */
  runJobs(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A store whose successful writes tell the audit sequencer that `source`'s outbox may hold new
 * events. The sequencer reads the outbox from its own cursor, so a notification for a write that
 * carried no event costs one empty query.
 */
function notifying<DB>(store: Store<DB>, source: string, audit: () => AuditLog | undefined): Store<DB> {
  return {
    location: store.location,
    db: store.db,
    async write(work) {
      const result = await store.write(work);
      audit()?.sequencer.notify(source);
      return result;
    },
    healthy: () => store.healthy(),
    close: () => store.close(),
  };
}

/**
 * The configured sinks (SIEM file, syslog, webhook) fed from the log: each keeps its own durable
 * cursor under <dataDir>/audit-sinks, so it resumes after a restart and a slow one holds up nobody.
 */
function startSinks(
  config: ServerConfig,
  audit: AuditLog,
  warn: (obj: object, msg: string) => void,
): SinkDispatcher | undefined {
  if (config.audit.sinksFile === undefined) return undefined;
  const file = config.audit.sinksFile;
  const sinks = createSinks(parseSinkConfig(JSON.parse(readFileSync(file, 'utf8')), file));
  if (sinks.length === 0) return undefined;
  const dispatcher = createSinkDispatcher({
    sinks,
    stateDir: join(config.dataDir, 'audit-sinks'),
    async readEntries(from, limit) {
      const rows = await audit.reader.entries({ from, limit, below: audit.sequencer.treeHead().size });
      return rows.map((r) => ({ index: r.index, tenant: r.tenant, leaf: r.leaf }));
    },
    readCheckpoints: (after, limit) => audit.reader.checkpointsAfter(after, limit),
    logger: { info: () => {}, warn, error: warn },
  });
  audit.onEntries(() => dispatcher.notify());
  audit.onCheckpoint(() => dispatcher.notify());
  dispatcher.notify();
  return dispatcher;
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
  const rawControl = await openControlStore(controlStorePath(config.dataDir));
  let auditLog: AuditLog | undefined;
  const currentAudit = () => auditLog;
  // Domains write through `control` (notifying); the sequencer writes the log through rawControl.
  const control = notifying(rawControl, CONTROL_SOURCE, currentAudit);
  const tenantStores = createTenantStores<TenantDB>({
    dir: config.dataDir,
    migrations: tenantStoreMigrations,
  });
  // One wrapper per open store, not per call: the vault caches collection rows per store object, and
  // a new wrapper on every request made every record request read its collection row again.
  const notifyingStores = new WeakMap<object, Awaited<ReturnType<typeof tenantStores.open>>>();
  const openTenant = async (tenant: string) => {
    const store = await tenantStores.open(tenant);
    let wrapped = notifyingStores.get(store);
    if (wrapped === undefined) {
      wrapped = notifying(store, tenant, currentAudit);
      notifyingStores.set(store, wrapped);
    }
    return wrapped;
  };
  // A tenant's outbox is moved into the log before its store is wiped (nothing of it is lost).
  const auditedTenantStores = {
    create: async (tenant: string) => notifying(await tenantStores.create(tenant), tenant, currentAudit),
    open: openTenant,
    exists: (tenant: string) => tenantStores.exists(tenant),
    async destroy(tenant: string) {
      if (await tenantStores.exists(tenant)) await auditLog?.sequencer.drain(tenant);
      await tenantStores.destroy(tenant);
    },
  };
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
  const tenantService = createTenantService<ControlDB>({
    control,
    apiKeys: tenantApiKeys,
    onApiKeysRevoked: (tenant) => apiKeys.forgetTenant(tenant),
    tenantStores: auditedTenantStores,
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
  const grants = createGrantService({
    control,
    now: () => new Date(),
    config: {
      defaultDurationMs: config.access.defaultGrantMinutes * 60_000,
      maxDurationMs: config.access.maxGrantMinutes * 60_000,
    },
  });
  const reviews = createAccessReviewService({ control, now: () => new Date() });

  // Console identity. The factor key is keyd's (identity/factor-key.ts): wrapped in the control
  // store, unwrapped into memory at start or, while keyd is down, at first use; people and login
  // wait for it.
  const clock = () => new Date();
  const sessions = createSessionService({
    control,
    now: clock,
    config: {
      operator: {
        idleMs: config.console.sessions.operatorIdleMs,
        absoluteMs: config.console.sessions.operatorAbsoluteMs,
      },
      customer: {
        idleMs: config.console.sessions.customerIdleMs,
        absoluteMs: config.console.sessions.customerAbsoluteMs,
      },
    },
  });
  const webauthn = createWebAuthnService({
    rpId: config.console.rpId,
    rpName: 'Tresor',
    origins: config.console.origins,
    store: createSqliteWebAuthnStore(control),
    now: clock,
    personOf: (personId) => personAuditActor(control, personId),
  });
  const throttleConfig = config.console.login;
  const factorKeys = createFactorKeySource({ control, keyd });
  await factorKeys.get().catch(() => undefined); // keyd may still be starting: the first use retries
  const people = createPeopleService({
    control,
    now: clock,
    factorKey: () => factorKeys.get(),
    throttleConfig,
    // Removing a role or an account ends the person's grants in the same commit.
    onAccessRemoved: (personId, trx) =>
      grants.endGrantsOfIn(trx, personId, 'access-removed').then(() => undefined),
  });
  const login = createLoginService({
    control,
    now: clock,
    factorKey: () => factorKeys.get(),
    sessions,
    throttleConfig,
    webauthn,
  });

  const audit = createAuditLog({
    control: rawControl,
    async openSource(source) {
      const store = source === CONTROL_SOURCE ? rawControl : await tenantStores.open(source);
      return store as unknown as Store<WithAuditEvents>;
    },
    async listSources() {
      const live = [
        ...(await tenantService.listTenants({ state: 'active' })),
        ...(await tenantService.listTenants({ state: 'closing' })),
      ];
      const sources = [CONTROL_SOURCE];
      for (const t of live) if (await tenantStores.exists(t.id)) sources.push(t.id);
      return sources;
    },
    signingKey: async () => {
      const info = await keyd.call('publicKey', { purpose: 'audit-checkpoint' });
      return { name: info.name, publicKey: info.publicKey, verifierKey: info.verifierKey };
    },
    sign: async (message) => (await keyd.call('sign', { purpose: 'audit-checkpoint', message })).signature,
    origin: config.audit.origin,
    witness: createWitness(config.audit.witnessDir),
    checkpointIntervalMs: config.audit.checkpointIntervalMs,
    signBoundMs: config.audit.signBoundMs,
  });
  auditLog = audit;
  await audit.start();
  await recordConfigAtStart(control, config);
  const sinks = startSinks(config, audit, (obj, msg) => http.app.log.warn(obj, msg));

  const http = await createHttpServer({
    config,
    authenticate,
    sessions: {
      authenticate: (token, meta) => sessions.authenticate(token, meta),
      verifyCsrf: (principal, csrfToken, meta) => sessions.verifyCsrf(principal, csrfToken, meta),
    },
    // Access grants (src/access) plug in here as `grants`; until then no grant is live.
    audit: {
      async record(event, tenant) {
        const store = tenant !== null && event.actor.kind === 'api-key' ? await openTenant(tenant) : control;
        await (store as Store<ControlDB>).write((trx) => appendAuditEvent(trx, event));
      },
      available: () => audit.health().ok,
    },
    readiness: [
      { name: 'store', check: () => control.healthy() },
      { name: 'keyd', check: async () => (await keyd.call('health', {})).status === 'ok' },
      { name: 'audit', check: async () => audit.health().ok && (await control.healthy()) },
    ],
    grants: (personId, grantId) => grants.liveGrant(personId, grantId),
    routes: allRouteModules({
      vault: { vault },
      tenants: { tenants, apiKeys },
      audit: { audit },
      access: { grants, reviews },
      identity: { sessions, login, people, webauthn },
    }),
  });

  const diskWatch = createDiskWatch({
    dir: config.dataDir,
    warnBytes: config.audit.diskWarnBytes,
    reserveBytes: config.audit.diskReserveBytes,
    logger: http.app.log,
    async record(action, freeBytes) {
      await control.write((trx) =>
        appendAuditEvent(trx, {
          at: new Date().toISOString(),
          actor: { kind: 'system', id: 'disk-watch' },
          tenant: null,
          action,
          target: { freeBytes },
          outcome: 'success',
        }),
      );
    },
  });
  await diskWatch.start();
  audit.addCondition(diskWatch);

  // The audit log's condition is reported when it changes: operators learn why requests fail closed.
  let auditReasons = '';
  const auditWatch = setInterval(() => {
    const { reasons } = audit.health();
    const now = reasons.join('; ');
    if (now === auditReasons) return;
    if (reasons.length > 0)
      http.app.log.error({ reasons }, 'audit log cannot record: audited requests answer 503');
    else http.app.log.warn('audit log recovered: audited requests are served again');
    auditReasons = now;
  }, 500);
  auditWatch.unref();

  await tenants.resume().catch(() => undefined); // keyd may still be starting; the job timer retries

  // keyd's operations into the audit log, every few seconds (system actor `keyd`).
  const keydOps = createKeydOpsMirror({
    control: rawControl,
    opsLog: async (from, limit) => (await keyd.call('opsLog', { from, limit })).entries,
  });
  let mirroring: Promise<unknown> | undefined;
  const mirrorKeydOps = () => {
    mirroring ??= keydOps
      .runOnce()
      .then(() => audit.sequencer.notify(CONTROL_SOURCE))
      .catch(() => undefined)
      .finally(() => {
        mirroring = undefined;
      });
    return mirroring;
  };
  const keydOpsTimer = setInterval(() => void mirrorKeydOps(), options.keydOpsIntervalMs ?? 2_000);
  keydOpsTimer.unref();

  async function runJobs(): Promise<void> {
    await tenants.resume().catch(() => undefined);
    await tenants.autoClose().catch(() => undefined);
    await grants.expireDue().catch(() => undefined);
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
    people,
    sessions,
    vault,
    keyd,
    keyCache,
    audit,
    grants,
    runJobs,
    async reloadCertificates() {
      let outcome: AuditEvent['outcome'] = 'success';
      try {
        http.reloadCertificates();
      } catch (error) {
        outcome = 'failure';
        throw error;
      } finally {
        await control.write((trx) =>
          appendAuditEvent(trx, {
            at: new Date().toISOString(),
            actor: { kind: 'system', id: 'server' },
            tenant: null,
            action: 'tls.reload',
            outcome,
          }),
        );
      }
    },
    async close() {
      if (timer) clearInterval(timer);
      clearInterval(auditWatch);
      clearInterval(keydOpsTimer);
      await mirroring;
      await diskWatch.close();
      await http.close();
      await apiKeys.flush().catch(() => undefined);
      await operators.flush().catch(() => undefined);
      await audit.close();
      await sinks?.flush().catch(() => undefined);
      await sinks?.close();
      await tenantStores.close();
      await control.close();
      keyCache.close();
      await keyd.close();
    },
  };
}
