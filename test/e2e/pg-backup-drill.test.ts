// backends: postgres
// drill: a PostgreSQL deployment restored from backups
/**
 * The backup drill on PostgreSQL: a real stack (keyd and a `tresor server` process on its own
 * database) with two tenants' records (created, updated, deleted); a backup taken over the API while
 * a writer keeps creating records; its trial restore (a scratch database) passes, and run again here
 * it hashes and decrypts the chunks in its worker thread, not on the event loop. Then `tresor
 * restore --database-url` loads it into a fresh EMPTY database, a server starts on that database with
 * the same keyd, and everything the backup holds is compared: every record written before the backup
 * (id, version, data), every audit entry up to the backup's checkpoint and the checkpoint's root. A
 * non-empty target is refused, and a tampered chunk is refused leaving the target database empty.
 */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import pg from 'pg';
import { parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { rootFromLeafHashes } from '../../src/audit/merkle.ts';
import { parseNote } from '../../src/audit/note.ts';
import { createFolderDestination, type Destination } from '../../src/backup/index.ts';
import { runBackupTrial } from '../../src/server/backup-trial.ts';
import { exited, tresor } from '../cli/cli-run.ts';
import { operatorToken } from '../helpers/console.ts';
import { type FreshPgDatabase, freshPgDatabase, testPgPrefix } from '../helpers/pg.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const MARKER = `pg-drill-${Date.now().toString(36)}-customer-value`;
const PEOPLE = {
  fields: {
    email: { type: 'string', classification: 'personal', required: true, searchable: true },
    note: { type: 'string', classification: 'confidential', required: true },
  },
} as const;

interface StoredRecord {
  id: string;
  version: number;
  data: Record<string, unknown>;
}
interface AuditRow {
  index: number;
  entry: Record<string, unknown>;
  leafHash: string;
}

describe('the backup drill on PostgreSQL: backed up while writing, restored into a new database, compared', () => {
  let base: string;
  let folder: string;
  let s: TresorStack;
  let auditToken: string;
  let backupId: string;
  const tenants: { id: string; apiKey: string; records: Map<string, StoredRecord> }[] = [];
  const databases: FreshPgDatabase[] = [];
  let original: AuditRow[] = [];
  let checkpoint: { size: number; rootHash: Buffer };

  const fresh = async () => {
    const db = await freshPgDatabase({ prefix: testPgPrefix('tresor_test') });
    databases.push(db);
    return db;
  };
  const restore = (from: string, url: string) =>
    tresor([
      'restore',
      '--keyd-socket',
      s.keydSocket,
      '--json',
      '--from',
      from,
      '--backup',
      backupId,
      '--database-url',
      url,
    ]);

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'tresor-pg-drill-'));
    folder = join(base, 'backups');
    s = await startTresorStack({
      backend: 'postgres',
      logLevel: 'warn',
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([{ name: 'folder', kind: 'folder', path: folder }]),
      },
    });
  });

  after(async () => {
    await s?.stop();
    for (const db of databases) await db.drop().catch(() => undefined);
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('writes records, backs up while a writer goes on; the trial restore in a scratch database passes', async () => {
    const createToken = await operatorToken(s, 'tenants:create');
    auditToken = await operatorToken(s, 'audit:read');
    const runToken = await operatorToken(s, 'backups:run');
    const readToken = await operatorToken(s, 'backups:read');
    for (const name of ['Alpha', 'Beta']) {
      const created = await s.request('POST', '/v1/tenants', { token: createToken, body: { name } });
      assert.equal(created.status, 201, created.text);
      const { id, apiKey } = created.json<{ id: string; apiKey: string }>();
      const put = await s.request('PUT', '/v1/collections/people', { token: apiKey, body: PEOPLE });
      assert.equal(put.status, 201, put.text);
      const records = new Map<string, StoredRecord>();
      for (let n = 0; n < 12; n++) {
        const res = await s.request('POST', '/v1/collections/people/records', {
          token: apiKey,
          body: { email: `p${n}@drill.example`, note: `${MARKER}-${n}` },
        });
        assert.equal(res.status, 201, res.text);
        const r = res.json<StoredRecord>();
        records.set(r.id, r);
      }
      const ids = [...records.keys()];
      for (const id of ids.filter((_, i) => i % 4 === 1)) {
        const before = records.get(id) as StoredRecord;
        const res = await s.request('PATCH', `/v1/collections/people/records/${id}`, {
          token: apiKey,
          body: { note: `${MARKER}-updated` },
          headers: { 'if-match': `"${before.version}"` },
        });
        assert.equal(res.status, 200, res.text);
        records.set(id, res.json<StoredRecord>());
      }
      const gone = ids[3] as string;
      const del = await s.request('DELETE', `/v1/collections/people/records/${gone}`, {
        token: apiKey,
        headers: { 'if-match': `"${(records.get(gone) as StoredRecord).version}"` },
      });
      assert.equal(del.status, 204, del.text);
      records.delete(gone);
      tenants.push({ id, apiKey, records });
    }

    // A writer goes on through the backup.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      const t = tenants[0] as (typeof tenants)[number];
      while (writing) {
        const res = await s.request('POST', '/v1/collections/people/records', {
          token: t.apiKey,
          body: { email: `w${written}@drill.example`, note: `${MARKER}-w` },
        });
        assert.equal(res.status, 201, res.text);
        written += 1;
      }
    })();
    const started = await s.request('POST', '/v1/backups', { token: runToken });
    assert.equal(started.status, 202, started.text);
    backupId = started.json<{ id: string }>().id;
    const view = await waitFor(
      'the backup done and verified',
      async () => {
        const res = await s.request('GET', `/v1/backups/${backupId}`, { token: readToken });
        if (res.status !== 200) return undefined;
        const v = res.json<{ outcome: string; verification: { result: string; code?: string } | null }>();
        return v.outcome === 'running' || (v.outcome === 'done' && v.verification === null) ? undefined : v;
      },
      { timeoutMs: 50_000, intervalMs: 250 },
    );
    writing = false;
    await writer;
    assert.equal(view.outcome, 'done', JSON.stringify(view));
    assert.equal(view.verification?.result, 'passed', JSON.stringify(view));
    assert.ok(written > 0, 'records were written during the backup');

    const manifest = JSON.parse(readFileSync(join(folder, backupId, 'manifest.json'), 'utf8')) as {
      backend: string;
      auditCheckpoint: string;
      files: { name: string; kind: string; schemaVersion: string }[];
    };
    assert.equal(manifest.backend, 'postgres');
    assert.deepEqual(manifest.files.map((f) => f.name).sort(), [
      'control.pgs',
      ...tenants.map((t) => `tenants/${t.id}.pgs`).sort(),
    ]);
    const parsed = parseCheckpoint(parseNote(manifest.auditCheckpoint).text);
    checkpoint = { size: parsed.size, rootHash: parsed.rootHash };
    original = await everyAuditEntry();
    assert.ok(original.length >= checkpoint.size && checkpoint.size > 0);
  });

  it('the trial restore hashes and decrypts every chunk in its worker thread: the event loop reads only the manifest and its signature', async () => {
    assert.ok(backupId, 'the backup of the first test');
    assert.equal(s.database.kind, 'postgres');
    const url = s.database.kind === 'postgres' ? s.database.url : '';
    const destination = createFolderDestination({ root: folder });
    const readHere: string[] = [];
    const counting: Destination = {
      ...destination,
      async get(key) {
        readHere.push(key.split('/').pop() ?? key);
        return destination.get(key);
      },
    };
    // Every worker thread this process starts meanwhile, and the trial checks it reports.
    const reported: { thread: number; name: string; status: string }[] = [];
    const onWorker = (message: unknown) => {
      const worker = (message as { worker: Worker }).worker;
      worker.on('message', (reply: { kind?: string; check?: { name: string; status: string } }) => {
        if (reply.kind === 'check' && reply.check)
          reported.push({ thread: worker.threadId, name: reply.check.name, status: reply.check.status });
      });
    };
    diagnostics.subscribe('worker_threads', onWorker);
    const scratchDir = join(base, 'trial-scratch');
    mkdirSync(scratchDir, { mode: 0o700 });
    try {
      const result = await runBackupTrial({
        destination: counting,
        backupId,
        keys: s.keydClient(),
        scratchDir,
        database: { url },
      });
      assert.equal(result.ok, true, JSON.stringify(result.checks));
      assert.deepEqual(
        result.checks.map((c) => [c.name, c.status]),
        [
          ['restore', 'passed'],
          ['audit', 'passed'],
          ['stores', 'passed'],
          ['decrypt', 'passed'],
        ],
      );
      assert.match(
        result.checks[0]?.detail ?? '',
        /every digest hold; \d+ audit segments signed; \d+ schemas, \d+ tables loaded/,
      );
    } finally {
      diagnostics.unsubscribe('worker_threads', onWorker);
    }
    // The chunks were neither read nor (so) hashed or decrypted here: a worker thread passed over them.
    assert.deepEqual(readHere, ['manifest.json', 'manifest.sig']);
    assert.equal(reported.length, 1, JSON.stringify(reported));
    assert.deepEqual(
      { name: reported[0]?.name, status: reported[0]?.status },
      { name: 'restore', status: 'passed' },
    );
    assert.ok((reported[0]?.thread ?? 0) > 0, 'reported by a worker thread');
    assert.deepEqual(readdirSync(scratchDir), [], 'the scratch folder is removed');
  });

  it('tresor restore --database-url loads it into an empty database; a server on it holds every record and audit entry', async () => {
    assert.ok(backupId, 'the backup of the first test');
    const target = await fresh();
    const run = exited(await restore(folder, target.url), 0);
    assert.equal((JSON.parse(run.stdout) as { backupId: string }).backupId, backupId);
    assert.equal(run.stdout.includes(MARKER), false);

    const again = exited(await restore(folder, target.url), 1);
    assert.match(again.stderr, /TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY: .* is not an empty database/);

    await s.stopServer();
    // The node's witness remembers the live log's later checkpoint and would rightly call the
    // restored log rolled back: a restored deployment starts with a witness of its own, as a
    // restored data folder (which holds its witness) does on SQLite.
    const witness = join(base, 'witness-after-restore');
    mkdirSync(witness, { mode: 0o700 });
    await s.startServer({ TRESOR_DATABASE_URL: target.url, TRESOR_AUDIT_WITNESS_DIR: witness });
    // The restored log's sequencer starts and signs a checkpoint over it before the log serves.
    await waitFor(
      'the restored server audits',
      async () =>
        (await s.request('GET', '/v1/audit/entries?from=0&limit=1', { token: auditToken })).status === 200
          ? true
          : undefined,
      {
        timeoutMs: 30_000,
        intervalMs: 250,
        diagnostics: () =>
          s
            .serverOutput()
            .split('\n')
            .filter((l) => /reasons|sequencer|checkpoint/.test(l))
            .join('\n')
            .slice(-3000),
      },
    );
    const entries = await everyAuditEntry();
    assert.ok(entries.length >= checkpoint.size);
    for (let i = 0; i < checkpoint.size; i++) assert.deepEqual(entries[i], original[i], `audit entry ${i}`);
    const leaves = entries.slice(0, checkpoint.size).map((r) => Buffer.from(r.leafHash, 'base64'));
    assert.ok(rootFromLeafHashes(leaves).equals(checkpoint.rootHash), "the checkpoint's root");
    for (const t of tenants) {
      const got = await everyRecord(t.apiKey);
      for (const [id, record] of t.records) {
        assert.deepEqual(got.get(id), record, `record ${id} of ${t.id}`);
      }
    }
    // The restored database takes writes (its sequences were set past the loaded rows).
    const t = tenants[1] as (typeof tenants)[number];
    const more = await s.request('POST', '/v1/collections/people/records', {
      token: t.apiKey,
      body: { email: 'after@drill.example', note: 'after the restore' },
    });
    assert.equal(more.status, 201, more.text);
  });

  it('refuses a tampered chunk and leaves the target database empty', async () => {
    assert.ok(backupId, 'the backup of the first test');
    const flipped = join(base, 'flipped');
    cpSync(folder, flipped, { recursive: true });
    const chunk = join(flipped, backupId, 'chunk-000000');
    const bytes = readFileSync(chunk);
    bytes[40] = (bytes[40] ?? 0) ^ 0x01;
    writeFileSync(chunk, bytes);
    const target = await fresh();
    const run = exited(await restore(flipped, target.url), 1);
    assert.match(
      run.stderr,
      /TRESOR_ERR_BACKUP_INVALID: backup \S+ refused: chunk 0 does not match its digest/,
    );
    const client = new pg.Client({ connectionString: target.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        "SELECT nspname FROM pg_namespace WHERE nspname = 'tresor' OR nspname LIKE 'tenant\\_%'",
      );
      assert.deepEqual(rows, []);
    } finally {
      await client.end();
    }
  });

  async function everyRecord(apiKey: string): Promise<Map<string, StoredRecord>> {
    const out = new Map<string, StoredRecord>();
    let cursor: string | null = null;
    do {
      const query: string = `limit=50${cursor === null ? '' : `&cursor=${cursor}`}`;
      const res = await s.request('GET', `/v1/collections/people/records?${query}`, { token: apiKey });
      assert.equal(res.status, 200, res.text);
      const page = res.json<{ records: StoredRecord[]; nextCursor: string | null }>();
      for (const { id, version, data } of page.records) out.set(id, { id, version, data });
      cursor = page.nextCursor;
    } while (cursor !== null);
    return out;
  }

  async function everyAuditEntry(): Promise<AuditRow[]> {
    const out: AuditRow[] = [];
    let from: number | null = 0;
    while (from !== null) {
      const res = await s.request('GET', `/v1/audit/entries?from=${from}&limit=1000`, { token: auditToken });
      assert.equal(res.status, 200, res.text);
      const page = res.json<{ entries: AuditRow[]; next: number | null }>();
      out.push(...page.entries);
      from = page.next;
    }
    return out;
  }
});
