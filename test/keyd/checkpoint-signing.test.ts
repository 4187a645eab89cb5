/**
 * keyd signs an audit checkpoint only as a consistent extension of the last one it signed
 * (c2sp.org/tlog-checkpoint: a log never signs two inconsistent checkpoints), under the origin
 * pinned at its first checkpoint, and remembers its tree across restarts. A real key service on a
 * real SQLite store; the trees are RFC 9162 trees built in memory.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ed25519NoteSigner, ed25519VerifierKey, signNote } from '../../src/audit/note.ts';
import { createKeydClient } from '../../src/keyd/client.ts';
import type { Caller, CheckpointSignRequest } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeydServer } from '../../src/keyd/server.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { formatCheckpoint } from '../../src/tlog/checkpoint-text.ts';
import { consistencyProof, InMemoryMerkleTree, leafHash } from '../../src/tlog/merkle.ts';
import { independentOpenCheckpoint } from '../audit/independent-verifier.ts';

const ADMIN: Caller = { id: 'test-admin', role: 'admin' };
const SERVER: Caller = { id: 'mtls:api-node#0011223344556677', role: 'server' };
const ORIGIN = 'tresor.test/audit';

/** A tree of `size` leaves named by `fork`: trees of one name share their leaves. */
function treeOf(size: number, fork = 'main', sharedUpTo = size): InMemoryMerkleTree {
  const tree = new InMemoryMerkleTree();
  for (let i = 0; i < size; i++) {
    tree.append(leafHash(Buffer.from(i < sharedUpTo ? `entry ${i}` : `${fork} entry ${i}`)));
  }
  return tree;
}

function request(tree: InMemoryMerkleTree, fromSize: number, origin = ORIGIN): CheckpointSignRequest {
  const proof = fromSize > 0 && fromSize < tree.size ? consistencyProof(tree, fromSize, tree.size) : [];
  return { origin, size: tree.size, rootHash: tree.root(), fromSize, proof };
}

