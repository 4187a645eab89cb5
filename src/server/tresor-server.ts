/**
 * The composition root: builds every piece of a Tresor API node from its config and starts it.
 * Only this file knows all of them; each domain gets just what it needs. It wires and holds no
 * rule of its own: every rule lives in the domain it belongs to (docs/architecture.md).
 *
 *   keyd client ─┬─ DataKeyring (bounded key cache) ─ vault (collections, records, export)
 *                └─ tenant service (tenant keys, deletion certificates)
 *   control store (tenants, API keys, operator tokens, audit events)   tenant stores (one file each)
 *   — both on the backend the config names (backend.ts: SQLite files, or a PostgreSQL database)
 *   authenticator ─ HTTP pipeline ─ routes
 *
 *   identity: sessions, login, people (TOTP secrets sealed by the factor key, which keyd wraps:
 *   identity/factor-key.ts), WebAuthn — console sessions in the pipeline, the identity routes
 *
 *   alerts: the watch runs the detectors over the audit log as it grows (after entries are durable,
 *   never on the request path), stores the alerts, and delivers opened ones by webhook and mail
 *
 * Where an audit event goes (a tenant's store or the control store) is the audit recorder's rule
 * (audit/recorder.ts); background jobs run through the job runner (server/jobs.ts).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Transaction } from 'kysely';
import { createGrantService, type GrantService } from '../access/grants.ts';
import { createAccessReviewService } from '../access/review.ts';
import {
  type AlertChannel,
  type AlertDelivery,
  type AlertService,
  type AlertWatch,
  auditHealthCheck,
  backupOverdueCheck,
  builtInDetectors,
  certificateCheck,
  createAlertDelivery,
  createAlertService,
  createAlertWatch,
  createMailChannel,
  createWebhookChannel,
  keydCheck,
  type StateCheck,
  type StateChecks,
  startStateChecks,
} from '../alerts/index.ts';
import { readArchivedEnd } from '../audit/archived-end.ts';
import { createArchivedLog } from '../audit/archived-log.ts';
import type { AuditArchive } from '../audit/archived-segments.ts';
import { type AuditArchiver, createAuditArchiver } from '../audit/archiver.ts';
import { type AuditLog, createAuditLog } from '../audit/audit-log.ts';
import { createDiskWatch } from '../audit/disk-space.ts';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from '../audit/event.ts';
import { createKeydOpsMirror } from '../audit/keyd-ops.ts';
import { fixAuditOrigin, generatedAuditOrigin } from '../audit/log-identity.ts';
import { pruneArchived } from '../audit/log-prune.ts';
import { auditedTenantStores, notifyingStore } from '../audit/notifying-store.ts';
import { createPgPendingSources, createSqlitePendingSources } from '../audit/pending-sources.ts';
import { createReadOutbox } from '../audit/read-outbox.ts';
import { createAuditRecorder } from '../audit/recorder.ts';
import { CONTROL_SOURCE } from '../audit/sequencer.ts';
import { storedSinkCursors } from '../audit/sinks/cursors.ts';
import { startSinks } from '../audit/sinks/start.ts';
import { systemEvent } from '../audit/system-event.ts';
import { createWitness } from '../audit/witness.ts';
import {
  applyRetention,
  BackupError,
  backupHorizon,
  configuredDestinations,
  createBackupRecords,
  createBackupRuns,
  createLiveFilesLock,
  createLocalRunLock,
  createPgRunLock,
  createPgSnapshotter,
  createSqliteSnapshotter,
  createTenantRestoreRuns,
  lockedSnapshotter,
} from '../backup/index.ts';
import type { ServerConfig } from '../config/server-config.ts';
import { TresorError } from '../errors.ts';
import { allRouteModules } from '../http/routes/index.ts';
import { createHttpServer, type HttpServer } from '../http/server.ts';
import { certificateFiles } from '../http/tls.ts';
import { personAuditActor } from '../identity/accounts.ts';
import { createApiKeyService, tenantApiKeys } from '../identity/api-keys.ts';
import { createAuthenticator } from '../identity/authenticate.ts';
import { createFactorKeySource } from '../identity/factor-key.ts';
import { createLoginService } from '../identity/login.ts';
import { createOperatorTokenAuthenticator } from '../identity/operator-token-auth.ts';
import { createOperatorTokenService, type OperatorTokenService } from '../identity/operator-tokens.ts';
import { createPeopleService, type PeopleService } from '../identity/people.ts';
import { createSessionService, type SessionService } from '../identity/sessions.ts';
import { createWebAuthnService } from '../identity/webauthn.ts';
import { createSqliteWebAuthnStore } from '../identity/webauthn-store.ts';
import { createKeydClient, type KeydClient } from '../keyd/client.ts';
import { createKeyCache, type KeyCache } from '../keyd/key-cache.ts';
import { createTresorMetrics, type MetricsListener, startMetricsListener } from '../monitor/index.ts';
import { tenantSchema } from '../store/pg/tenant-stores.ts';
import type { TenantStores } from '../store/sqlite/tenant-stores.ts';
import type { Store } from '../store/types.ts';
import { watchClosedTenantKeys } from '../vault/closed-tenant-keys.ts';
import { createVault, type Vault } from '../vault/collections.ts';
import { createTenantDataKeyStore } from '../vault/data-key-store.ts';
import { createDataKeyring } from '../vault/data-keys.ts';
import { createRetentionDue } from '../vault/retention-due.ts';
import type { TenantDB } from '../vault/tenant-store-schema.ts';
import { createTenantService, type TenantService } from '../vault/tenants.ts';
import { runLiveAuditVerification } from './audit-verify-job.ts';
import { type CacheNotice, openDataBackend } from './backend.ts';
import { runBackupTrial } from './backup-trial.ts';
import { recordConfigAtStart } from './config-audit.ts';
import { CONTROL_SCHEMA, type ControlDB } from './control-store.ts';
import { createJobRunner, failOnItems, type JobStatus, loggableError } from './jobs.ts';
import { keydTargets } from './keyd-targets.ts';
import { startProbeJob } from './probe-job.ts';
import { watchServerParts } from './server-metrics.ts';
import { trustStatements } from './trust-statement.ts';

/** Period of the backup retention job (it also runs after every backup); deletion certificates add it. */
const BACKUP_RETENTION_PERIOD_MS = 3_600_000;
/** Backups re-verified per scheduled run (each is a trial restore): a bounded load per run. */
const REVERIFY_PER_RUN = 4;
/**
 * PostgreSQL: how often a node reads the archived cursor again, since another node may have pruned.
 * Until it does, a read of the range just pruned finds no rows there (it fails; nothing wrong is served).
 */
