/**
 * The trial restore of a PostgreSQL deployment's backup (backup-trial.ts runs it when the server's
 * data is in PostgreSQL): the same four checks, into a scratch DATABASE made for it beside the live
 * one and dropped after, whatever happened.
 *
 *   restore   the backup opened here (keyd's keys, the manifest's signature, the data key unwrapped
 *             through keyd, the audit segments it names: present, the ones named, keyd's signature
 *             valid, as in backup-trial.ts), then its files restored into a scratch folder by the trial's worker
 *             thread (backup-trial-thread.ts: every chunk's digest, AES-GCM, every file's digest),
 *             then loadBackupIntoPg into the scratch database (schemas migrated to each file's
 *             version, rows loaded by COPY, sequences set);
 *   audit     the restored audit log read from the scratch database and verified against the
 *             manifest's checkpoint (restored-audit.ts); a pruned log's entries below its archived
 *             end read from the segments at the trial's destination, through keyd;
 *   stores    the control store and every tenant schema opened as the server opens them, their
 *             migrations run to the newest;
 *   decrypt   a few records per tenant opened through keyd (backup-trial-samples.ts).
 *
 * The scratch database is `CREATE DATABASE <live name>_trial_<random> TEMPLATE template0 ENCODING
 * 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`, on the live database's server with its role. A role that may
 * not create databases (no CREATEDB) fails the restore check saying so: a trial that cannot run is
 * never a pass.
 *
 * As in the SQLite trial, the chunks are hashed and decrypted in that worker, at the lowest CPU
 * priority, never on the event loop; a folder destination's chunks are read there too. The
 * database's own work (COPY, the index builds) is the database server's.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { BackupError, type BackupManifest, checkSegments, openBackup } from '../backup/index.ts';
import { redactDatabaseUrl } from '../config/database-url.ts';
import { wipe } from '../crypto/index.ts';
import { createPgPool, quoteIdent, sessionPool } from '../store/pg/pool.ts';
import { migrate } from '../store/pg/store.ts';
import { createPgTenantStores, tenantSchema } from '../store/pg/tenant-stores.ts';
import type { Store, TenantStores } from '../store/types.ts';
import { type TenantDB, tenantStorePgMigrations } from '../vault/tenant-store-schema.ts';
import { type BackupTrialOptions, type BackupTrialResult, TrialChecks } from './backup-trial-checks.ts';
import { sampleRecords, type TrialTenantSample } from './backup-trial-samples.ts';
import { type TrialScratchStart, tenantFiles } from './backup-trial-scratch.ts';
import { runTrialWorker } from './backup-trial-thread.ts';
import { CONTROL_SCHEMA, openPgControlStore } from './control-store.ts';
import { loadBackupIntoPg } from './pg-restore-database.ts';
import {
  backupVerifierKeys,
  checkRestoredLog,
  pgRestoredLog,
  type RestoredLogArchive,
  trialAuditDetail,
} from './restored-audit.ts';

const DEFAULT_SAMPLES = 3;

/** PostgreSQL's identifier limit (NAMEDATALEN - 1). */
const MAX_NAME = 63;