describe('keyd signs checkpoints only as consistent extensions', () => {
  let base: string;
  let dir: string;
  let keyd: KeydService;
  let verifierKey: string;
  /** keyd's signature of the first checkpoint (size 5 of the main history). */
  let firstSignature: Buffer;

  function open(): KeydService {
    return createKeyService({
      dir,
      provider: new DevFileProvider(dir),
      config: { maintenanceIntervalSeconds: 0 },
    });
  }

  async function refusedWith(req: CheckpointSignRequest, code: string, why: RegExp): Promise<void> {
    await assert.rejects(keyd.call('signCheckpoint', req, SERVER), (err: Error & { code?: string }) => {
      assert.equal(err.code, code, err.message);
      assert.match(err.message, why);
      return true;
    });
    const last = (await keyd.call('opsLog', { from: 1, limit: 1000 }, ADMIN)).entries.at(-1);
    assert.equal(last?.op, 'signCheckpoint');
    assert.equal(last?.outcome, 'error');
    assert.match(last?.detail ?? '', new RegExp(`^${code}`), 'the refusal is in the ops log with its code');
  }

  /** The note keyd's signature makes: the text formatted as keyd formats it, keyd's signature. */
  async function signedNote(req: CheckpointSignRequest): Promise<{ note: string; signature: Buffer }> {
    const { signature } = await keyd.call('signCheckpoint', req, SERVER);
    const key = await keyd.call('publicKey', { purpose: 'audit-checkpoint' }, SERVER);
    const signer = ed25519NoteSigner({ name: ORIGIN, publicKey: key.publicKey }, async () => signature);
    return { note: await signNote(formatCheckpoint({ ...req, extensions: [] }), [signer]), signature };
  }

  before(async () => {
    base = mkdtempSync('/tmp/signing-keyd-checkpoints-');
    dir = join(base, 'keyd');
    mkdirSync(dir, { mode: 0o700 });
    initDevFile(dir);
    keyd = open();
    await keyd.call('unseal', { secret: '' }, ADMIN);
    const key = await keyd.call('publicKey', { purpose: 'audit-checkpoint' }, SERVER);
    verifierKey = ed25519VerifierKey(ORIGIN, key.publicKey);
  });

  after(async () => {
    await keyd.close();
    rmSync(base, { recursive: true, force: true });
  });

  it('signs the first checkpoint, pins its origin, and an independent C2SP verifier accepts the note', async () => {
    assert.deepEqual(await keyd.call('checkpointTree', {}, SERVER), {
      origin: null,
      size: 0,
      rootHash: null,
    });
    const tree = treeOf(5);
    const { note, signature } = await signedNote(request(tree, 0));
    firstSignature = signature;
    const opened = independentOpenCheckpoint(note, verifierKey);
    assert.equal(opened.origin, ORIGIN);
    assert.equal(opened.size, 5n);
    assert.ok(opened.root.equals(tree.root()));
    assert.deepEqual(await keyd.call('checkpointTree', {}, SERVER), {
      origin: ORIGIN,
      size: 5,
      rootHash: tree.root(),
    });
  });

  it('signs a consistent extension with its RFC 9162 proof, and the same checkpoint again', async () => {
    const tree = treeOf(13);
    const { note } = await signedNote(request(tree, 5));
    assert.equal(independentOpenCheckpoint(note, verifierKey).size, 13n);
    // Signing the remembered checkpoint again says nothing new (a lost answer is asked for again).
    const again = await signedNote(request(tree, 13));
    assert.equal(again.note, note, 'Ed25519 is deterministic: the same note');
    assert.equal((await keyd.call('checkpointTree', {}, SERVER)).size, 13);
  });

  it('refuses a fork: the same size with another root', async () => {
    const forked = treeOf(13, 'fork', 9);
    await refusedWith(request(forked, 13), 'TRESOR_ERR_CHECKPOINT_INCONSISTENT', /a fork/);
  });

  it('refuses a shrink: a smaller tree than the last signed', async () => {
    await refusedWith(request(treeOf(8), 13), 'TRESOR_ERR_CHECKPOINT_INCONSISTENT', /shrink/);
  });

  it('refuses a larger tree whose proof does not verify (another history, or a bad proof)', async () => {
    const other = treeOf(20, 'fork', 10);
    const proof = consistencyProof(other, 13, 20);
    await refusedWith(
      { origin: ORIGIN, size: 20, rootHash: other.root(), fromSize: 13, proof },
      'TRESOR_ERR_CHECKPOINT_INCONSISTENT',
      /does not verify/,
    );
    const good = request(treeOf(20), 13);
    const flipped = good.proof.map((h, i) => (i === 0 ? Buffer.from(h).fill(1, 0, 1) : h));
    await refusedWith({ ...good, proof: flipped }, 'TRESOR_ERR_CHECKPOINT_INCONSISTENT', /does not verify/);
    await refusedWith({ ...good, proof: [] }, 'TRESOR_ERR_CHECKPOINT_INCONSISTENT', /does not verify/);
  });

  it('refuses a checkpoint of another log (a foreign origin)', async () => {
    await refusedWith(
      request(treeOf(20), 13, 'other.example/audit'),
      'TRESOR_ERR_CHECKPOINT_ORIGIN_MISMATCH',
      /tresor\.test\/audit/,
    );
  });

  it('refuses a proof from a tree it did not sign last (stale), naming its own size', async () => {
    await refusedWith(request(treeOf(20), 5), 'TRESOR_ERR_CHECKPOINT_STALE', /size 13/);
    assert.equal((await keyd.call('checkpointTree', {}, SERVER)).size, 13, 'nothing recorded by refusals');
  });

  it('of two racing extensions from the same tree to different trees, signs one and refuses the other', async () => {
    const a = treeOf(30, 'a', 13);
    const b = treeOf(31, 'b', 13);
    const results = await Promise.allSettled([
      keyd.call('signCheckpoint', request(a, 13), SERVER),
      keyd.call('signCheckpoint', request(b, 13), SERVER),
    ]);
    const fulfilled = results.filter((r) => r.status === 'fulfilled');
    const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    assert.equal(fulfilled.length, 1);
    assert.equal(rejected.length, 1);
    assert.equal((rejected[0] as PromiseRejectedResult).reason.code, 'TRESOR_ERR_CHECKPOINT_STALE');
    const tree = await keyd.call('checkpointTree', {}, SERVER);
    const winner = tree.size === 30 ? a : b;
    assert.ok(tree.rootHash?.equals(winner.root()));
    // Go on from the winner for the next tests.
    const next = treeOf(40, tree.size === 30 ? 'a' : 'b', 13);
    await keyd.call('signCheckpoint', request(next, tree.size), SERVER);
  });

  it('remembers the last signed tree after a restart, and still refuses a fork of it', async () => {
    const before = await keyd.call('checkpointTree', {}, SERVER);
    await keyd.close();
    keyd = open();
    await keyd.call('unseal', { secret: '' }, ADMIN);
    assert.deepEqual(await keyd.call('checkpointTree', {}, SERVER), before);
    await refusedWith(request(treeOf(40), 40), 'TRESOR_ERR_CHECKPOINT_INCONSISTENT', /a fork/);
  });

  it('resets its tree only for an admin, only to a checkpoint it signed (or to none), and logs it', async () => {
    const main = treeOf(5);
    const back = { origin: ORIGIN, size: 5, rootHash: main.root(), signature: firstSignature };
    await assert.rejects(keyd.call('resetCheckpointTree', back, SERVER), { code: 'TRESOR_ERR_FORBIDDEN' });
    await assert.rejects(
      keyd.call('resetCheckpointTree', { ...back, signature: Buffer.alloc(64, 1) }, ADMIN),
      { code: 'TRESOR_ERR_SIGN_REFUSED' },
    );
    await assert.rejects(keyd.call('resetCheckpointTree', { origin: ORIGIN, size: 5 } as never, ADMIN), {
      code: 'TRESOR_ERR_REQUEST_INVALID',
    });
    // A restored deployment: back to the checkpoint of its backup, then on from there.
    assert.deepEqual(await keyd.call('resetCheckpointTree', back, ADMIN), {
      origin: ORIGIN,
      size: 5,
      rootHash: main.root(),
    });
    const restored = treeOf(9, 'restored', 5);
    await keyd.call('signCheckpoint', request(restored, 5), SERVER);
    const entries = (await keyd.call('opsLog', { from: 1, limit: 1000 }, ADMIN)).entries;
    const reset = entries.filter((e) => e.op === 'resetCheckpointTree' && e.outcome === 'ok');
    assert.equal(reset.length, 1);
    assert.match(reset[0]?.detail ?? '', /reset from tresor\.test\/audit 40 to tresor\.test\/audit 5/);
    // Forgetting the tree lets a new log be pinned.
    await keyd.call('resetCheckpointTree', {}, ADMIN);
    await keyd.call('signCheckpoint', request(treeOf(3), 0, 'new.example/audit'), SERVER);
    assert.equal((await keyd.call('checkpointTree', {}, SERVER)).origin, 'new.example/audit');
    assert.equal((await keyd.verifyOpsLog()).ok, true);
  });
});

