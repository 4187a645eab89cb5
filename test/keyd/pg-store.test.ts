// backends: postgres
/**
 * keyd's store on PostgreSQL (src/keyd/pg-store.ts), and two stores — as two keyd instances hold
 * them — on one database: one ops-log chain, one remembered checkpoint tree changed by
 * compare-and-set, encryption budget claimed without overlap and never past the limit.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { type OpsLogDraft, opsLogHash } from '../../src/keyd/ops-log.ts';
import { openPgKeyStore, type PgKeyStore } from '../../src/keyd/pg-store.ts';
import type { TenantKeyRecord, TenantRecord } from '../../src/keyd/store.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';

const AT = '2026-03-01T00:00:00.000Z';

function draft(op: string, extra: Partial<OpsLogDraft> = {}): OpsLogDraft {
  return { at: AT, caller: 'test', op, tenant: null, keyId: null, outcome: 'ok', detail: null, ...extra };
}

function tenantRecord(id: string): TenantRecord {
  return { id, state: 'active', createdAt: AT, destroyAfter: null, destroyedAt: null };
}

function keyRecord(tenant: string, version: number, fill = version): TenantKeyRecord {
  return {
    tenant,
    version,
    keyId: `tk.${tenant}.v${version}`,
    state: 'active',
    rootVersion: 1,
    wrapped: Buffer.alloc(60, fill),
    createdAt: AT,
    rotateAfter: null,
    encryptions: 0,
    reserved: 0,
  };
}

async function sql<R extends pg.QueryResultRow>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

describe('keyd store on PostgreSQL', () => {
  let db: FreshPgDatabase;
  let a: PgKeyStore;
  let b: PgKeyStore;

  before(async () => {
    db = await freshPgDatabase();
    // Two instances opening one fresh database at once migrate it once.
    [a, b] = await Promise.all([openPgKeyStore(db.url), openPgKeyStore(db.url)]);
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  test('its own migration history in schema keyd, applied once; ops_log is append-only', async () => {
    const versions = await sql<{ version: number }>(db.url, 'SELECT version FROM keyd.schema_version');
    assert.deepEqual(versions, [{ version: 1 }, { version: 2 }]);
    await a.appendOps(draft('first'));
    await assert.rejects(sql(db.url, "UPDATE keyd.ops_log SET op = 'x'"), /append-only/);
    await assert.rejects(sql(db.url, 'DELETE FROM keyd.ops_log'), /append-only/);
    await assert.rejects(sql(db.url, 'TRUNCATE keyd.ops_log'), /append-only/);
    const settings = await sql<{ sc: string }>(db.url, "SELECT current_setting('synchronous_commit') AS sc");
    assert.equal(settings[0]?.sc, 'on');
  });

  test('refuses a database that holds Tresor data', async () => {
    const other = await freshPgDatabase();
    try {
      await sql(other.url, 'CREATE SCHEMA tresor');
      await assert.rejects(openPgKeyStore(other.url), {
        code: 'TRESOR_ERR_CONFIG_INVALID',
        message: /holds Tresor's data/,
      });
    } finally {
      await other.drop();
    }
  });

  test('group commit: 500 concurrent entries take a few transactions; they chain by SHA-256', async () => {
    const before = a.batches;
    const entries = await Promise.all(Array.from({ length: 500 }, (_, i) => a.appendOps(draft(`op${i}`))));
    assert.ok(a.batches - before <= 2, `500 entries in ${a.batches - before} transactions`);
    for (let i = 1; i < entries.length; i++) {
      const e = entries[i];
      const prev = entries[i - 1];
      assert.ok(e && prev);
      assert.equal(e.seq, prev.seq + 1);
      assert.equal(e.hash, opsLogHash(prev.hash, e.seq, e));
    }
    const verified = await a.verifyOpsLog();
    assert.equal(verified.ok, true);
  });

  test('concurrent writes through two instances stay ONE chain', async () => {
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      writes.push(a.appendOps(draft(`a${i}`)), b.appendOps(draft(`b${i}`)));
    }
    await a.createTenant(tenantRecord('both'), keyRecord('both', 1), draft('createTenant'));
    for (let i = 0; i < 20; i++) {
      writes.push(a.appendOps(draft(`a-count${i}`), { tenant: 'both', version: 1, count: 1 }));
      writes.push(b.appendOps(draft(`b-count${i}`), { tenant: 'both', version: 1, count: 1 }));
    }
    await Promise.all(writes);
    const [va, vb] = await Promise.all([a.verifyOpsLog(), b.verifyOpsLog()]);
    assert.equal(va.ok, true, JSON.stringify(va));
    assert.deepEqual(vb, va);
    const seqs = await sql<{ n: number; max: number }>(
      db.url,
      'SELECT count(*)::int AS n, max(seq)::int AS max FROM keyd.ops_log',
    );
    assert.equal(seqs[0]?.n, seqs[0]?.max, 'no gap, no duplicate');
    const view = await b.getTenant('both');
    assert.equal(view?.keys[0]?.encryptions, 40, 'both instances’ counts, added');
  });

  test('a refused change rolls back alone; the entries queued with it commit', async () => {
    await a.createTenant(tenantRecord('refused'), keyRecord('refused', 1), draft('createTenant'));
    const queued = a.appendOps(draft('queued'));
    await assert.rejects(
      a.addTenantKeyVersion(keyRecord('refused', 3), draft('addTenantKeyVersion')),
      /not the next version/,
    );
    const entry = await queued;
    const log = await a.readOpsLog(entry.seq, 10);
    assert.deepEqual(
      log.map((e) => e.op),
      ['queued'],
    );
    assert.equal((await a.verifyOpsLog()).ok, true);
  });

  test('two instances rotating the same tenant at once: one version 2, the other refused', async () => {
    await a.createTenant(tenantRecord('race'), keyRecord('race', 1), draft('createTenant'));
    const results = await Promise.allSettled([
      a.addTenantKeyVersion(keyRecord('race', 2, 7), draft('rotate-a')),
      b.addTenantKeyVersion({ ...keyRecord('race', 2, 8), keyId: 'tk.race.v2b' }, draft('rotate-b')),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(results));
    const view = await a.getTenant('race');
    assert.deepEqual(
      view?.keys.map((k) => [k.version, k.state]),
      [
        [1, 'decrypt-only'],
        [2, 'active'],
      ],
    );
  });

  test('two instances replacing the same checkpoint tree: exactly one succeeds', async () => {
    const tree = (size: number, fill: number) => ({
      origin: 'example.com/log',
      size,
      rootHash: Buffer.alloc(32, fill),
      signedAt: AT,
    });
    const first = await Promise.allSettled([
      a.replaceCheckpointTree(undefined, tree(1, 1), draft('sign-a')),
      b.replaceCheckpointTree(undefined, tree(1, 2), draft('sign-b')),
    ]);
    assert.equal(first.filter((r) => r.status === 'fulfilled').length, 1);
    const loser = first.find((r) => r.status === 'rejected');
    assert.equal((loser as PromiseRejectedResult).reason.code, 'TRESOR_ERR_CHECKPOINT_STALE');
    const last = await b.getCheckpointTree();
    assert.ok(last);
    for (let round = 0; round < 10; round++) {
      const from = await a.getCheckpointTree();
      const results = await Promise.allSettled([
        a.replaceCheckpointTree(from, tree(2 + round, 10 + round), draft('sign-a')),
        b.replaceCheckpointTree(from, tree(2 + round, 100 + round), draft('sign-b')),
      ]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}`);
    }
    assert.equal((await a.getCheckpointTree())?.size, 11);
  });

  test('encryption claims from two instances never overlap and never pass the limit', async () => {
    await a.createTenant(tenantRecord('budget'), keyRecord('budget', 1), draft('createTenant'));
    const limit = 5000;
    const claims: { from: number; to: number }[] = [];
    const claimAll = async (store: PgKeyStore) => {
      for (;;) {
        const c = await store.claimEncryptions('budget', 1, 64, limit);
        if (c === undefined) return;
        claims.push(c);
      }
    };
    await Promise.all([claimAll(a), claimAll(b), claimAll(a), claimAll(b)]);
    claims.sort((x, y) => x.from - y.from);
    let next = 0;
    for (const c of claims) {
      assert.equal(c.from, next, 'blocks are contiguous and disjoint');
      assert.ok(c.to > c.from);
      next = c.to;
    }
    assert.equal(next, limit, 'the whole budget, and no more');
    const view = await b.getTenant('budget');
    assert.equal(view?.keys[0]?.reserved, limit);
    // A block given back only when no block was claimed after it.
    await b.returnEncryptions('budget', 1, 4990, 4999);
    assert.equal((await b.getTenant('budget'))?.keys[0]?.reserved, limit);
  });

  test('destroyTenant erases every wrapped version and rewrites the table', async () => {
    await a.createTenant(tenantRecord('gone'), keyRecord('gone', 1, 0xab), draft('createTenant'));
    await a.addTenantKeyVersion(keyRecord('gone', 2, 0xcd), draft('rotate'));
    const before = await sql<{ node: number }>(
      db.url,
      "SELECT pg_relation_filenode('keyd.tenant_keys')::int AS node",
    );
    const ids = await b.destroyTenant('gone', AT, draft('destroy'));
    assert.deepEqual(ids, ['tk.gone.v1', 'tk.gone.v2']);
    const view = await a.getTenant('gone');
    assert.deepEqual(
      view?.keys.map((k) => [k.state, k.wrapped, k.rootVersion]),
      [
        ['destroyed', null, null],
        ['destroyed', null, null],
      ],
    );
    const afterDestroy = await sql<{ node: number }>(
      db.url,
      "SELECT pg_relation_filenode('keyd.tenant_keys')::int AS node",
    );
    assert.notEqual(afterDestroy[0]?.node, before[0]?.node, 'VACUUM FULL wrote the table anew');
  });
});
