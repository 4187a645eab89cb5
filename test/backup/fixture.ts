/**
 * TEST-ONLY. What the backup tests stand on: a real `tresor keyd` process (dev-file root key, Unix
 * socket), a data folder with a real control store and real tenant stores (SQLite files opened as
 * the server opens them), writers that keep writing to both, and a real signed audit checkpoint.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Generated, Migration } from 'kysely';
import { formatCheckpoint } from '../../src/audit/checkpoint.ts';
import { signNote } from '../../src/audit/note.ts';
import type { BackupSource, ManifestKey } from '../../src/backup/index.ts';
import type { KeydClient } from '../../src/keyd/client.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/store.ts';
import { insertTenant } from '../helpers/control-store.ts';
import { keydCheckpointSigner } from '../helpers/keyd-checkpoints.ts';
import { type KeydProcess, startKeyd, tresor } from '../helpers/keyd-process.ts';

export const AUDIT_ORIGIN = 'tresor.test/audit';

export interface RecordsDB {
  records: { id: Generated<number>; value: string };
}

const recordsMigration: Migration = {
  async up(db) {
    await db.schema
      .createTable('records')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .execute();
  },
};

export interface BackupWorld {
  root: string;
  dataDir: string;
  keyd: KeydProcess;
  client: KeydClient;
  control: SqliteStore<ControlDB>;
  tenants: Map<string, SqliteStore<RecordsDB>>;
  manifestKey: ManifestKey;
  source: BackupSource;
  /** A fresh empty folder under the world's root. */
  folder(name: string): string;
  close(): Promise<void>;
}

export async function startWorld(tenantIds: readonly string[]): Promise<BackupWorld> {
  const root = mkdtempSync(join(tmpdir(), 'tresor-backup-'));
  const keydDir = join(root, 'keyd');
  const dataDir = join(root, 'data');
  mkdirSync(keydDir, { mode: 0o700 });
  mkdirSync(join(dataDir, 'tenants'), { recursive: true, mode: 0o700 });
  const init = tresor([
    'keyd',
    'init',
    '--provider',
    'dev-file',
    '--dir',
    keydDir,
    '--insecure-dev-key-file',
  ]);
  if (init.status !== 0) throw new Error(`keyd init failed: ${init.stderr}`);
  const target = { kind: 'unix' as const, path: join(keydDir, 'keyd.sock') };
  const keyd = await startKeyd(
    ['--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file'],
    target,
  );
  const client = keyd.client(target, 'tresor-backup-test');
  const control = await openSqliteStore<ControlDB>(join(dataDir, 'control.sqlite'), controlStoreMigrations);
  const tenants = new Map<string, SqliteStore<RecordsDB>>();
  for (const id of tenantIds) {
    await insertTenant(control, id, { at: new Date().toISOString() });
    tenants.set(
      id,
      await openSqliteStore<RecordsDB>(join(dataDir, 'tenants', `${id}.sqlite`), {
        '0001-records': recordsMigration,
      }),
    );
  }
  const pub = await client.call('publicKey', { purpose: 'backup-manifest' });
  const checkpointKey = await client.call('publicKey', { purpose: 'audit-checkpoint' });
  // keyd signs the fixture's one (empty) tree the first time and again each time after.
  const signer = keydCheckpointSigner(client, checkpointKey);
  let n = 0;
  return {
    root,
    dataDir,
    keyd,
    client,
    control,
    tenants,
    manifestKey: { name: pub.name, publicKey: pub.publicKey },
    source: {
      tenants: async () => [...tenants.keys()].map((id) => ({ id, state: 'active', store: true })),
      auditCheckpoint: () =>
        signNote(
          formatCheckpoint({ origin: AUDIT_ORIGIN, size: 0, rootHash: Buffer.alloc(32), extensions: [] }),
          [signer],
        ),
    },
    folder(name) {
      n += 1;
      const path = join(root, `${name}-${n}`);
      mkdirSync(path, { mode: 0o700 });
      return path;
    },
    async close() {
      for (const store of tenants.values()) await store.close().catch(() => undefined);
      await control.close().catch(() => undefined);
      await keyd.stop().catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export async function countRows(world: BackupWorld, tenant: string): Promise<number> {
  const row = await world.tenants
    .get(tenant)
    ?.db.selectFrom('records')
    .select((e) => e.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/**
 * Keeps writing to a tenant store and the control store until stopped. `started` settles once the
 * first batch is acknowledged; stop() resolves to the rows written.
 */
export function keepWriting(
  world: BackupWorld,
  tenant: string,
): { started: Promise<void>; stop(): Promise<number> } {
  const store = world.tenants.get(tenant);
  if (!store) throw new Error(`no tenant ${tenant}`);
  let running = true;
  let written = 0;
  let onStarted = (): void => {};
  const started = new Promise<void>((resolve) => {
    onStarted = resolve;
  });
  const loop = (async () => {
    while (running) {
      const batch = Array.from({ length: 20 }, () =>
        store.write((trx) =>
          trx
            .insertInto('records')
            .values({ value: `ciphertext-stand-in-${written}-${'x'.repeat(200)}` })
            .execute(),
        ),
      );
      await Promise.all(batch);
      written += batch.length;
      await insertTenant(world.control, `w${written}`, { at: new Date().toISOString() });
      onStarted();
    }
  })();
  return {
    started,
    async stop() {
      running = false;
      await loop;
      return written;
    },
  };
}

/** Every file under `dir`, with its bytes. */
export function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const entry of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, entry);
    if (statSync(path).isFile()) out.push({ path, bytes: readFileSync(path) });
  }
  return out;
}

/** A copy of a destination folder to tamper with. */
export function copyFolder(world: BackupWorld, from: string): string {
  const to = world.folder('copy');
  cpSync(from, to, { recursive: true });
  return to;
}
