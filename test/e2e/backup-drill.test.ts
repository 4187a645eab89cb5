// backends: sqlite (these read the SQLite files of a backup; PostgreSQL's backups, trial and restore: e2e/pg-backup-drill)
// drill: the data folder destroyed and restored from a folder and from S3
/**
 * The full backup drill (issue 16), as an operator would run it after losing a disk: a real stack
 * (keyd and `tresor server` processes) with a folder AND an S3 destination (s3rver on loopback);
 * several tenants with records in several collections (created, updated, deleted), people, API
 * keys, a staff grant requested, approved, activated and used, so the audit log holds many kinds of
 * entries. `tresor backup now --wait` backs up to both; everything is recorded over the API (every
 * record as plaintext, every audit entry, the public key). Then the server is stopped and its data
 * folder destroyed (rm -rf), and for each destination in turn `tresor restore` brings it back into
 * the same place, a server starts on it with the same keyd, and everything is compared: every
 * record, every audit entry the backup holds, the audit root (the backup's signed checkpoint, and
 * `tresor audit verify` on the restored log). A tampered backup (a chunk flipped, the manifest
 * edited; at the folder and in the bucket) is refused and leaves no folder behind.
 *
 * The TLS files are not in a backup (docs/backup.md): the operator keeps them apart, as this test
 * keeps a copy of them and puts it back beside each restored folder.
 */
import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { openAuditLogReader } from '../../src/audit/log-reader.ts';
import { rootFromLeafHashes } from '../../src/audit/merkle.ts';
import { parseNote } from '../../src/audit/note.ts';
import { createS3Destination } from '../../src/backup/index.ts';
import {
  type LocalS3,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startLocalS3,
} from '../backup/s3-server.ts';
import { exited, leaksNone, type Run, tresor } from '../cli/cli-run.ts';
import { backupNow } from '../helpers/backup-now.ts';
import {
  type ConsoleAccount,
  type ConsoleSession,
  consoleClient,
  operatorToken,
} from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

/** A customer value that must never appear in an output, a log or at a destination. */
const MARKER = `drill-marker-${Date.now().toString(36)}-customer-value`;
const TENANTS = ['Alpha', 'Beta', 'Gamma'] as const;
const COLLECTIONS = {
  people: {
    fields: {
      email: { type: 'string', classification: 'personal', required: true, searchable: true },
      note: { type: 'string', classification: 'confidential', required: true },
    },
  },
  orders: {
    fields: {
      item: { type: 'string', classification: 'internal', required: true },
      amount: { type: 'number', classification: 'internal', required: true },
    },
  },
} as const;
type CollectionName = keyof typeof COLLECTIONS;
/** Records created per collection and tenant; of them, every 4th is updated and every 7th deleted. */
const PER_COLLECTION = 24;
const S3_PREFIX = 'drill/';

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
interface Tenant {
  name: string;
  id: string;
  apiKey: string;
  /** Every live record, by collection, as the API returned it. */
  records: Record<CollectionName, Map<string, StoredRecord>>;
  deleted: string[];
}

/** Runs `work` over `items`, `width` at a time. */
async function inParallel<T, R>(
  items: readonly T[],
  width: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await work(items[i] as T);
      }
    }),
  );
  return out;
}

const dataOf = (collection: CollectionName, n: number, round: number): Record<string, unknown> =>
  collection === 'people'
    ? { email: `person-${n}@drill.example`, note: `${MARKER}-${n}-r${round}` }
    : { item: `item-${n}-r${round}`, amount: n * 100 + round };

