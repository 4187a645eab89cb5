// backends: postgres
/**
 * Several keyd instances over one PostgreSQL store (keyd.database.url): both serve; a client that
 * knows both keeps every request succeeding when one is killed with SIGKILL; the ops log stays one
 * hash chain after concurrent writes through both; of two instances asked at once to sign
 * inconsistent checkpoints exactly one signs; and the encryption hard limit holds across them.
 *
 * The instances share their root key (a copy of one dev-file keyring), as a deployment's keyd
 * instances share theirs (the same sealed file, passphrase or HSM token).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKeydClient } from '../../src/keyd/client.ts';
import type { Caller, CheckpointSignRequest } from '../../src/keyd/operations.ts';
import { openPgKeyStore, type PgKeyStore } from '../../src/keyd/pg-store.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { consistencyProof, InMemoryMerkleTree, leafHash } from '../../src/tlog/merkle.ts';
import { type KeydProcess, startKeyd } from '../helpers/keyd-process.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';

const ADMIN: Caller = { id: 'test-admin', role: 'admin' };
const SERVER: Caller = { id: 'mtls:api-node#0011223344556677', role: 'server' };
const ORIGIN = 'tresor.test/audit';

/** Two keyd folders with one root key: the second is a copy of the first's keyring. */
function twoFolders(base: string): [string, string] {
  const a = join(base, 'keyd-a');
  const b = join(base, 'keyd-b');
  mkdirSync(a, { recursive: true, mode: 0o700 });
  initDevFile(a);
  cpSync(a, b, { recursive: true });
  return [a, b];
}

function treeOfLeaves(leaves: readonly string[]): InMemoryMerkleTree {
  const tree = new InMemoryMerkleTree();
  for (const leaf of leaves) tree.append(leafHash(Buffer.from(leaf)));
  return tree;
}

function request(tree: InMemoryMerkleTree, fromSize: number): CheckpointSignRequest {
  const proof = fromSize > 0 && fromSize < tree.size ? consistencyProof(tree, fromSize, tree.size) : [];
  return { origin: ORIGIN, size: tree.size, rootHash: tree.root(), fromSize, proof };
}