export async function runPgBackupTrial(
  options: BackupTrialOptions,
  database: { url: string },
): Promise<BackupTrialResult> {
  const now = options.now ?? (() => new Date());
  const interrupted = () =>
    new BackupError(
      'TRESOR_ERR_BACKUP_INTERRUPTED',
      `the trial restore of ${options.backupId} was stopped: the server is stopping`,
    );
  if (options.signal?.aborted) throw interrupted();
  const started = now();
  const checks = new TrialChecks();
  const samples: TrialTenantSample[] = [];
  const scratch = await mkdtemp(join(options.scratchDir, `trial-${options.backupId}-`));
  const scratchDb = scratchDatabase(database.url);
  let created = false;
  let manifest: BackupManifest | undefined;
  let auditPublicKey: Uint8Array | undefined;
  let archive: RestoredLogArchive | undefined;
  try {
    await checks.run('restore', async () => {
      const verifier = await backupVerifierKeys(options.keys);
      auditPublicKey = verifier.auditPublicKey;
      archive = { destinations: [options.destination], keys: options.keys, key: verifier.manifestKey };
      const files = join(scratch, 'files');
      const opened = await openBackup({
        destination: options.destination,
        backupId: options.backupId,
        keys: options.keys,
        manifestKey: verifier.manifestKey,
      });
      const segments = await checkSegments({
        destination: options.destination,
        manifest: opened.manifest,
        keys: options.keys,
        manifestKey: verifier.manifestKey,
        depth: 'signature',
      }).catch((err: unknown) => {
        wipe(opened.key);
        throw err;
      });
      const start: TrialScratchStart = {
        kind: 'start',
        manifest: opened.manifest,
        key: opened.key,
        auditPublicKey: verifier.auditPublicKey,
        dataDir: files,
        only: 'restore',
      };
      if (options.destination.folder !== undefined) start.folder = options.destination.folder;
      // The file pass in the worker; its check is reported to a list of its own and told here.
      const pass = new TrialChecks();
      await runTrialWorker(pass, start, options, 0);
      const restored = pass.list.find((c) => c.name === 'restore');
      if (options.signal?.aborted) throw interrupted();
      if (restored?.status !== 'passed')
        throw new Error(restored?.detail ?? "the worker's file pass did not report");
      manifest = opened.manifest;
      if (options.signal?.aborted) throw interrupted();
      await createScratchDatabase(database.url, scratchDb.name);
      created = true;
      const loaded = await loadBackupIntoPg({
        url: scratchDb.url,
        shown: scratchDb.shown,
        manifest: opened.manifest,
        folder: files,
      });
      await rm(files, { recursive: true, force: true });
      return `${restored.detail}; ${segments} audit segments signed; ${loaded.schemas.length} schemas, ${loaded.tables} tables loaded into a scratch database`;
    });
    if (options.signal?.aborted) throw interrupted();
    await checks.run('audit', async () => {
      if (manifest === undefined || auditPublicKey === undefined) throw new Error('no restored backup');
      // A pruned log's entries [0, E) from the segments at the trial's destination (verify-archived.ts).
      const audit = await checkRestoredLog(
        pgRestoredLog({ url: scratchDb.url, shown: scratchDb.shown, schema: CONTROL_SCHEMA }),
        manifest,
        auditPublicKey,
        archive === undefined ? {} : { archive },
      );
      return trialAuditDetail(audit);
    });
    if (options.signal?.aborted) throw interrupted();
    const pool = createPgPool(scratchDb.url, { max: 4 });
    try {
      let tenantStores: TenantStores<TenantDB> | undefined;
      const opened = new Map<string, Store<TenantDB>>();
      await checks.run('stores', async () => {
        const control = await openPgControlStore(pool);
        await control.close();
        tenantStores = await createPgTenantStores<TenantDB>({ pool, migrations: tenantStorePgMigrations });
        for (const file of manifest ? tenantFiles(manifest) : []) {
          // The tenant's schema opened and its migrations run to the newest, as the server would.
          const tenant = file.tenant ?? '';
          opened.set(tenant, await tenantStores.open(tenant));
          const db = tenantKysely(pool, tenant);
          try {
            await migrate(db, tenantSchema(tenant), tenantStorePgMigrations);
          } finally {
            await db.destroy();
          }
        }
        return `control store and ${opened.size} tenant schemas open and migrate`;
      });
      try {
        await checks.run('decrypt', async () => {
          samples.push(
            ...(await sampleRecords(options.keys, opened, options.samplesPerTenant ?? DEFAULT_SAMPLES, now)),
          );
          const bad = samples.filter((s) => s.error !== undefined);
          const total = samples.reduce((sum, s) => sum + s.decrypted, 0);
          if (bad.length > 0)
            throw Object.assign(
              new Error(
                `records of ${bad.length} tenant(s) do not decrypt: ${bad.map((s) => `${s.tenant} (${s.error})`).join(', ')}`,
              ),
              { code: 'TRESOR_ERR_BACKUP_INVALID' },
            );
          return `${total} records of ${samples.length} tenants decrypted through keyd`;
        });
      } finally {
        await tenantStores?.close().catch(() => undefined);
      }
    } finally {
      await pool.end().catch(() => undefined);
    }
  } finally {
    if (created) await dropScratchDatabase(database.url, scratchDb.name).catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  }
  return {
    backupId: options.backupId,
    destination: options.destination.name,
    ok: checks.list.every((c) => c.status === 'passed'),
    startedAt: started.toISOString(),
    durationMs: now().getTime() - started.getTime(),
    checks: checks.list,
    samples,
  };
}

/** A Kysely on the tenant's schema alone (its search_path), for its migrations. */
function tenantKysely(pool: pg.Pool, tenant: string): Kysely<unknown> {
  return new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: sessionPool(pool, quoteIdent(tenantSchema(tenant))) }),
  });
}

/** The scratch database's name (`<live>_trial_<random>`, within PostgreSQL's limit), URL and shown URL. */
function scratchDatabase(liveUrl: string): { name: string; url: string; shown: string } {
  const u = new URL(liveUrl);
  const live = decodeURIComponent(u.pathname.replace(/^\//, '')).replace(/[^a-z0-9_]/g, '_');
  const suffix = `_trial_${randomBytes(5).toString('hex')}`;
  const name = `${live.slice(0, MAX_NAME - suffix.length)}${suffix}`;
  u.pathname = `/${name}`;
  return { name, url: u.toString(), shown: redactDatabaseUrl(u.toString()) };
}

async function onLiveServer<T>(liveUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: liveUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function createScratchDatabase(liveUrl: string, name: string): Promise<void> {
  try {
    await onLiveServer(liveUrl, (client) =>
      client.query(
        `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`,
      ),
    );
  } catch (error) {
    if ((error as { code?: unknown }).code === '42501')
      throw new BackupError(
        'TRESOR_ERR_BACKUP_FAILED',
        'the database role may not create databases (CREATEDB): the trial restore of a PostgreSQL backup needs a scratch database; grant CREATEDB or verify with `tresor restore --database-url` into a database made for it',
      );
    throw new BackupError(
      'TRESOR_ERR_BACKUP_FAILED',
      `the trial restore's scratch database could not be created (${String((error as { code?: unknown }).code ?? 'error')})`,
    );
  }
}

async function dropScratchDatabase(liveUrl: string, name: string): Promise<void> {
  await onLiveServer(liveUrl, (client) =>
    client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  );
}