const ARCHIVED_CURSOR_REFRESH_MS = 2_000;

export interface TresorServerOptions {
  /** Key cache bounds (keys stay in memory at most this long / this many uses). */
  keyCache?: { maxEntries: number; ttlMs: number; maxUses: number };
  /** Period of copying keyd's operations into the audit log (default 2 s). */
  keydOpsIntervalMs?: number;
  /** Period of the contract-end and retention jobs; 0 turns them off (tests). */
  jobIntervalMs?: number;
  /**
   * When the first scheduled backup is due if none was ever taken (`tresor dev`: soon, to show it
   * working); default one interval after start. Once backups exist, the schedule goes on from the
   * newest one's start, across restarts.
   */
  firstBackupAfterMs?: number;
  /** Grace between a tenant's close and its key's destruction, in seconds (tests); default closeGraceDays. */
  keyDestroyGraceSeconds?: number;
  /** SQLite: tenant stores kept open at most (tests); default derived from the file limit (handle-budget.ts). */
  maxOpenTenantStores?: number;
  /** Period of the audit.archive job in ms (tests); default audit.archiveIntervalMinutes. */
  archiveIntervalMs?: number;
}

export interface TresorServer {
  url: string;
  /** The plain-HTTP metrics listener's `http://host:port`, when `metrics.port` is set. */
  metricsUrl?: string;
  http: HttpServer;
  control: Store<ControlDB>;
  tenantStores: TenantStores<TenantDB>;
  tenants: TenantService;
  /** Scoped operator tokens (`tresor dev` mints its short-lived one through it). */
  operatorTokens: OperatorTokenService;
  /** Console accounts (the bootstrap console admin is made through it). */
  people: PeopleService;
  sessions: SessionService;
  vault: Vault;
  keyd: KeydClient;
  keyCache: KeyCache;
  audit: AuditLog;
  grants: GrantService;
  /** Stored alerts, the watch that raises them and their deliveries (src/alerts). */
  alerts: { service: AlertService; watch: AlertWatch; delivery: AlertDelivery; states: StateChecks };
  /** Reads the TLS certificate files again (SIGHUP) and records it in the audit log (`tls.reload`). */
  reloadCertificates(): Promise<void>;
  /** One pass of the system jobs: contract-end closing, closes whose grace ended, retention. */
  runJobs(): Promise<void>;
  /** The background jobs' runs and failures, by job name (for operators). */
  jobs: { status(): Record<string, JobStatus> };
  close(): Promise<void>;
}