describe('two keyd services in one process, each with its own connections to one store', () => {
  let base: string;
  let db: FreshPgDatabase;
  const stores: PgKeyStore[] = [];
  const services: KeydService[] = [];

  async function open(dir: string, refuseAt: number): Promise<KeydService> {
    const store = await openPgKeyStore(db.url);
    stores.push(store);
    const service = createKeyService({
      dir,
      store,
      provider: new DevFileProvider(dir),
      config: { maintenanceIntervalSeconds: 0, refuseAtEncryptions: refuseAt, rotateAtEncryptions: 2 ** 30 },
    });
    services.push(service);
    await service.call('unseal', { secret: '' }, ADMIN);
    return service;
  }

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'keyd-instances-'));
    db = await freshPgDatabase();
  });

  after(async () => {
    for (const s of services) await s.close();
    for (const s of stores) await s.close();
    await db?.drop();
    rmSync(base, { recursive: true, force: true });
  });

  test('of two instances signing inconsistent checkpoints at once, exactly one signs', async () => {
    const [dirA, dirB] = twoFolders(join(base, 'checkpoints'));
    const [a, b] = [await open(dirA, 1000), await open(dirB, 1000)];
    // The signed history's leaves; each round both instances are asked to extend it with leaves of
    // their own (two checkpoints that are not consistent with each other), at the same moment.
    let signed: string[] = [];
    for (let round = 0; round < 8; round++) {
      const forkA = [...signed, `a${round} x`, `a${round} y`];
      const forkB = [...signed, `b${round} x`, `b${round} y`];
      const results = await Promise.allSettled([
        a.call('signCheckpoint', request(treeOfLeaves(forkA), signed.length), SERVER),
        b.call('signCheckpoint', request(treeOfLeaves(forkB), signed.length), SERVER),
      ]);
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      assert.equal(ok, 1, `round ${round}: ${JSON.stringify(results.map((r) => r.status))}`);
      const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.match(loser.reason.code, /^TRESOR_ERR_CHECKPOINT_/);
      signed = results[0]?.status === 'fulfilled' ? forkA : forkB;
      const tree = await b.call('checkpointTree', {}, SERVER);
      assert.equal(tree.size, signed.length);
      assert.ok(tree.rootHash?.equals(treeOfLeaves(signed).root()), 'the remembered tree is the signed one');
    }
    assert.equal((await a.verifyOpsLog()).ok, true);
  });

  test('two instances creating one tenant key at once: one creates it, the other answers EXISTS', async () => {
    const [dirA, dirB] = twoFolders(join(base, 'create-race'));
    const [a, b] = [await open(dirA, 1000), await open(dirB, 1000)];
    for (let round = 0; round < 10; round++) {
      const tenant = `race${round}`;
      const results = await Promise.allSettled([
        a.call('createTenantKey', { tenant }, SERVER),
        b.call('createTenantKey', { tenant }, SERVER),
      ]);
      const codes = results.map((r) =>
        r.status === 'fulfilled' ? 'ok' : (r.reason as { code?: string }).code,
      );
      assert.deepEqual(codes.sort(), ['TRESOR_ERR_TENANT_KEY_EXISTS', 'ok'], `round ${round}`);
      assert.equal((await a.call('tenantKeyStatus', { tenant }, SERVER)).versions.length, 1);
    }
    assert.equal((await a.verifyOpsLog()).ok, true);
  });

  test('one request id sent to two instances at once: one rotation, both answer it', async () => {
    const [dirA, dirB] = twoFolders(join(base, 'rotate-race'));
    const [a, b] = [await open(dirA, 1000), await open(dirB, 1000)];
    for (let round = 0; round < 10; round++) {
      const tenant = `rot${round}`;
      await a.call('createTenantKey', { tenant }, SERVER);
      const requestId = `rotate-race-request-${round}`;
      const [fromA, fromB] = await Promise.all([
        a.call('rotateTenantKey', { tenant, requestId }, SERVER),
        b.call('rotateTenantKey', { tenant, requestId }, SERVER),
      ]);
      assert.equal(fromA.keyId, fromB.keyId, `round ${round}: the same version`);
      const status = await b.call('tenantKeyStatus', { tenant }, SERVER);
      assert.equal(status.versions.length, 2, `round ${round}: rotated once`);
    }
    assert.equal((await a.verifyOpsLog()).ok, true);
  });

  test('the encryption hard limit holds across two instances: never more wraps than the limit', async () => {
    const [dirA, dirB] = twoFolders(join(base, 'budget'));
    const limit = 300;
    const [a, b] = [await open(dirA, limit), await open(dirB, limit)];
    await a.call('createTenantKey', { tenant: 'acme' }, ADMIN);
    let wrapped = 0;
    const refusals: string[] = [];
    const drain = async (service: KeydService) => {
      for (;;) {
        try {
          await service.call('generateDataKey', { tenant: 'acme', purpose: 'data' }, SERVER);
          wrapped += 1;
        } catch (err) {
          refusals.push((err as { code?: string }).code ?? String(err));
          return;
        }
      }
    };
    await Promise.all([drain(a), drain(b), drain(a), drain(b)]);
    assert.deepEqual([...new Set(refusals)], ['TRESOR_ERR_KEY_EXHAUSTED']);
    assert.ok(wrapped <= limit, `${wrapped} wraps under a limit of ${limit}`);
    assert.equal(wrapped, limit, 'each instance used its blocks up before it was refused');
    const status = await b.call('tenantKeyStatus', { tenant: 'acme' }, ADMIN);
    assert.equal(status.versions[0]?.encryptions, limit, 'every wrap counted in the store');
  });
});

