/**
 * TEST-ONLY. A real Tresor stack (keyd process, `tresor server` process) with a tenant, a collection
 * and records written over HTTPS, and backups of its live data folder taken as the server will take
 * them: the tenant list and the newest signed audit checkpoint read from the control store, then
 * the SQLite snapshot (createBackup). Used by the trial-restore and `tresor restore` tests.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openAuditLogReader } from '../../src/audit/log-reader.ts';
import {
  type BackupResult,
  type BackupSource,
  createBackup,
  createSqliteSnapshotter,
  type Destination,
} from '../../src/backup/index.ts';
import { ensureDevTls } from '../../src/config/dev-tls.ts';
import { resolveServerConfig } from '../../src/config/server-config.ts';
import { controlStorePath } from '../../src/server/control-store.ts';
import { startTresorServer, type TresorServer } from '../../src/server/tresor-server.ts';
import { operatorToken } from '../helpers/console.ts';
import {
  httpsRequester,
  type Requester,
  startTresorStack,
  type TresorStack,
} from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

/** A value that must never appear at a destination or in any output. */
export const MARKER = `restore-marker-${Date.now().toString(36)}-customer-value`;

export interface WrittenRecord {
  id: string;
  data: { email: string; note: string };
}

export interface StackWithRecords {
  stack: TresorStack;
  tenant: string;
  apiKey: string;
  records: WrittenRecord[];
}

export async function stackWithRecords(count = 5): Promise<StackWithRecords> {
  const stack = await startTresorStack({ logLevel: 'warn' });
  try {
    const created = await stack.request('POST', '/v1/tenants', {
      token: await operatorToken(stack, 'tenants:create'),
      body: { name: 'Restore Test' },
    });
    if (created.status !== 201) throw new Error(`tenant create: ${created.status} ${created.text}`);
    const { id: tenant, apiKey } = created.json<{ id: string; apiKey: string }>();
    const put = await stack.request('PUT', '/v1/collections/customers', {
      token: apiKey,
      body: {
        fields: {
          email: { type: 'string', classification: 'personal', required: true },
          note: { type: 'string', classification: 'confidential', required: true },
        },
      },
    });
    if (put.status !== 201) throw new Error(`collection: ${put.status} ${put.text}`);
    const records: WrittenRecord[] = [];
    for (let i = 0; i < count; i++) {
      const data = { email: `person-${i}@restore.example`, note: `${MARKER}-${i}` };
      const res = await stack.request('POST', '/v1/collections/customers/records', {
        token: apiKey,
        body: data,
      });
      if (res.status !== 201) throw new Error(`record: ${res.status} ${res.text}`);
      records.push({ id: res.json<{ id: string }>().id, data });
    }
    return { stack, tenant, apiKey, records };
  } catch (err) {
    await stack.stop();
    throw err;
  }
}

/** What the server hands a backup, read from the live control store. */
export function stackBackupSource(dataDir: string): BackupSource {
  return {
    async tenants() {
      const db = new Database(controlStorePath(dataDir), { readonly: true });
      try {
        const rows = db.prepare('SELECT id, state FROM tenants ORDER BY id').all() as {
          id: string;
          state: string;
        }[];
        return rows.map((t) => ({ ...t, store: existsSync(join(dataDir, 'tenants', `${t.id}.sqlite`)) }));
      } finally {
        db.close();
      }
    },
    auditCheckpoint: () => newestCheckpoint(dataDir),
  };
}

/** The newest signed checkpoint of the live log, once one covers every entry written so far. */
export function newestCheckpoint(dataDir: string): Promise<string> {
  return waitFor('a signed audit checkpoint covering the log', async () => {
    const reader = openAuditLogReader(controlStorePath(dataDir));
    try {
      const size = reader.size();
      const note = reader.checkpoints().at(-1);
      if (note === undefined || size === 0) return undefined;
      return Number(note.split('\n')[1]) === size ? note : undefined;
    } finally {
      reader.close();
    }
  });
}

export function backupStack(
  stack: TresorStack,
  destinations: Destination[],
  source: BackupSource = stackBackupSource(stack.dataDir),
): Promise<BackupResult> {
  const scratch = join(stack.root, 'backup-scratch');
  mkdirSync(scratch, { recursive: true, mode: 0o700 });
  return createBackup({
    keys: stack.keydClient(),
    snapshotter: createSqliteSnapshotter({ dataDir: stack.dataDir }),
    source,
    destinations,
    scratchDir: scratch,
    chunkSize: 64 * 1024,
  });
}

/**
 * A real server (in this process) on a restored data folder, with the stack's keyd: dev TLS made
 * for it, as `tresor dev` would. Returns it with a requester trusting its CA.
 */
export async function serverOn(
  stack: TresorStack,
  dataDir: string,
): Promise<{ server: TresorServer; request: Requester & { agent: { destroy(): void } } }> {
  const tls = await ensureDevTls(dataDir);
  const config = resolveServerConfig(
    { dataDir },
    {
      TRESOR_KEYD_SOCKET: stack.keydSocket,
      TRESOR_PORT: '0',
      TRESOR_HOST: '127.0.0.1',
      TRESOR_LOG_LEVEL: 'warn',
      TRESOR_AUDIT_DISK_RESERVE_BYTES: String(1024 * 1024),
    },
  );
  const server = await startTresorServer(config, { jobIntervalMs: 0 });
  const request = httpsRequester(() => server.url, readFileSync(tls.caFile));
  return { server, request };
}