export async function startTresorServer(
  config: ServerConfig,
  options: TresorServerOptions = {},
): Promise<TresorServer> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const clock = () => new Date();
  // Made first: a destination that cannot be made (an unreadable credential file) stops the start.
  const backupDestinations = configuredDestinations(config.backup.destinations);
  // Made first: the keyd client and the HTTP layer report to it (monitor/metrics.ts).
  const metrics = createTresorMetrics();
  const unobservedKeyd = createKeydClient({ connect: keydTargets(config), clientName: 'tresor-server' });
  const keyd = metrics.keyd.observe(unobservedKeyd);
  const backend = await openDataBackend({
    ...config,
    ...(options.maxOpenTenantStores === undefined
      ? {}
      : { maxOpenTenantStores: options.maxOpenTenantStores }),
  }).catch(async (error: unknown) => {
    await keyd.close();
    throw error;
  });
  const rawControl = backend.control;
  let auditLog: AuditLog | undefined;
  const currentSequencer = () => auditLog?.sequencer;
  // Domains write through `control` (notifying); the sequencer writes the log through rawControl.
  const control = notifyingStore(rawControl, CONTROL_SOURCE, currentSequencer);
  const tenantStores = backend.tenantStores;
  // Which tenants' outboxes may hold unmoved events: the sequencer's start opens only those.
  const pending =
    backend.kind === 'postgres'
      ? createPgPendingSources({ control: rawControl, controlSchema: CONTROL_SCHEMA, tenantSchema })
      : createSqlitePendingSources(rawControl);
  const auditedStores = auditedTenantStores(tenantStores, currentSequencer, pending);
  const openTenant = (tenant: string) => auditedStores.open(tenant);
  const keyCache = createKeyCache(
    options.keyCache ?? {
      maxEntries: config.keyCache.maxEntries,
      ttlMs: config.keyCache.ttlSeconds * 1000,
      maxUses: 1_000_000,
    },
  );
  const dataKeys = createDataKeyring({
    keys: keyd,
    store: createTenantDataKeyStore(openTenant),
    cache: keyCache,
  });
  // When each tenant's retention is next due: the retention job opens only those tenants' stores.
  const retentionDue = createRetentionDue(rawControl);
  const vault = createVault({
    stores: openTenant,
    keys: dataKeys,
    // Reads' events: the control store's outbox, one group commit for every tenant's reads.
    readOutbox: createReadOutbox(control),
    retentionDue: (tenant) => retentionDue.markDue(tenant, 0),
  });
  // Several server processes on one database: each tells the others what to drop from their caches
  // (backend.ts CacheNotice); a lost notice costs at most principalCacheMs for API keys.
  const announce = (notice: CacheNotice) => {
    void backend.announce?.(notice).catch(() => undefined);
  };
  const apiKeys = createApiKeyService({
    control,
    principalCacheMs: config.principalCacheMs,
    onRevoked: (_tenant, keyId) => announce({ kind: 'api-key', id: keyId }),
  });
  const tenants = createTenantService<ControlDB>({
    control,
    apiKeys: tenantApiKeys,
    onApiKeysRevoked: (tenant) => {
      apiKeys.forgetTenant(tenant);
      announce({ kind: 'tenant', id: tenant });
    },
    forgetKeys: (tenant) => {
      dataKeys.forgetTenant(tenant);
      announce({ kind: 'tenant', id: tenant });
    },
    tenantStores: auditedStores,
    keys: keyd,
    exporter: (tenant, target) =>
      vault.exportTenant(tenant, target, systemEvent({ id: 'tenant-close', action: 'system.job' }, clock())),
    config: {
      closeGraceDays: config.closeGraceDays,
      backupRetentionDays: Math.max(...config.backup.destinations.map((d) => d.retention.keepDailyDays)),
      // The last backup holding the tenant's data is one taken before the close: gone by then.
      backupsAgedOutBy: (closedAt) =>
        backupHorizon(new Date(closedAt), backupDestinations, BACKUP_RETENTION_PERIOD_MS)
          .toISOString()
          .slice(0, 10),
    },
    ...(options.keyDestroyGraceSeconds === undefined
      ? {}
      : { keyDestroyGraceSeconds: options.keyDestroyGraceSeconds }),
  });
  const operatorTokenAuth = createOperatorTokenAuthenticator({ control, clock });
  const operatorTokens = createOperatorTokenService({ control, now: clock });
  const authenticate = createAuthenticator({ control, apiKeys, operatorTokens: operatorTokenAuth });
  const grants = createGrantService({
    control,
    now: clock,
    config: {
      defaultDurationMs: config.access.defaultGrantMinutes * 60_000,
      maxDurationMs: config.access.maxGrantMinutes * 60_000,
    },
  });
  // The access review reads the archived part of the audit log back from the segments (auditArchive below).
  const reviews = createAccessReviewService({
    control,
    now: clock,
    archive: () => auditArchive(auditOrigin),
  });

  // Console identity. The factor key is keyd's (identity/factor-key.ts): wrapped in the control
  // store, unwrapped into memory at start or, while keyd is down, at first use; people and login
  // wait for it.
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

  /** Where the archived part of the audit log is read back from: the segments on the backup destinations. */
  async function auditArchive(origin: string): Promise<AuditArchive> {
    const key = await keyd.call('publicKey', { purpose: 'backup-manifest' });
    return {
      destinations: backupDestinations.map((d) => d.destination),
      keys: keyd,
      key: { name: key.name, publicKey: key.publicKey },
      origin,
    };
  }

  // The log's origin is fixed at the first start and refused if the config later names another.
  const auditOrigin = await fixAuditOrigin(rawControl, {
    ...(config.audit.origin === undefined ? {} : { configured: config.audit.origin }),
    generate: () => generatedAuditOrigin(config.publicUrl ? new URL(config.publicUrl).hostname : undefined),
    now: clock,
  }).catch(async (error: unknown) => {
    await tenantStores.close();
    await rawControl.close();
    await keyd.close();
    throw error;
  });
  const witness = createWitness(config.audit.witnessDir);
  // The lease's problems (PostgreSQL: the lock connection lost) reach the log once it exists.
  let leaseProblem: (reason: string) => void = () => undefined;
  const sequencerBackend = {
    ...backend.sequencer((reason) => leaseProblem(reason)),
    sweepMs: config.clusterSweepMs,
  };
  /** Whether this process runs the cluster's scheduled jobs and detectors now (the lease holder). */
  const leadsJobs = () => sequencerBackend.lease?.held() ?? true;
  // The archived cursor (audit/archived-cursor.ts, read by audit/archived-end.ts): below it the live store has dropped its rows and
  // the reader takes them from the sealed segments. Raised here after this process prunes; on
  // PostgreSQL another node may prune, so it is read again every ARCHIVED_CURSOR_REFRESH_MS.
  let archivedCursor = await readArchivedEnd(rawControl.db);
  const raiseArchivedCursor = (end: number) => {
    archivedCursor = Math.max(archivedCursor, end);
  };
  const archivedCursorTimer =
    config.database.kind === 'postgres'
      ? setInterval(() => {
          readArchivedEnd(rawControl.db).then(raiseArchivedCursor, () => undefined);
        }, ARCHIVED_CURSOR_REFRESH_MS)
      : undefined;
  archivedCursorTimer?.unref();
  const audit = createAuditLog({
    control: rawControl,
    shared: sequencerBackend,
    async openSource(source) {
      const store = source === CONTROL_SOURCE ? rawControl : await tenantStores.open(source);
      return store as unknown as Store<WithAuditEvents>;
    },
    // The marked tenants only (pending-sources.ts): a start opens no store of a tenant without work.
    listSources: async () => [CONTROL_SOURCE, ...(await pending.list())],
    pending,
    signingKey: async () => {
      const info = await keyd.call('publicKey', { purpose: 'audit-checkpoint' });
      return { name: info.name, publicKey: info.publicKey, verifierKey: info.verifierKey };
    },
    keyd: {
      tree: () => keyd.call('checkpointTree', {}),
      sign: async (request) => (await keyd.call('signCheckpoint', request)).signature,
    },
    origin: auditOrigin,
    witness,
    checkpointIntervalMs: config.audit.checkpointIntervalMs,
    signBoundMs: config.audit.signBoundMs,
    // Below the archived cursor the log is read from the sealed segments (audit/archived-log.ts).
    archive: {
      log: createArchivedLog({
        destinations: () => backupDestinations.map((d) => d.destination),
        keys: keyd,
        origin: auditOrigin,
        key: async () => {
          const info = await keyd.call('publicKey', { purpose: 'backup-manifest' });
          return { name: info.name, publicKey: info.publicKey };
        },
      }),
      end: () => archivedCursor,
    },
  });
  auditLog = audit;
  await audit.start();
  await recordConfigAtStart(control, config);
  // The sinks' cursors are in the control store (the cluster's, on PostgreSQL), adopting the cursor
  // files of the data folder where they were kept before; the lease holder alone delivers.
  const sinkLease = sequencerBackend.lease;
  const sinks = startSinks({
    sinksFile: config.audit.sinksFile,
    stateDir: join(config.dataDir, 'audit-sinks'),
    cursors: storedSinkCursors(rawControl, { legacyDir: join(config.dataDir, 'audit-sinks'), now: clock }),
    ...(sinkLease
      ? {
          lease: {
            held: () => sinkLease.held(),
            onChange: (listener: (held: boolean) => void) => sinkLease.onChange(listener),
            confirm: () =>
              rawControl.db.transaction().execute(async (trx) => {
                try {
                  await sinkLease.fence(trx as unknown as Transaction<unknown>);
                  return true;
                } catch (error) {
                  if (error instanceof TresorError && error.code === 'TRESOR_ERR_UNAVAILABLE') return false;
                  throw error;
                }
              }),
          },
        }
      : {}),
    audit,
    warn: (obj, msg) => http.app.log.warn(obj, msg),
  });
  const recorder = createAuditRecorder({ control });

  // Alerts (src/alerts): channels first, so a webhook or mail setting that cannot work stops the start.
  const alertService = createAlertService({ control, now: clock });
  const alertChannels: AlertChannel[] = [];
  const { webhook: webhookConfig, mail: mailConfig } = config.alerts;
  if (webhookConfig)
    alertChannels.push(
      createWebhookChannel({
        url: webhookConfig.url,
        secret: Buffer.from(webhookConfig.secret, 'utf8'),
        ...(webhookConfig.ca ? { ca: readFileSync(webhookConfig.ca) } : {}),
      }),
    );
  if (mailConfig)
    alertChannels.push(
      createMailChannel({ ...mailConfig, ...(mailConfig.ca ? { ca: readFileSync(mailConfig.ca) } : {}) }),
    );
  const alertWarn = (obj: object, msg: string) => http.app.log.warn(obj, msg);
  // The watch, the deliveries and the state checks write no audit event: the raw store, so their
  // commits do not wake the sequencer for nothing.
  const alertDelivery = createAlertDelivery({
    control: rawControl,
    channels: alertChannels,
    alerts: alertService,
    retry: { attempts: config.alerts.retryAttempts, baseMs: config.alerts.retryBaseMs },
    now: clock,
    warn: alertWarn,
  });
  const alertWatch = createAlertWatch({
    control: rawControl,
    readEntries: (from, limit) =>
      audit.reader.entries({ from, limit, below: audit.sequencer.treeHead().size }),
    treeSize: () => audit.sequencer.treeHead().size,
    detectors: builtInDetectors({
      windowMs: config.alerts.windowMinutes * 60_000,
      bruteForceAccountFailures: config.alerts.bruteForceAccountFailures,
      bruteForceAddressFailures: config.alerts.bruteForceAddressFailures,
      noGrantRefusals: config.alerts.noGrantRefusals,
      staffRecordReads: config.alerts.staffRecordReads,
      staffTenants: config.alerts.staffTenants,
      exports: config.alerts.exports,
    }),
    alerts: alertService,
    enqueueIn: (trx, id) => alertDelivery.enqueueIn(trx, id),
    opened: () => alertDelivery.kick(),
    warn: alertWarn,
    leads: leadsJobs,
  });

  // Backups (src/backup): taken one at a time, recorded in the control store, retried, verified.
  const backupRecords = createBackupRecords(control);
  // A snapshot reads the live files directly and a tenant restore renames one: never both at once.
  const liveFiles = createLiveFilesLock();
  const backups = createBackupRuns({
    records: backupRecords,
    keys: keyd,
    // SQLite copies each file; PostgreSQL copies every schema from one snapshot of the database.
    snapshotter: lockedSnapshotter(
      config.database.kind === 'postgres'
        ? createPgSnapshotter({ url: config.database.url, controlSchema: CONTROL_SCHEMA })
        : createSqliteSnapshotter({ dataDir: config.dataDir }),
      liveFiles,
    ),
    source: {
      async tenants() {
        const all = await tenants.listTenants();
        return Promise.all(
          all.map(async (t) => ({ id: t.id, state: t.state, store: await tenantStores.exists(t.id) })),
        );
      },
      async auditCheckpoint() {
        await audit.checkpointer.checkpoint();
        const latest = await audit.reader.latestCheckpoint();
        if (!latest) throw new BackupError('TRESOR_ERR_BACKUP_FAILED', 'no audit checkpoint signed yet');
        return latest.note;
      },
    },
    destinations: backupDestinations,
    scratchDir: config.backup.scratchDir,
    manifestKey: async () => {
      const key = await keyd.call('publicKey', { purpose: 'backup-manifest' });
      return { name: key.name, publicKey: key.publicKey };
    },
    retry: { attempts: config.backup.retryAttempts, baseMs: config.backup.retryBaseMs },
    trial: async (destination, backupId, signal) => {
      const trial = await runBackupTrial({
        destination,
        backupId,
        keys: keyd,
        scratchDir: config.backup.scratchDir,
        ...(config.database.kind === 'postgres' ? { database: { url: config.database.url } } : {}),
        now: clock,
        signal,
      });
      if (trial.ok) return { ok: true, code: null };
      // The failed check's own error code when it has one (a tampered chunk: BACKUP_INVALID).
      const failed = trial.checks.find((c) => c.status === 'failed');
      const code = /^(TRESOR_ERR_[A-Z_]+):/.exec(failed?.detail ?? '')?.[1];
      return { ok: false, code: code ?? 'TRESOR_ERR_BACKUP_INVALID' };
    },
    clock,
    // Several nodes on PostgreSQL: a run's maker holds its advisory lock, so recovery (at start and
    // on the lease holder's ticks) leaves a live node's run alone (backup/run-lock.ts).
    runLock:
      config.database.kind === 'postgres'
        ? createPgRunLock({ url: config.database.url })
        : createLocalRunLock(),
  });

  // Restoring one tenant into the running system (src/backup/tenant-restore.ts); a restore a stopped
  // server left half-way has changed nothing but a scratch store beside the live one (a file on
  // SQLite, a schema no session holds on PostgreSQL): removed here.
  await tenantStores.removeScratch();
  const tenantRestores = createTenantRestoreRuns({
    keys: keyd,
    manifestKey: async () => {
      const key = await keyd.call('publicKey', { purpose: 'backup-manifest' });
      return { name: key.name, publicKey: key.publicKey };
    },
    destinations: backupDestinations,
    tenantState: async (tenant) => {
      const row = await control.db
        .selectFrom('tenants')
        .select('state')
        .where('id', '=', tenant)
        .executeTakeFirst();
      return row?.state;
    },
    liveLog: {
      origin: auditOrigin,
      verifierKey: () => audit.verifierKey(),
      size: () => audit.sequencer.treeHead().size,
      rootAt: (size) => audit.reader.rootAt(size),
    },
    stores: {
      scratchPath: (tenant) => tenantStores.scratchPath(tenant),
      // The restored file brings its own outbox: marked pending before it is swapped in.
      replace: (tenant, scratch, beforeSwap) =>
        liveFiles.hold(async () => {
          await pending.mark(tenant);
          // Its records may expire earlier than the live file's: due now, before and after.
          await retentionDue.markDue(tenant, 0);
          await tenantStores.replace(tenant, scratch, beforeSwap);
          await retentionDue.markDue(tenant, 0);
        }),
    },
    ...(config.database.kind === 'postgres'
      ? { pg: { url: config.database.url, scratchDir: config.backup.scratchDir } }
      : {}),
    forget: (tenant) => {
      dataKeys.forgetTenant(tenant);
      // Other processes on the database drop their handle of the old schema (its collection cache)
      // and the tenant's keys; a lost notice costs at most the collection cache's TTL there.
      announce({ kind: 'tenant-store', id: tenant });
    },
    notify: (tenant) => audit.sequencer.notify(tenant),
    record: (event) => control.write((trx) => appendAuditEvent(trx, event)),
    clock,
  });

  const http = await createHttpServer({
    config,
    requests: metrics.requests,
    authenticate,
    sessions: {
      authenticate: (token, meta) => sessions.authenticate(token, meta),
      verifyCsrf: (principal, csrfToken, meta) => sessions.verifyCsrf(principal, csrfToken, meta),
    },
    // Access grants (src/access) plug in here as `grants`; until then no grant is live.
    audit: {
      record: (event, tenant) => recorder.record(event, tenant),
      available: () => audit.health().ok,
    },
    readiness: [
      { name: 'store', check: () => control.healthy() },
      { name: 'keyd', check: async () => (await keyd.call('health', {})).status === 'ok' },
      { name: 'audit', check: async () => audit.health().ok && (await control.healthy()) },
    ],
    grants: (personId, grantId) => grants.liveGrant(personId, grantId),
    refusedGrants: (personId, grantId) => grants.refusedGrant(personId, grantId),
    routes: allRouteModules({
      vault: { vault },
      tenants: { tenants, apiKeys },
      audit: { audit },
      keys: {
        audit,
        keydKey: async (purpose) => {
          const key = await keyd.call('publicKey', { purpose });
          return { name: key.name, publicKey: key.publicKey };
        },
      },
      access: { grants, reviews },
      identity: { sessions, login, people, webauthn },
      // The runner is made below, once the HTTP server's logger exists; no request comes before.
      jobs: { status: () => jobs.status() },
      operatorTokens: { operatorTokens },
      // Made below with the job runner, like `jobs`; no request comes before.
      availability: { view: () => probeJob.availability() },
      trust: { signed: () => trust.signed() },
      backups: {
        start: async (event) => {
          const started = await backups.start('request', event);
          void jobs.run('backup.run', () => backupFinished(started.done));
          return { id: started.id };
        },
        list: (limit) => backupRecords.list(limit),
        get: (id) => backupRecords.get(id),
        verifying: () => backups.verifying(),
        verify: (id, event) => backups.requestVerify(id, event),
      },
      tenantRestores: {
        start: async (request, actor, announce) => {
          const started = await tenantRestores.start(request, actor, announce);
          void jobs.run('tenant.restore', () => started.done);
          return started.view;
        },
        get: (id) => tenantRestores.get(id),
      },
      metrics: { scrape: () => metrics.scrape() },
      alerts: alertService,
    }),
  });
  if (backend.handleBudget)
    http.app.log.info(
      {
        maxOpenTenantStores: backend.handleBudget.maxOpen,
        fileLimit: backend.handleBudget.fileLimit ?? null,
      },
      'tenant store handle budget (stores kept open at most, from the file limit)',
    );

  // The watch starts once the logger exists; it goes on from its cursor (or the log's end, at first).
  await alertWatch.start();
  // The detectors judge each entry once across the cluster: in the lease holder only (alert-watch.ts).
  audit.onEntries(() => alertWatch.notify());
  alertDelivery.kick();

  const stateChecks: StateCheck[] = [
    keydCheck(() => keyd.call('health', {})),
    auditHealthCheck(() => audit.health()),
    certificateCheck({
      certificatePem: () =>
        readFileSync(
          config.tls.kind === 'files' ? config.tls.certFile : join(config.tls.dir, 'server.pem'),
          'utf8',
        ),
      withinMs: config.alerts.certificateExpiringDays * 86_400_000,
    }),
  ];
  if (config.backup.intervalMinutes > 0)
    stateChecks.push(
      backupOverdueCheck({
        lastDone: async () => {
          const done = (await backupRecords.list(100)).find((b) => b.outcome === 'done');
          return done?.endedAt ?? done?.startedAt;
        },
        overdueMs: config.alerts.backupOverdueMinutes * 60_000,
        since: clock(),
      }),
    );
  const alertStates = startStateChecks({
    control: rawControl,
    checks: stateChecks,
    alerts: alertService,
    enqueueIn: (trx, id) => alertDelivery.enqueueIn(trx, id),
    opened: () => alertDelivery.kick(),
    intervalMs: config.alerts.checkIntervalSeconds * 1000,
    now: clock,
    warn: alertWarn,
  });

  const diskWatch = createDiskWatch({
    dir: config.dataDir,
    warnBytes: config.audit.diskWarnBytes,
    reserveBytes: config.audit.diskReserveBytes,
    logger: http.app.log,
    async record(action, freeBytes) {
      const event = systemEvent({ id: 'disk-watch', action, target: { freeBytes } }, clock());
      await control.write((trx) => appendAuditEvent(trx, event));
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

  // Scheduled jobs run once per cluster: in the process holding the sequencer's lease (jobs.ts).
  const jobs = createJobRunner({
    logger: http.app.log,
    clock,
    leads: leadsJobs,
  });
  leaseProblem = (reason) =>
    http.app.log.warn(
      { reason },
      'audit sequencer lease: the lock connection failed (another node may take over)',
    );
  // Several server processes on one database (PostgreSQL): the lease holder's sequencer moves other
  // processes' outbox commits at once, and every process's stream follows the holder's appends. The
  // sequencer's own sweeps (sweepMs) cover what a lost notification would have said.
  const followLog = () => void audit.sequencer.follow().catch(() => undefined);
  const clusterListener = backend.listen?.({
    outbox: (source) => audit.sequencer.notify(source),
    logAppended: followLog,
    connected: followLog,
    problem: (reason) =>
      http.app.log.warn({ reason }, 'cluster wake-ups: the listening connection failed (sweeps go on)'),
    invalidate(notice) {
      if (notice.kind === 'api-key') return apiKeys.forgetKey(notice.id);
      if (notice.kind === 'tenant-store') {
        // Another process restored the tenant: its schema was swapped under this one's handle.
        tenantStores.forgetHandle?.(notice.id);
        dataKeys.forgetTenant(notice.id);
        return;
      }
      apiKeys.forgetTenant(notice.id);
      dataKeys.forgetTenant(notice.id);
    },
  });
  // A lost cache notice must not leave a closed tenant's data keys here: each process checks the
  // states of the tenants it holds keys of every clusterSweepMs (closed-tenant-keys.ts).
  const closedTenantKeys =
    backend.kind === 'postgres'
      ? watchClosedTenantKeys({
          control: rawControl,
          keyring: dataKeys,
          intervalMs: config.clusterSweepMs,
          warn: (obj, msg) => http.app.log.warn(obj, msg),
        })
      : undefined;
  const stopAuditMetrics = watchServerParts(metrics, {
    audit,
    control: rawControl,
    tenantStores,
    keyd,
    keyCache,
    jobs: () => jobs.status(),
    backups: {
      destinations: config.backup.destinations.map((d) => d.name),
      intervalMinutes: config.backup.intervalMinutes,
      list: (limit) => backupRecords.list(limit),
    },
    certFile: (await certificateFiles(config.tls, config.dataDir)).certFile,
    ...(config.keyd.kind === 'tls' ? { keydCertFile: config.keyd.certFile } : {}),
    // The probe job is made further down; no scrape comes before the server listens.
    availability: () => probeJob.availability(),
    clock,
  });
  // keyd may still be starting: a failure here is a failed run of the job, which the timer retries.
  const resumeTenants = async () => failOnItems(await tenants.resume());
  await jobs.periodic('tenants.resume', resumeTenants);

  // keyd's operations into the audit log, every few seconds (system actor `keyd`). Each tick also
  // tells the sequencer to look at the control store's outbox, keyd up or not: other processes on
  // the data folder (tresor init, tresor access attest) write there and cannot notify it.
  const keydOps = createKeydOpsMirror({
    control: rawControl,
    opsLog: async (from, limit) => (await keyd.call('opsLog', { from, limit })).entries,
  });
  let mirroring: Promise<unknown> | undefined;
  const mirrorKeydOps = () => {
    mirroring ??= jobs
      .periodic('audit.keyd-ops', () => keydOps.runOnce())
      .finally(() => {
        audit.sequencer.notify(CONTROL_SOURCE);
        mirroring = undefined;
      });
    return mirroring;
  };
  const keydOpsTimer = setInterval(() => void mirrorKeydOps(), options.keydOpsIntervalMs ?? 2_000);
  keydOpsTimer.unref();

  // A backup run counts as done only when every destination holds it and read it back; retention
  // follows each run. A backup still running when the next is due is not started twice.
  // One retention pass at a time (after a backup and on the hour), so no deletion is audited twice.
  let retaining: Promise<boolean | undefined> | undefined;
  const runBackupRetention = () => {
    retaining ??= jobs
      .periodic('backup.retention', async () =>
        failOnItems(
          await applyRetention({ records: backupRecords, destinations: backupDestinations, clock }),
        ),
      )
      .finally(() => {
        retaining = undefined;
      });
    return retaining;
  };
  async function backupFinished(done: Promise<{ outcome: string; errorCode: string | null } | undefined>) {
    const view = await done;
    if (!closing) await runBackupRetention();
    if (view?.outcome !== 'done')
      failOnItems({ failed: [{ code: view?.errorCode ?? 'TRESOR_ERR_BACKUP_FAILED' }] });
  }
  let closing = false;
  await jobs.run('backup.recover', () => backups.recoverInterrupted());
  // PostgreSQL, several nodes: a run whose node died (kill -9) is recovered by the lease holder
  // without any restart — before each scheduled backup and with the other periodic jobs. Only runs
  // whose maker's advisory lock is free are touched (a live node's run keeps its lock).
  let recovering: Promise<unknown> | undefined;
  const recoverDeadRuns = async (): Promise<void> => {
    if (config.database.kind !== 'postgres' || closing || recovering) return;
    recovering = jobs.periodic('backup.recover', () => backups.recoverInterrupted());
    try {
      await recovering;
    } finally {
      recovering = undefined;
    }
  };
  const scheduledBackup = () => {
    if (backups.running()) return;
    void (async () => {
      await recoverDeadRuns();
      // Settling a recovered run's complete copies counts as running: this tick's backup is skipped.
      if (backups.running() || closing) return;
      await jobs.periodic('backup.run', async () => backupFinished((await backups.start('schedule')).done));
    })();
  };
  const backupEveryMs = Math.round(config.backup.intervalMinutes * 60_000);
  let backupTimer: NodeJS.Timeout | undefined;
  if (backupEveryMs > 0) {
    // Due one interval after the newest backup (a server restarted more often than the interval
    // still takes them), at the earliest a few seconds after start (keyd may still be starting).
    const last = await backupRecords.lastStart();
    const firstInMs =
      last === undefined
        ? (options.firstBackupAfterMs ?? backupEveryMs)
        : Math.max(Math.min(backupEveryMs, 10_000), Date.parse(last) + backupEveryMs - clock().getTime());
    backupTimer = setTimeout(() => {
      scheduledBackup();
      backupTimer = setInterval(scheduledBackup, backupEveryMs);
      backupTimer.unref();
    }, firstInMs);
    backupTimer.unref();
  }
  const retentionTimer = setInterval(() => void runBackupRetention(), BACKUP_RETENTION_PERIOD_MS);
  retentionTimer.unref();
  // The live audit log re-verified on a schedule; one run at a time (audit-verify-job.ts).
  let auditVerifying: Promise<boolean | undefined> | undefined;
  const auditVerifyEveryMs = Math.round(config.audit.verifyIntervalMinutes * 60_000);
  const auditVerifyTimer =
    auditVerifyEveryMs > 0
      ? setInterval(() => {
          auditVerifying ??= jobs
            .periodic('audit.verify', () =>
              runLiveAuditVerification({
                openLog: () => backend.openLog(),
                origin: () => auditOrigin,
                keyd,
                witnessLatest: () => witness.latest(),
                archivedEnd: () => readArchivedEnd(rawControl.db),
                archive: auditArchive,
                control,
                clock,
              }),
            )
            .finally(() => {
              auditVerifying = undefined;
            });
        }, auditVerifyEveryMs)
      : undefined;
  auditVerifyTimer?.unref();
  // Older full tiles of the audit log sealed into segments on every backup destination (audit/archiver.ts).
  const archiveKeep = config.audit.archiveKeepEntries;
  const archiver =
    archiveKeep === undefined || backupDestinations.length === 0
      ? undefined
      : createAuditArchiver({
          reader: audit.reader,
          tiles: audit.tiles,
          treeSize: () => audit.sequencer.treeHead().size,
          origin: auditOrigin,
          keys: keyd,
          destinations: () => backupDestinations.map((d) => d.destination),
          keepRecentEntries: archiveKeep,
          segmentTiles: config.audit.archiveSegmentTiles,
        });
  // After each pass, the live log drops what segments on every destination hold (audit/log-prune.ts).
  const archivePass = async (using: AuditArchiver) => {
    await using.run();
    if (!config.audit.archivePrune) return;
    const pass = await pruneArchived({
      // The notifying store: the audit.pruned event is moved into the log at once.
      control,
      archivedEnd: () => using.archivedEnd(),
      destinations: () => backupDestinations.map((d) => d.destination),
      keys: keyd,
      origin: auditOrigin,
      reader: audit.reader,
      treeSize: () => audit.sequencer.treeHead().size,
      keepRecentEntries: archiveKeep ?? 0,
      now: clock,
      willPrune: raiseArchivedCursor,
    });
    raiseArchivedCursor(pass.to);
  };
  let archiving: Promise<boolean | undefined> | undefined;
  const archiveTimer = archiver
    ? setInterval(
        () => {
          archiving ??= jobs
            .periodic('audit.archive', () => archivePass(archiver))
            .finally(() => {
              archiving = undefined;
            });
        },
        options.archiveIntervalMs ?? config.audit.archiveIntervalMinutes * 60_000,
      )
    : undefined;
  archiveTimer?.unref();
  // The held backups are verified again on a schedule, the least recently verified first; a run
  // that finds one failing counts as failed (tresor status), its result is on the backup's record.
  const verifyEveryMs = Math.round(config.backup.verifyIntervalMinutes * 60_000);
  let reverifying: Promise<boolean | undefined> | undefined;
  const reverifyTimer =
    verifyEveryMs > 0
      ? setInterval(() => {
          reverifying ??= jobs
            .periodic('backup.verify', async () => failOnItems(await backups.reverify(REVERIFY_PER_RUN)))
            .finally(() => {
              reverifying = undefined;
            });
        }, verifyEveryMs)
      : undefined;
  reverifyTimer?.unref();

  async function runJobs(): Promise<void> {
    await recoverDeadRuns();
    await jobs.periodic('tenants.resume', resumeTenants);
    await jobs.periodic('tenants.auto-close', async () => failOnItems(await tenants.autoClose()));
    await jobs.periodic('tenants.close-grace', async () => failOnItems(await tenants.completeCloses()));
    await jobs.periodic('grants.expire', () => grants.expireDue());
    // The retention of every active tenant that is due runs, whichever of them fails; the others'
    // stores are not opened (retention-due.ts).
    await jobs.periodic('vault.retention', async () => {
      const failed: { code: string }[] = [];
      const runStart = clock().getTime();
      const active = new Set((await tenants.listTenants({ state: 'active' })).map((t) => t.id));
      for (const { tenant, version } of await retentionDue.due(runStart)) {
        if (!active.has(tenant)) continue;
        try {
          await vault.runRetention(tenant);
          await retentionDue.reschedule(tenant, version, await vault.nextRetentionDue(tenant, runStart));
        } catch (error) {
          failed.push(loggableError(error));
        }
      }
      failOnItems({ failed });
    });
  }
  // The server's own availability probe (off without probe.apiKeyFile), against its public URL.
  let listening: string | undefined;
  const probeJob = startProbeJob({
    config: config.probe,
    defaultUrl: () => config.publicUrl ?? listening ?? `https://localhost:${config.port}`,
    store: control,
    jobs,
    clock,
    leads: leadsJobs,
  });

  const trust = trustStatements({
    config,
    origin: () => config.publicUrl ?? listening ?? `https://localhost:${config.port}`,
    keyd,
    latestCheckpoint: () => audit.reader.latestCheckpoint(),
    witnessLatest: () => witness.latest(),
    backups: (limit) => backupRecords.list(limit),
    availability: () => probeJob.availability(),
    clock,
  });

  const interval = options.jobIntervalMs ?? 3_600_000;
  const timer = interval > 0 ? setInterval(() => void runJobs(), interval) : undefined;
  timer?.unref();

  const { url } = await http.listen();
  listening = url;
  const metricsListener: MetricsListener | undefined = config.metrics
    ? await startMetricsListener({ ...config.metrics, scrape: () => metrics.scrape() })
    : undefined;
  return {
    url,
    ...(metricsListener ? { metricsUrl: metricsListener.url } : {}),
    http,
    control,
    tenantStores,
    tenants,
    operatorTokens,
    people,
    sessions,
    vault,
    keyd,
    keyCache,
    audit,
    grants,
    alerts: { service: alertService, watch: alertWatch, delivery: alertDelivery, states: alertStates },
    runJobs,
    jobs: { status: () => jobs.status() },
    async reloadCertificates() {
      let outcome: AuditEvent['outcome'] = 'success';
      try {
        http.reloadCertificates();
      } catch (error) {
        outcome = 'failure';
        throw error;
      } finally {
        const event = systemEvent({ id: 'server', action: 'tls.reload', outcome }, clock());
        await control.write((trx) => appendAuditEvent(trx, event));
      }
    },
    async close() {
      if (timer) clearInterval(timer);
      closing = true;
      await probeJob.close();
      if (backupTimer) clearInterval(backupTimer);
      clearInterval(retentionTimer);
      if (auditVerifyTimer) clearInterval(auditVerifyTimer);
      if (archiveTimer) clearInterval(archiveTimer);
      if (archivedCursorTimer) clearInterval(archivedCursorTimer);
      await auditVerifying;
      await archiving;
      if (reverifyTimer) clearInterval(reverifyTimer);
      await backups.close();
      await tenantRestores.close();
      await retaining;
      await reverifying;
      clearInterval(auditWatch);
      clearInterval(keydOpsTimer);
      await mirroring;
      await diskWatch.close();
      await http.close();
      await metricsListener?.close();
      stopAuditMetrics();
      await alertWatch.close();
      await alertStates.close();
      await alertDelivery.close();
      await apiKeys.flush().catch(() => undefined);
      await operatorTokenAuth.flush().catch(() => undefined);
      await clusterListener?.close();
      await closedTenantKeys?.close();
      await audit.close();
      pending.close();
      await sinks?.flush().catch(() => undefined);
      await sinks?.close();
      await tenantStores.close();
      await control.close();
      keyCache.close();
      await factorKeys.close();
      await keyd.close();
    },
  };
}