describe('two keyd processes on one PostgreSQL store', () => {
  let base: string;
  let db: FreshPgDatabase;
  let a: KeydProcess | undefined;
  let b: KeydProcess | undefined;
  let sockets: [string, string];

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'keyd-procs-'));
    db = await freshPgDatabase();
    const [dirA, dirB] = twoFolders(base);
    sockets = [join(dirA, 'keyd.sock'), join(dirB, 'keyd.sock')];
    const env = { TRESOR_KEYD_DATABASE_URL: db.url };
    const args = (dir: string) => ['--provider', 'dev-file', '--dir', dir, '--insecure-dev-key-file'];
    [a, b] = await Promise.all([
      startKeyd(args(dirA), { kind: 'unix', path: sockets[0] }, env),
      startKeyd(args(dirB), { kind: 'unix', path: sockets[1] }, env),
    ]);
  });

  after(async () => {
    await a?.stop();
    await b?.stop();
    await db?.drop();
    rmSync(base, { recursive: true, force: true });
  });

  test('both serve, writes through both stay one chain, and SIGKILL of one fails no request', async () => {
    assert.ok(a && b);
    const ca = a.client();
    const cb = b.client();
    // Both serve, over one store: a tenant made through one is there through the other.
    await ca.call('createTenantKey', { tenant: 'acme' });
    const made = await cb.call('generateDataKey', { tenant: 'acme', purpose: 'data' });
    const opened = await ca.call('unwrapDataKey', {
      tenant: 'acme',
      purpose: 'data',
      keyId: made.keyId,
      wrapped: made.wrapped,
    });
    assert.ok(opened.key.equals(made.key));

    // Concurrent writes through both instances: tenants, rotations, data keys.
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 6; i++) {
      writes.push((i % 2 ? ca : cb).call('createTenantKey', { tenant: `t${i}` }));
    }
    await Promise.all(writes);
    writes.length = 0;
    for (let i = 0; i < 6; i++) {
      writes.push((i % 2 ? cb : ca).call('rotateTenantKey', { tenant: `t${i}` }));
      for (let j = 0; j < 20; j++) {
        writes.push((j % 2 ? ca : cb).call('generateDataKey', { tenant: `t${i}`, purpose: 'data' }));
      }
    }
    await Promise.all(writes);

    // A client configured with both, as a server node is; a stream of requests; kill -9 one.
    const client = createKeydClient({
      connect: [
        { kind: 'unix', path: sockets[0] },
        { kind: 'unix', path: sockets[1] },
      ],
      clientName: 'test-failover',
      retries: 2,
      timeoutMs: 10_000,
      backoff: { baseMs: 20, maxMs: 200 },
    });
    let succeeded = 0;
    const failures: string[] = [];
    let stop = false;
    const worker = async () => {
      while (!stop) {
        try {
          const key = await client.call('generateDataKey', { tenant: 'acme', purpose: 'data' });
          const back = await client.call('unwrapDataKey', {
            tenant: 'acme',
            purpose: 'data',
            keyId: key.keyId,
            wrapped: key.wrapped,
          });
          assert.ok(back.key.equals(key.key));
          succeeded += 2;
        } catch (err) {
          failures.push((err as { code?: string }).code ?? 'unknown');
        }
      }
    };
    const workers = [worker(), worker(), worker(), worker()];
    // Let the stream run on the preferred instance (the first), then kill it mid-stream.
    await waitFor(() => succeeded >= 200);
    const beforeKill = succeeded;
    await a.kill9();
    a = undefined;
    await waitFor(() => succeeded >= beforeKill + 200);
    stop = true;
    await Promise.all(workers);
    await client.close();
    assert.deepEqual(failures, [], 'every request succeeded');
    assert.ok(succeeded >= beforeKill + 200);

    // The ops log is one chain, written by both processes, the killed one's last batch included.
    const store = await openPgKeyStore(db.url);
    try {
      const verified = await store.verifyOpsLog();
      assert.equal(verified.ok, true, JSON.stringify(verified));
      const callers = new Set((await store.readOpsLog(1, 100_000)).map((e) => e.op));
      assert.ok(callers.has('rotateTenantKey') && callers.has('generateDataKey'));
    } finally {
      await store.close();
    }
    // The survivor still serves.
    assert.equal((await cb.call('status', {})).sealed, false);
  });
});

/** Polls `done` every 20 ms, for 120 s at most (then fails: nothing waits for ever). */
async function waitFor(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the request stream');
    await new Promise((r) => setTimeout(r, 20));
  }
}