describe('keyd refuses an old-style opaque checkpoint request, in process and over the wire', () => {
  it('answers TRESOR_ERR_SIGN_REFUSED naming signCheckpoint', async () => {
    const base = mkdtempSync('/tmp/signing-keyd-opaque-');
    const dir = join(base, 'keyd');
    mkdirSync(dir, { mode: 0o700 });
    initDevFile(dir);
    const keyd = createKeyService({
      dir,
      provider: new DevFileProvider(dir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    const server = createKeydServer({
      service: keyd,
      listen: { kind: 'unix', path: join(base, 'keyd.sock') },
    });
    await server.listen();
    const client = createKeydClient({
      connect: { kind: 'unix', path: join(base, 'keyd.sock') },
      clientName: 'old-server',
    });
    try {
      await keyd.call('unseal', { secret: '' }, ADMIN);
      const text = Buffer.from(
        formatCheckpoint({ origin: ORIGIN, size: 1, rootHash: Buffer.alloc(32), extensions: [] }),
      );
      for (const call of [
        () => keyd.call('sign', { purpose: 'audit-checkpoint', message: text }, SERVER),
        () => client.call('sign', { purpose: 'audit-checkpoint', message: text }),
      ]) {
        await assert.rejects(call(), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'TRESOR_ERR_SIGN_REFUSED');
          assert.match(err.message, /opaque bytes for audit-checkpoint.*signCheckpoint/);
          return true;
        });
      }
      assert.equal((await keyd.call('checkpointTree', {}, SERVER)).size, 0, 'nothing signed, nothing pinned');
    } finally {
      await client.close();
      await server.close();
      await keyd.close();
      rmSync(base, { recursive: true, force: true });
    }
  });
});
