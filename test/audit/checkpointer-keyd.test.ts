/**
 * The checkpointer and a real keyd: the checkpointer asks keyd for the last tree it signed and sends
 * the RFC 9162 consistency proof from it; keyd formats the checkpoint and signs only extensions. A
 * log behind keyd's tree (a restore keyd was not reset for) gets no signature.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CheckpointKeyd, createCheckpointer } from '../../src/audit/checkpointer.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import { ed25519VerifierKey } from '../../src/audit/note.ts';
import type { Caller } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import { independentOpenCheckpoint } from './independent-verifier.ts';
import {
  type AuditLogFixture,
  buildAuditLogFixture,
  FIXTURE_ORIGIN,
  removeAuditLogFixtures,
} from './log-fixture.ts';

const ADMIN: Caller = { id: 'test-admin', role: 'admin' };
const SERVER: Caller = { id: 'unix:tresor-server', role: 'server' };

describe('the checkpointer with a real keyd', () => {
  let base: string;
  let keyd: KeydService;
  let keydSide: CheckpointKeyd;

  before(async () => {
    base = mkdtempSync('/tmp/signing-checkpointer-');
    const dir = join(base, 'keyd');
    mkdirSync(dir, { mode: 0o700 });
    initDevFile(dir);
    keyd = createKeyService({
      dir,
      provider: new DevFileProvider(dir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    await keyd.call('unseal', { secret: '' }, ADMIN);
    keydSide = {
      tree: () => keyd.call('checkpointTree', {}, SERVER),
      sign: async (request) => (await keyd.call('signCheckpoint', request, SERVER)).signature,
    };
  });

  after(async () => {
    await keyd.close();
    removeAuditLogFixtures();
    rmSync(base, { recursive: true, force: true });
  });

  async function checkpointerOver(f: AuditLogFixture) {
    const control = await openSqliteStore<ControlDB>(f.dbPath, controlStoreMigrations);
    const head = { size: f.size };
    const reader = createAuditLogReader(control.db, () => head.size);
    const key = await keyd.call('publicKey', { purpose: 'audit-checkpoint' }, SERVER);
    const checkpointer = createCheckpointer({
      control,
      reader,
      treeHead: () => ({ size: head.size, root: f.root(head.size) }),
      signingKey: async () => key,
      keyd: keydSide,
      origin: FIXTURE_ORIGIN,
      witness: f.witness,
      intervalMs: 60_000,
    });
    return { control, head, checkpointer, verifierKey: ed25519VerifierKey(FIXTURE_ORIGIN, key.publicKey) };
  }

  it('signs the log as it grows, each checkpoint proved consistent with the last keyd signed', async () => {
    const f = await buildAuditLogFixture({ entries: 30, checkpointEvery: 10, witness: false });
    const c = await checkpointerOver(f);
    try {
      await c.checkpointer.start();
      for (const grow of [5, 1, 17]) {
        await f.append(grow);
        c.head.size = f.size;
        const signed = await c.checkpointer.checkpoint();
        assert.ok(signed);
        const opened = independentOpenCheckpoint(signed.note, c.verifierKey);
        assert.equal(opened.size, BigInt(f.size));
        assert.ok(opened.root.equals(f.root(f.size)));
        assert.equal((await keyd.call('checkpointTree', {}, SERVER)).size, f.size);
      }
      assert.equal(c.checkpointer.health().ok, true);
    } finally {
      await c.checkpointer.close();
      await c.control.close();
    }
  });

  it('gets no signature for a log behind the tree keyd signed (a restore keyd was not reset for)', async () => {
    const f = await buildAuditLogFixture({ entries: 12, checkpointEvery: 4, witness: false });
    const c = await checkpointerOver(f);
    try {
      await c.checkpointer.start();
      await f.append(2);
      c.head.size = f.size;
      await assert.rejects(c.checkpointer.checkpoint(), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'TRESOR_ERR_CHECKPOINT_INCONSISTENT');
        assert.match(err.message, /keyd last signed a tree of 53 entries, more than this log's 14/);
        return true;
      });
      assert.equal((await keyd.call('checkpointTree', {}, SERVER)).size, 53, 'keyd kept its tree');
    } finally {
      await c.checkpointer.close();
      await c.control.close();
    }
  });
});