describe('the backup drill: data folder destroyed, restored from a folder and from S3, everything compared', () => {
  let base: string;
  let dataDir: string;
  let folder: string;
  let tlsCopy: string;
  let s3: LocalS3;
  let s: TresorStack;
  let auditToken: string;
  let backupsReadToken: string;
  let publicKey: string;
  let backupId: string;
  const tenants: Tenant[] = [];
  const runs: Run[] = [];
  const secrets: string[] = [];
  /** Every audit entry of the original deployment, read after the backup ended. */
  let original: AuditRow[] = [];
  let checkpoint: { size: number; rootHash: Buffer };

  const cli = async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> => {
    const run = await tresor(args, { env });
    runs.push(run);
    return run;
  };

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'tresor-drill-'));
    dataDir = join(base, 'data');
    folder = join(base, 'backups');
    tlsCopy = join(base, 'tls-kept-apart');
    s3 = await startLocalS3();
    const idFile = join(base, 's3-key-id');
    const secretFile = join(base, 's3-secret');
    writeFileSync(idFile, `${S3RVER_ACCESS_KEY_ID}\n`, { mode: 0o600 });
    writeFileSync(secretFile, `${S3RVER_SECRET_ACCESS_KEY}\n`, { mode: 0o600 });
    s = await startTresorStack({
      dataDir,
      logLevel: 'warn',
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
          { name: 'folder', kind: 'folder', path: folder },
          {
            name: 's3',
            kind: 's3',
            endpoint: s3.endpoint,
            region: 'us-east-1',
            bucket: s3.bucket,
            prefix: S3_PREFIX,
            forcePathStyle: true,
            accessKeyIdFile: idFile,
            secretAccessKeyFile: secretFile,
          },
        ]),
        TRESOR_LOGIN_DELAY_AFTER: '100',
        TRESOR_LOGIN_ADDRESS_DELAY_AFTER: '100000',
      },
    });
  });

  after(async () => {
    await s?.stop();
    await s3?.remove();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('writes records (created, updated, deleted), people, API keys and a used staff grant; backs up to both destinations', async () => {
    const createToken = await operatorToken(s, 'tenants:create');
    auditToken = await operatorToken(s, 'audit:read');
    const runToken = await operatorToken(s, 'backups:run');
    const readToken = await operatorToken(s, 'backups:read');
    backupsReadToken = readToken;
    secrets.push(createToken, auditToken, runToken, readToken);

    for (const name of TENANTS) {
      const created = await s.request('POST', '/v1/tenants', { token: createToken, body: { name } });
      assert.equal(created.status, 201, created.text);
      const { id, apiKey } = created.json<{ id: string; apiKey: string }>();
      secrets.push(apiKey);
      const tenant: Tenant = {
        name,
        id,
        apiKey,
        records: { people: new Map(), orders: new Map() },
        deleted: [],
      };
      tenants.push(tenant);
      for (const [collection, declaration] of Object.entries(COLLECTIONS)) {
        const put = await s.request('PUT', `/v1/collections/${collection}`, {
          token: apiKey,
          body: declaration,
        });
        assert.equal(put.status, 201, put.text);
      }
      // A second key of the tenant, read-only on one collection: an api-key.issue entry.
      const key = await s.request('POST', '/v1/api-keys', {
        token: apiKey,
        body: { collections: ['orders'], access: ['read'], label: 'reporting' },
      });
      assert.equal(key.status, 201, key.text);
      secrets.push(key.json<{ token: string }>().token);
    }

    // Records: created 6 at a time, then every 4th updated, every 7th deleted.
    for (const tenant of tenants) {
      for (const collection of Object.keys(COLLECTIONS) as CollectionName[]) {
        const path = `/v1/collections/${collection}/records`;
        const numbers = Array.from({ length: PER_COLLECTION }, (_, i) => i);
        await inParallel(numbers, 6, async (n) => {
          const res = await s.request('POST', path, { token: tenant.apiKey, body: dataOf(collection, n, 0) });
          assert.equal(res.status, 201, res.text);
          const record = res.json<StoredRecord>();
          tenant.records[collection].set(record.id, record);
        });
        const ids = [...tenant.records[collection].keys()];
        await inParallel(
          ids.filter((_, i) => i % 4 === 1),
          6,
          async (id) => {
            const before = tenant.records[collection].get(id) as StoredRecord;
            const n = ids.indexOf(id);
            const patch = collection === 'people' ? { note: `${MARKER}-${n}-r1` } : { amount: n * 100 + 1 };
            const res = await s.request('PATCH', `${path}/${id}`, {
              token: tenant.apiKey,
              body: patch,
              headers: { 'if-match': `"${before.version}"` },
            });
            assert.equal(res.status, 200, res.text);
            const updated = res.json<StoredRecord>();
            assert.equal(updated.version, before.version + 1);
            tenant.records[collection].set(id, updated);
          },
        );
        for (const id of ids.filter((_, i) => i % 7 === 3)) {
          const version = (tenant.records[collection].get(id) as StoredRecord).version;
          const res = await s.request('DELETE', `${path}/${id}`, {
            token: tenant.apiKey,
            headers: { 'if-match': `"${version}"` },
          });
          assert.equal(res.status, 204, res.text);
          tenant.records[collection].delete(id);
          tenant.deleted.push(`${collection}/${id}`);
        }
      }
    }

    // People and a staff grant: requested, approved by the customer (lockbox), activated, used.
    const [alpha] = tenants as [Tenant];
    const c = consoleClient(s);
    const sam = await c.createAndEnrol({ side: 'operator', role: 'support-agent', email: 'sam@drill.test' });
    const tad = await c.createAndEnrol({
      side: 'customer',
      role: 'tenant-admin',
      email: 'tad@alpha.test',
      tenant: alpha.id,
    });
    const sessions = new Map<ConsoleAccount, ConsoleSession>([
      [sam, await c.login(sam)],
      [tad, await c.login(tad)],
    ]);
    const as = (who: ConsoleAccount, method: string, path: string, headers?: Record<string, string>) =>
      c.as(sessions.get(who) as ConsoleSession, method, path, undefined, headers);
    const requested = await c.as(sessions.get(sam) as ConsoleSession, 'POST', '/v1/grants', {
      tenant: alpha.id,
      collections: ['people'],
      access: 'read',
      reason: 'customer asked to check a duplicate profile',
      ticket: 'DRILL-16',
    });
    assert.equal(requested.status, 201, requested.text);
    const grant = requested.json<{ id: string }>().id;
    assert.equal((await as(tad, 'POST', `/v1/grants/${grant}/approve`)).status, 200);
    sessions.set(sam, await c.reauthenticate(sam, sessions.get(sam) as ConsoleSession));
    const activated = await as(sam, 'POST', `/v1/grants/${grant}/activate`);
    assert.equal(activated.status, 200, activated.text);
    const someone = [...alpha.records.people.values()][0] as StoredRecord;
    const read = await as(sam, 'GET', `/v1/collections/people/records/${someone.id}`, {
      'tresor-grant': grant,
    });
    assert.equal(read.status, 200, read.text);
    assert.deepEqual(read.json<StoredRecord>().data, someone.data);
    secrets.push(...c.secrets);

    // The backup, as an operator takes one on demand.
    const { backup } = await backupNow({
      stack: s,
      dir: base,
      tokens: { run: runToken, read: readToken },
      cli,
    });
    assert.equal(backup.outcome, 'done');
    assert.equal(backup.verification?.result, 'passed');
    assert.deepEqual(
      backup.destinations.map((d) => [d.name, d.state]),
      [
        ['folder', 'checked'],
        ['s3', 'checked'],
      ],
    );
    backupId = backup.id;
    const manifest = JSON.parse(readFileSync(join(folder, backupId, 'manifest.json'), 'utf8')) as {
      auditCheckpoint: string;
    };
    const parsed = parseCheckpoint(parseNote(manifest.auditCheckpoint).text);
    checkpoint = { size: parsed.size, rootHash: parsed.rootHash };

    // What the deployment held, recorded over the API: every record (as plaintext), every audit
    // entry, the checkpoint verifier key.
    for (const tenant of tenants) {
      for (const collection of Object.keys(COLLECTIONS) as CollectionName[]) {
        assert.deepEqual(await everyRecord(tenant, collection), sorted(tenant.records[collection]));
      }
    }
    const key = await s.request('GET', '/v1/audit/public-key', { token: auditToken });
    assert.equal(key.status, 200, key.text);
    publicKey = key.text.trim();
    original = await everyAuditEntry();
    assert.ok(original.length >= checkpoint.size && checkpoint.size > 0);
    const actions = new Set(original.map((r) => r.entry.action));
    for (const action of [
      'tenant.create',
      'record.create',
      'record.update',
      'record.delete',
      'record.read',
      'api-key.issue',
      'backup.create',
    ]) {
      assert.ok(actions.has(action), `the log holds ${action}`);
    }
    assert.ok(actions.size >= 15, `many kinds of entries (${actions.size})`);
  });

  /** Every live record of a collection, read through the API page by page (sorted by id). */
  async function everyRecord(tenant: Tenant, collection: CollectionName): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `limit=7${cursor === null ? '' : `&cursor=${cursor}`}`;
      const res = await s.request('GET', `/v1/collections/${collection}/records?${query}`, {
        token: tenant.apiKey,
      });
      assert.equal(res.status, 200, res.text);
      const page = res.json<{ records: StoredRecord[]; nextCursor: string | null }>();
      out.push(...page.records.map(({ id, version, data }) => ({ id, version, data })));
      cursor = page.nextCursor;
    } while (cursor !== null);
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  function sorted(records: Map<string, StoredRecord>): StoredRecord[] {
    return [...records.values()]
      .map(({ id, version, data }) => ({ id, version, data }))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Every sequenced audit entry, over GET /v1/audit/entries, 1,000 a page. */
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
    for (const [i, row] of out.entries()) assert.equal(row.index, i, 'entries in index order, none missing');
    return out;
  }

  /** Stops the server, keeps the TLS files apart (the first time), destroys the data folder. */
  async function destroy(): Promise<void> {
    await s.stopServer();
    if (!existsSync(tlsCopy)) cpSync(join(dataDir, 'tls'), tlsCopy, { recursive: true });
    rmSync(dataDir, { recursive: true, force: true });
    assert.equal(existsSync(dataDir), false);
  }

  /** `tresor restore` into the destroyed folder's place, then the same checks for either destination. */
  async function restoreAndCompare(from: string[], env: NodeJS.ProcessEnv): Promise<void> {
    const restored = exited(
      await cli(
        ['restore', '--keyd-socket', s.keydSocket, '--json', ...from, '--backup', backupId, '--to', dataDir],
        env,
      ),
      0,
    );
    assert.equal((JSON.parse(restored.stdout) as { backupId: string }).backupId, backupId);
    assert.deepEqual(
      readdirSync(base).filter((f) => f.startsWith('.')),
      [],
      'no hidden staging folder left',
    );

    // The audit log as restored, before any server touches it: its root is the backup's checkpoint.
    const reader = openAuditLogReader(join(dataDir, 'control.sqlite'));
    let restoredSize: number;
    try {
      restoredSize = reader.size();
    } finally {
      reader.close();
    }
    assert.ok(restoredSize >= checkpoint.size, 'the restored log reaches the checkpoint');
    assert.ok(restoredSize <= original.length, 'and holds nothing the deployment never had');
    const verify = exited(
      await cli([
        'audit',
        'verify',
        '--data-dir',
        dataDir,
        '--public-key',
        publicKey,
        '--no-witness',
        '--json',
      ]),
      0,
    );
    const report = JSON.parse(verify.stdout) as { ok: boolean; size: number };
    assert.equal(report.ok, true, verify.stdout);
    assert.equal(report.size, restoredSize);

    // A server on the restored folder, with the same keyd and the certificates kept apart.
    cpSync(tlsCopy, join(dataDir, 'tls'), { recursive: true });
    await s.startServer();

    const entries = await everyAuditEntry();
    for (let i = 0; i < restoredSize; i++) {
      assert.deepEqual(entries[i], original[i], `audit entry ${i}`);
    }
    const leaves = entries.slice(0, checkpoint.size).map((r) => Buffer.from(r.leafHash, 'base64'));
    assert.ok(
      rootFromLeafHashes(leaves).equals(checkpoint.rootHash),
      "the restored log's root at the checkpoint's size is the checkpoint's root",
    );
    const checkpointNow = await s.request('GET', '/v1/audit/checkpoint', { token: auditToken });
    assert.equal(checkpointNow.status, 200, checkpointNow.text);

    // The backup it was restored from: the restored control store holds it as running (it was
    // copied while the backup ran); the server finds it whole at both destinations, reads each copy
    // back, records it done — not interrupted — and verifies it as after any backup.
    const source = await waitFor(
      'the source backup settled and verified',
      async () => {
        const res = await s.request('GET', `/v1/backups/${backupId}`, { token: backupsReadToken });
        if (res.status !== 200) return undefined;
        const view = res.json<{
          outcome: string;
          verification: { result: string } | null;
          destinations: { state: string }[];
        }>();
        return view.verification === null ? undefined : view;
      },
      { timeoutMs: 180_000, intervalMs: 250 },
    );
    assert.equal(source.outcome, 'done');
    assert.deepEqual(
      source.destinations.map((d) => d.state),
      ['checked', 'checked'],
    );
    assert.equal(source.verification?.result, 'passed', JSON.stringify(source));

    for (const tenant of tenants) {
      for (const collection of Object.keys(COLLECTIONS) as CollectionName[]) {
        assert.deepEqual(
          await everyRecord(tenant, collection),
          sorted(tenant.records[collection]),
          `${tenant.name}/${collection}: every record, its version and its data`,
        );
      }
      for (const gone of tenant.deleted) {
        const [collection, id] = gone.split('/') as [string, string];
        const res = await s.request('GET', `/v1/collections/${collection}/records/${id}`, {
          token: tenant.apiKey,
        });
        assert.equal(res.status, 404, `${tenant.name}: a record deleted before the backup stays deleted`);
      }
    }
  }

  it('restored from the folder destination into the destroyed data folder: every record, every audit entry, the root', async () => {
    assert.ok(backupId, 'the backup of the first test');
    await destroy();
    await restoreAndCompare(['--from', folder], {});
  });

  it('destroyed again, restored from the S3 destination: the same', async () => {
    assert.ok(backupId, 'the backup of the first test');
    await destroy();
    await restoreAndCompare(['--from', `s3://${s3.bucket}/${S3_PREFIX}`, '--s3-endpoint', s3.endpoint], {
      AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY,
    });
  });

  it('refuses a tampered backup (a chunk flipped; the manifest edited), at the folder and in the bucket, leaving no folder', async () => {
    assert.ok(backupId, 'the backup of the first test');
    const parent = join(base, 'tampered-restores');
    mkdirSync(parent, { mode: 0o700 });
    const refused = async (from: string[], env: NodeJS.ProcessEnv, why: RegExp) => {
      const to = join(parent, `data-${runs.length}`);
      const run = exited(await cli(['restore', '--keyd-socket', s.keydSocket, ...from, '--to', to], env), 1);
      assert.match(run.stderr, why);
      assert.deepEqual(readdirSync(parent), [], 'no target, no staging folder');
    };

    // At a folder: copies of the backup, one with a chunk flipped, one with its manifest edited.
    const flipped = join(base, 'flipped');
    cpSync(folder, flipped, { recursive: true });
    const chunk = join(flipped, backupId, 'chunk-000000');
    const bytes = readFileSync(chunk);
    bytes[40] = (bytes[40] ?? 0) ^ 0x01;
    writeFileSync(chunk, bytes);
    await refused(
      ['--from', flipped],
      {},
      /TRESOR_ERR_BACKUP_INVALID: backup \S+ refused: chunk 0 does not match its digest/,
    );

    const edited = join(base, 'edited');
    cpSync(folder, edited, { recursive: true });
    const manifestFile = join(edited, backupId, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as {
      tenants: { id: string; state: string }[];
    };
    (manifest.tenants[0] as { state: string }).state = 'closed';
    writeFileSync(manifestFile, JSON.stringify(manifest));
    await refused(
      ['--from', edited],
      {},
      /TRESOR_ERR_BACKUP_INVALID: backup \S+ refused: the manifest is not the one that was signed/,
    );

    // In the bucket: the backup copied under another prefix with its manifest edited.
    const s3Env = {
      AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY,
    };
    const at = (prefix: string) =>
      createS3Destination({
        name: prefix,
        endpoint: s3.endpoint,
        region: 'us-east-1',
        bucket: s3.bucket,
        prefix,
        forcePathStyle: true,
        accessKeyId: S3RVER_ACCESS_KEY_ID,
        secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
      });
    const good = at(S3_PREFIX);
    const bad = at('tampered/');
    for (const key of await good.list(`${backupId}/`)) {
      let object = await good.get(key);
      if (key.endsWith('/manifest.json')) {
        const m = JSON.parse(object.toString('utf8')) as { chunks: { size: number }[] };
        (m.chunks[0] as { size: number }).size += 1;
        object = Buffer.from(JSON.stringify(m));
      }
      await bad.put(key, object);
    }
    await refused(
      ['--from', `s3://${s3.bucket}/tampered/`, '--s3-endpoint', s3.endpoint, '--backup', backupId],
      s3Env,
      /TRESOR_ERR_BACKUP_INVALID: backup \S+ refused: the manifest is not the one that was signed/,
    );
  });

  it('no command printed a secret or a customer value, and no destination holds one', () => {
    assert.ok(runs.length >= 6);
    for (const run of runs) {
      leaksNone(run, secrets);
      assert.equal(`${run.stdout}${run.stderr}`.includes(MARKER), false, 'no customer value in any output');
    }
    let files = 0;
    for (const entry of readdirSync(folder, { recursive: true }) as string[]) {
      const path = join(folder, entry);
      if (!statSync(path).isFile()) continue;
      files += 1;
      assert.equal(readFileSync(path).includes(Buffer.from(MARKER)), false, `${path} holds a customer value`);
    }
    for (const f of s3.storedFiles()) {
      files += 1;
      assert.equal(f.bytes.includes(Buffer.from(MARKER)), false, `${f.path} holds a customer value`);
    }
    assert.ok(files > 4);
  });
});
