// backends: postgres
/**
 * A Tresor deployment on PostgreSQL end to end (`database.url`): the real `tresor server` and keyd
 * processes against a fresh database of the machine's PostgreSQL, over HTTPS, proving there the
 * invariants the SQLite suite proves on files:
 *
 * - records round-trip, and `tresor audit verify` (TRESOR_DATABASE_URL) verifies the live log;
 *   `tresor audit export` writes it to a file that verifies offline;
 * - no plaintext at rest: planted field values appear neither in `pg_dump` of the database nor in
 *   any file of the cluster's data directory (tables, WAL) nor the data folder — while a value the
 *   control store keeps in clear (the tenant's name) IS found there, so the search sees the files;
 * - kill -9 of the server under writes loses no acknowledged write;
 * - a second server process on the same database does not sequence while the first holds the
 *   sequencer's advisory lock (its requests' events are moved by the first), and takes over
 *   when the first dies;
 * - tenants are apart: another tenant's key never reads, changes, finds or lists a tenant's records
 *   over HTTPS, and the server's tenant stores read and write each tenant with its own schema as
 *   the whole search_path;
 * - (Tresor's own backups on PostgreSQL: e2e/pg-backup-drill);
 * - closing a tenant (no grace) destroys its key and drops its schema;
 * - an audit_log row changed behind the server's back (psql, triggers off) fails `tresor audit verify`.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql as kysql } from 'kysely';
import pg from 'pg';
import { resolveServerConfig } from '../../src/config/server-config.ts';
import { startTresorServer, type TresorServer } from '../../src/server/tresor-server.ts';
import { BLOCK_OF_INDEX, type BlockRow, blockWith, leafOf, REWRITE_BLOCK } from '../helpers/audit-leaves.ts';
import { operatorAdmin, operatorToken } from '../helpers/console.ts';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';
import { onDatabase } from '../helpers/stack-sql.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * A program run without blocking this process (execFileSync would: while it runs, the HTTPS agent
 * cannot see the server close an idle kept-alive socket, and the next request would be sent on it).
 */
function run(
  file: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ status: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        env: { ...process.env, NO_COLOR: '1', ...env },
        encoding: 'buffer',
        timeout: 120_000,
        maxBuffer: 256 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const status = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ status, stdout, stderr: stderr.toString('utf8') });
      },
    );
  });
}

/** `tresor …`, its output as text. */
async function tresorAsync(args: string[], env: Record<string, string>) {
  const r = await run(process.execPath, [TRESOR_BIN, ...args], env);
  return { status: r.status, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
}

const MARKER = `pgplain${randomBytes(8).toString('hex')}`;
const TENANT_NAME = `PgTenant${randomBytes(6).toString('hex')}`;

describe('a deployment on PostgreSQL', () => {
  let s: TresorStack;
  let url: string;
  let db: pg.Client;
  let apiKey: string;
  let tenant: string;

  const sql = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []) =>
    (await db.query<R>(text, values)).rows;
  const verifierKey = async () => (await s.request('GET', '/v1/audit/public-key')).text.trim();
  // The CLI is given the URL with a password (the machine's PostgreSQL trusts local connections, so
  // it is never asked for): no output of `tresor audit verify` may repeat it.
  const PASSWORD = `pw${randomBytes(8).toString('hex')}`;
  const withPassword = () => {
    const u = new URL(url);
    u.password = PASSWORD;
    return u.toString();
  };
  const auditVerify = async () => {
    const run = await tresorAsync(
      ['audit', 'verify', '--data-dir', s.dataDir, '--public-key', await verifierKey(), '--json'],
      { TRESOR_DATABASE_URL: withPassword() },
    );
    assert.ok(!`${run.stdout}${run.stderr}`.includes(PASSWORD), 'tresor audit verify printed the password');
    return run;
  };
  const write = (n: number, token = apiKey) =>
    s.request('POST', '/v1/collections/people/records', {
      token,
      body: { email: `${MARKER}-${n}@example.test`, note: `${MARKER} note ${n}` },
    });

  before(async () => {
    s = await startTresorStack({
      logLevel: 'warn',
      backend: 'postgres',
      env: { TRESOR_CLOSE_GRACE_DAYS: '0' },
    });
    assert.equal(s.database.kind, 'postgres');
    url = s.database.kind === 'postgres' ? s.database.url : '';
    db = new pg.Client({ connectionString: url });
    await db.connect();
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: TENANT_NAME },
    });
    assert.equal(created.status, 201, created.text);
    ({ id: tenant, apiKey } = created.json<{ id: string; apiKey: string }>());
    const put = await s.request('PUT', '/v1/collections/people', {
      token: apiKey,
      body: {
        fields: {
          email: { type: 'string', classification: 'personal', required: true, searchable: true },
          note: { type: 'string', classification: 'personal' },
        },
      },
    });
    assert.equal(put.status, 201, put.text);
  });
  after(async () => {
    await db?.end();
    await s?.stop();
  });

  it('serves records from the tenant’s schema and verifies the live log with tresor audit verify', async () => {
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      const res = await write(n);
      assert.equal(res.status, 201, res.text);
      ids.push(res.json<{ id: string }>().id);
    }
    const read = await s.request('GET', `/v1/collections/people/records/${ids[2]}`, { token: apiKey });
    assert.equal(read.status, 200, read.text);
    assert.equal(read.json<{ data: { email: string } }>().data.email, `${MARKER}-2@example.test`);
    const found = await s.request('POST', '/v1/collections/people/records/search', {
      token: apiKey,
      body: { where: { email: `${MARKER}-3@example.test` } },
    });
    assert.equal(found.json<{ records: unknown[] }>().records.length, 1, found.text);
    const schemas = await sql('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [
      `tenant_${tenant}`,
    ]);
    assert.equal(schemas.length, 1, 'the tenant has its own schema');
    await waitFor('the records’ events in the log', async () => {
      const rows = await sql<{ n: string }>(
        'SELECT count(*)::text AS n FROM tresor.audit_tenant_entries e JOIN tresor.audit_tenants t ON t.ref = e.ref WHERE t.tenant = $1',
        [tenant],
      );
      return Number(rows[0]?.n) >= 5 ? true : undefined;
    });
    const verified = await auditVerify();
    assert.equal(verified.status, 0, verified.stdout + verified.stderr);
    const report = JSON.parse(verified.stdout) as { ok: boolean; size: number };
    assert.equal(report.ok, true);
    assert.ok(report.size > 5);

    // The export reads its own snapshot of the PostgreSQL log; the file verifies offline.
    const file = join(s.dataDir, 'pg-audit.jsonl');
    const exported = await tresorAsync(
      ['audit', 'export', '--data-dir', s.dataDir, '--out', file, '--plaintext', '--json'],
      { TRESOR_DATABASE_URL: withPassword() },
    );
    assert.equal(exported.status, 0, exported.stderr);
    assert.ok(
      !`${exported.stdout}${exported.stderr}`.includes(PASSWORD),
      'tresor audit export printed the password',
    );
    assert.ok(JSON.parse(exported.stdout).entries >= report.size);
    const written = readFileSync(file, 'utf8');
    assert.ok(
      !written.includes(PASSWORD) && !written.includes(MARKER),
      'the export holds a secret or a value',
    );
    const offline = await tresorAsync(
      ['audit', 'verify', '--export', file, '--public-key', await verifierKey()],
      {},
    );
    assert.equal(offline.status, 0, offline.stdout + offline.stderr);
  });

  it('keeps tenants apart: another tenant’s key never reads, finds or lists these records; each tenant’s SQL sees its own schema only', async () => {
    // Tenant B, with a collection of the same name and records of its own.
    const madeB = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: `Other${randomBytes(4).toString('hex')}` },
    });
    assert.equal(madeB.status, 201, madeB.text);
    const b = madeB.json<{ id: string; apiKey: string }>();
    const putB = await s.request('PUT', '/v1/collections/people', {
      token: b.apiKey,
      body: {
        fields: {
          email: { type: 'string', classification: 'personal', required: true, searchable: true },
          note: { type: 'string', classification: 'personal' },
        },
      },
    });
    assert.equal(putB.status, 201, putB.text);
    const idsB: string[] = [];
    for (let n = 0; n < 3; n++) {
      const res = await write(500 + n, b.apiKey);
      assert.equal(res.status, 201, res.text);
      idsB.push(res.json<{ id: string }>().id);
    }
    const mineA = await s.request('POST', '/v1/collections/people/records', {
      token: apiKey,
      body: { email: `${MARKER}-onlya@example.test` },
    });
    assert.equal(mineA.status, 201, mineA.text);
    const idA = mineA.json<{ id: string }>().id;

    // Over HTTPS, each key reaches its own tenant only, under the same collection name and ids.
    for (const [token, theirs, own] of [
      [apiKey, idsB, idA],
      [b.apiKey, [idA], idsB[0] as string],
    ] as const) {
      for (const id of theirs) {
        const read = await s.request('GET', `/v1/collections/people/records/${id}`, { token });
        assert.equal(read.status, 404, `another tenant's record read: ${read.text}`);
        const change = await s.request('PATCH', `/v1/collections/people/records/${id}`, {
          token,
          headers: { 'if-match': '"1"' },
          body: { note: 'overwritten' },
        });
        assert.equal(change.status, 404, `another tenant's record changed: ${change.text}`);
        const gone = await s.request('DELETE', `/v1/collections/people/records/${id}`, { token });
        assert.equal(gone.status, 404, `another tenant's record deleted: ${gone.text}`);
      }
      const ownRead = await s.request('GET', `/v1/collections/people/records/${own}`, { token });
      assert.equal(ownRead.status, 200, ownRead.text);
    }
    const searchedB = await s.request('POST', '/v1/collections/people/records/search', {
      token: apiKey,
      body: { where: { email: `${MARKER}-501@example.test` } },
    });
    assert.equal(searchedB.status, 200, searchedB.text);
    assert.deepEqual(searchedB.json<{ records: unknown[] }>().records, [], 'B’s record found with A’s key');
    const foundByB = await s.request('POST', '/v1/collections/people/records/search', {
      token: b.apiKey,
      body: { where: { email: `${MARKER}-501@example.test` } },
    });
    assert.equal(foundByB.json<{ records: unknown[] }>().records.length, 1, foundByB.text);
    const listed = async (token: string) => {
      const ids: string[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 100; page++) {
        const res = await s.request(
          'GET',
          `/v1/collections/people/records?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
          { token },
        );
        assert.equal(res.status, 200, res.text);
        const body = res.json<{ records: { id: string }[]; nextCursor: string | null }>();
        ids.push(...body.records.map((r) => r.id));
        cursor = body.nextCursor;
        if (cursor === null) return ids;
      }
      assert.fail('the listing did not end');
    };
    const listA = await listed(apiKey);
    assert.ok(listA.includes(idA));
    assert.deepEqual(
      listA.filter((id) => idsB.includes(id)),
      [],
      'A’s listing holds B’s records',
    );
    assert.deepEqual((await listed(b.apiKey)).sort(), [...idsB].sort(), 'B lists exactly its own records');

    // At the SQL level: the tenant stores of a server on this database (the server's own registry,
    // in this process) read and write each tenant with that tenant's schema as the whole search_path.
    const otherDir = mkdtempSync(join(tmpdir(), 'pgserver-isolation-'));
    let probe: TresorServer | undefined;
    try {
      probe = await startTresorServer(
        resolveServerConfig(
          { dataDir: otherDir },
          {
            TRESOR_DATABASE_URL: url,
            TRESOR_KEYD_SOCKET: s.keydSocket,
            TRESOR_PORT: '0',
            TRESOR_HOST: '127.0.0.1',
            TRESOR_LOG_LEVEL: 'warn',
          },
        ),
        { jobIntervalMs: 0 },
      );
      for (const [id, count] of [
        [tenant, listA.length],
        [b.id, idsB.length],
      ] as const) {
        const store = await probe.tenantStores.open(id);
        const schema = `tenant_${id}`;
        // current_schemas(false): the schemas an unqualified name is looked up in (pg_catalog aside).
        const read = await kysql<{ path: string; n: string }>`
          SELECT array_to_string(current_schemas(false), ',') AS path, (SELECT count(*) FROM records)::text AS n`.execute(
          store.db,
        );
        assert.equal(read.rows[0]?.path, schema, 'a read’s search_path');
        assert.equal(Number(read.rows[0]?.n), count, 'an unqualified read sees the tenant’s own records');
        const written = await store.write(
          async (trx) =>
            (
              await kysql<{
                path: string;
              }>`SELECT array_to_string(current_schemas(false), ',') AS path`.execute(trx)
            ).rows[0]?.path,
        );
        assert.equal(written, schema, 'a write’s search_path');
      }
    } finally {
      await probe?.close();
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('writes no planted value in clear: not in pg_dump, not in the cluster’s files or WAL, not in the data folder', async () => {
    await db.query('CHECKPOINT');
    const dumped = await run('pg_dump', ['--no-owner', url]);
    assert.equal(dumped.status, 0, dumped.stderr);
    const dump = dumped.stdout;
    assert.ok(dump.includes(TENANT_NAME), 'pg_dump holds the control store (the search sees it)');
    assert.ok(!dump.includes(MARKER), 'a planted field value is in pg_dump');
    const dataDirectory = (await sql<{ d: string }>('SELECT current_setting($1) AS d', ['data_directory']))[0]
      ?.d as string;
    const grep = async (pattern: string, dir: string) => {
      const found = await run('grep', ['-r', '-l', '-a', '-F', pattern, dir]);
      if (found.status === 1) return []; // grep: nothing found
      if (found.status === 2) {
        // Files gone while grep walked the cluster (another test file's database dropped, a WAL
        // segment recycled) are not this test's concern; any other error is.
        const errors = found.stderr
          .split('\n')
          .filter((l) => l !== '' && !/No such file or directory$/.test(l));
        assert.deepEqual(errors, [], found.stderr);
      } else assert.equal(found.status, 0, found.stderr);
      return found.stdout.toString('utf8').trim().split('\n').filter(Boolean);
    };
    assert.ok(
      (await grep(TENANT_NAME, dataDirectory)).length > 0,
      'the cluster’s files hold the tenant name',
    );
    assert.deepEqual(
      await grep(MARKER, dataDirectory),
      [],
      'a planted value is in the cluster’s files or WAL',
    );
    assert.deepEqual(await grep(MARKER, s.dataDir), [], 'a planted value is in the data folder');
  });

  it('loses no acknowledged write when the server is killed with SIGKILL under writes', async () => {
    const acked = new Map<string, number>();
    let killing = false;
    let enough: () => void = () => {};
    const reached = new Promise<void>((resolve) => {
      enough = resolve;
    });
    const writer = async (w: number) => {
      for (let i = 0; ; i++) {
        const n = 1000 * (w + 1) + i;
        let res: Awaited<ReturnType<typeof write>>;
        try {
          res = await write(n);
        } catch (error) {
          if (killing) return;
          throw error;
        }
        if (res.status !== 201) {
          if (killing) return;
          assert.fail(`write ${n}: ${res.status} ${res.text}`);
        }
        acked.set(res.json<{ id: string }>().id, n);
        if (acked.size >= 150) enough();
      }
    };
    const writers = Array.from({ length: 8 }, (_, w) => writer(w));
    await reached;
    killing = true;
    await s.kill9Server();
    await Promise.all(writers);
    await s.startServer();
    for (const [id, n] of acked) {
      const res = await s.request('GET', `/v1/collections/people/records/${id}`, { token: apiKey });
      assert.equal(res.status, 200, `acknowledged record ${n}: ${res.text}`);
      assert.equal(res.json<{ data: { email: string } }>().data.email, `${MARKER}-${n}@example.test`);
    }
  });

  it('has one sequencer per database: a second server is a standby until the first dies', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'pgserver-standby-'));
    let standby: TresorServer | undefined;
    try {
      standby = await startTresorServer(
        resolveServerConfig(
          { dataDir: otherDir },
          {
            TRESOR_DATABASE_URL: url,
            TRESOR_KEYD_SOCKET: s.keydSocket,
            TRESOR_PORT: '0',
            TRESOR_HOST: '127.0.0.1',
            TRESOR_LOG_LEVEL: 'warn',
          },
        ),
        { jobIntervalMs: 0 },
      );
      const holders = () =>
        sql<{ pid: number }>(
          "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = $1",
          [0x54727372],
        );
      assert.equal((await holders()).length, 1, 'one lease holder');
      // A write through the standby: its event is committed there and moved by the first server.
      const before = standby.audit.sequencer.stats().passes;
      const res = await standby.http.app.inject({
        method: 'POST',
        url: '/v1/collections/people/records',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ email: `${MARKER}-standby@example.test` }),
      });
      assert.equal(res.statusCode, 201, res.body);
      const seqOf = async () =>
        Number(
          (
            await sql<{ n: string }>(
              `SELECT coalesce(max(seq), 0)::text AS n FROM ${pg.escapeIdentifier(`tenant_${tenant}`)}.audit_events`,
            )
          )[0]?.n,
        );
      const written = await seqOf();
      await waitFor('the first server moving the standby’s event', async () => {
        const cursor = await sql<{ seq: string }>(
          'SELECT seq::text FROM tresor.audit_cursors WHERE source = $1',
          [tenant],
        );
        return Number(cursor[0]?.seq ?? 0) >= written ? true : undefined;
      });
      assert.equal(standby.audit.sequencer.stats().passes, before, 'the standby sequenced nothing');

      // The first server dies: the standby takes the lease and sequences from then on.
      await s.kill9Server();
      await waitFor(
        'the standby taking the sequencer over',
        async () => {
          await standby?.http.app.inject({
            method: 'POST',
            url: '/v1/collections/people/records',
            headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
            payload: JSON.stringify({ email: `${MARKER}-takeover@example.test` }),
          });
          return (standby?.audit.sequencer.stats().passes ?? 0) > before ? true : undefined;
        },
        { timeoutMs: 30_000 },
      );
      assert.equal((await holders()).length, 1, 'still one lease holder');
    } finally {
      await standby?.close();
      rmSync(otherDir, { recursive: true, force: true });
      if (s.serverProcess === undefined) await s.startServer();
    }
    const verified = await auditVerify();
    assert.equal(verified.status, 0, verified.stdout + verified.stderr);
  });

  it('drops the tenant’s schema when its contract ends (key destroyed first)', async () => {
    const admin = await operatorAdmin(s);
    const other = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Closing' },
    });
    assert.equal(other.status, 201, other.text);
    const closing = other.json<{ id: string; apiKey: string }>();
    const put = await s.request('PUT', '/v1/collections/people', {
      token: closing.apiKey,
      body: {
        fields: {
          email: { type: 'string', classification: 'personal', required: true },
          note: { type: 'string', classification: 'personal' },
        },
      },
    });
    assert.equal(put.status, 201, put.text);
    const written = await write(1, closing.apiKey);
    assert.equal(written.status, 201, written.text);
    const schema = `tenant_${closing.id}`;
    assert.equal(
      (await sql('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema])).length,
      1,
    );
    const closed = await admin.request('POST', `/v1/tenants/${closing.id}/close`, {
      reason: 'contract ended',
    });
    assert.equal(closed.status, 200, closed.text);
    const certificate = closed.json<{ certificate: { keyIdsDestroyed: string[] } }>().certificate;
    assert.ok(certificate.keyIdsDestroyed.length >= 1, 'the key was destroyed');
    assert.deepEqual(
      await sql('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema]),
      [],
      'the tenant’s schema is dropped',
    );
  });

  it('fails tresor audit verify once a committed entry is changed with psql', async () => {
    const verified = await auditVerify();
    assert.equal(verified.status, 0, verified.stdout + verified.stderr);
    // An attacker with the database: triggers off for the session, one entry's actor rewritten.
    // (The leaves are stored in compressed blocks: the block is read, the leaf changed, the block written back.)
    const [rows] = await onDatabase(url, [{ text: BLOCK_OF_INDEX, params: [2] }]);
    const row = rows?.[0] as unknown as BlockRow;
    const leaf = leafOf(row, 2);
    assert.match(leaf, /"outcome":"success"/);
    const [, changed] = await onDatabase(url, [
      { text: 'SET session_replication_role = replica' },
      {
        text: REWRITE_BLOCK,
        params: [blockWith(row, 2, leaf.replace('"outcome":"success"', '"outcome":"failure"')), row.idx],
      },
    ]);
    assert.equal(changed?.length, 1, 'one entry changed');
    const bad = await auditVerify();
    assert.equal(bad.status, 1, bad.stdout + bad.stderr);
    const report = JSON.parse(bad.stdout) as { ok: boolean; firstBadIndex: number };
    assert.equal(report.ok, false);
    assert.equal(report.firstBadIndex, 2);
  });
});
