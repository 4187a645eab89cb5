// backends: sqlite postgres
/**
 * The audit log's origin is its identity (C2SP tlog-checkpoint), fixed once per deployment in the
 * control store: generated (or taken from config) at the first start, kept afterwards, refused when
 * the config later names another; a store with checkpoints from before keeps their origin. The
 * checkpointer signs under the origin as key name and still accepts the witness's older
 * checkpoints signed under keyd's label. Real SQLite control stores throughout.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { formatCheckpoint, verifyCheckpoint } from '../../src/audit/checkpoint.ts';
import { createCheckpointer } from '../../src/audit/checkpointer.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import { fixAuditOrigin, generatedAuditOrigin } from '../../src/audit/log-identity.ts';
import { ed25519VerifierKey, parseNote, parseVerifierKey } from '../../src/audit/note.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import { openTestControlStore } from '../helpers/control-store.ts';
import {
  buildAuditLogFixture,
  FIXTURE_KEY_NAME,
  FIXTURE_ORIGIN,
  removeAuditLogFixtures,
} from './log-fixture.ts';

const now = () => new Date('2026-11-02T09:00:00.000Z');
const ORIGIN_FORMAT = /^[^\s+]+\/audit\/[0-9a-f]{8}$/;

after(removeAuditLogFixtures);

describe('generatedAuditOrigin', () => {
  it('is <host>/audit/<8 hex>, a valid key name, unique by its random part', () => {
    const a = generatedAuditOrigin('vault.example.com');
    assert.match(a, /^vault\.example\.com\/audit\/[0-9a-f]{8}$/);
    assert.notEqual(generatedAuditOrigin('vault.example.com'), a);
    assert.match(generatedAuditOrigin(undefined), /^tresor\/audit\/[0-9a-f]{8}$/);
    assert.match(generatedAuditOrigin('bad host+name'), /^tresor\/audit\/[0-9a-f]{8}$/);
  });
});

describe('fixAuditOrigin', () => {
  it('generates the origin at the first start on an empty store and keeps it afterwards', async () => {
    const t = await openTestControlStore('origin');
    try {
      const generate = () => generatedAuditOrigin(undefined);
      const first = await fixAuditOrigin(t.control, { generate, now });
      assert.match(first, ORIGIN_FORMAT);
      assert.equal(await fixAuditOrigin(t.control, { generate, now }), first, 'never generated twice');
      assert.equal(await fixAuditOrigin(t.control, { configured: first, generate, now }), first);
      await assert.rejects(
        fixAuditOrigin(t.control, { configured: 'tresor.example/audit', generate, now }),
        (err: Error & { code?: string }) =>
          err.code === 'TRESOR_ERR_CONFIG_INVALID' &&
          err.message.includes(`this deployment's audit log is ${first}`),
      );
      const row = await t.control.db.selectFrom('audit_log_identity').selectAll().execute();
      assert.deepEqual(row, [{ id: 1, origin: first, fixed_at: now().toISOString() }]);
    } finally {
      await t.close();
    }
  });

  it('takes the configured origin at the first start, then refuses any other', async () => {
    const t = await openTestControlStore('origin');
    try {
      const generate = () => assert.fail('a configured origin is not generated');
      const origin = await fixAuditOrigin(t.control, {
        configured: 'vault.example.com/audit',
        generate,
        now,
      });
      assert.equal(origin, 'vault.example.com/audit');
      assert.equal(await fixAuditOrigin(t.control, { generate, now }), origin, 'unset later: kept');
      await assert.rejects(
        fixAuditOrigin(t.control, { configured: 'vault.example.com/audit2', generate, now }),
        /audit\.origin is vault\.example\.com\/audit2 but this deployment's audit log is vault\.example\.com\/audit/,
      );
    } finally {
      await t.close();
    }
  });

  it('keeps the origin of the checkpoints a store already holds (upgrade)', async () => {
    const f = await buildAuditLogFixture({ entries: 30, checkpointEvery: 10 });
    const control = await openSqliteStore<ControlDB>(f.dbPath, controlStoreMigrations);
    try {
      const generate = () => assert.fail('an upgraded store keeps its origin');
      await assert.rejects(
        fixAuditOrigin(control, { configured: 'tresor.example/other', generate, now }),
        /this deployment's audit log is tresor\.test\/audit:/,
      );
      assert.equal(await fixAuditOrigin(control, { generate, now }), FIXTURE_ORIGIN);
    } finally {
      await control.close();
    }
  });
});

describe('the checkpointer under the fixed origin', () => {
  it('signs under the origin as key name and accepts the witness checkpoint signed under keyd’s label', async () => {
    // The fixture's checkpoints and witness were signed under keyd's label, as before this change.
    const f = await buildAuditLogFixture({ entries: 30, checkpointEvery: 10 });
    const control = await openSqliteStore<ControlDB>(f.dbPath, controlStoreMigrations);
    const publicKey = parseVerifierKey(f.verifierKey).publicKey;
    let size = f.size;
    const reader = createAuditLogReader(control.db, () => size);
    const checkpointer = createCheckpointer({
      control,
      reader,
      treeHead: () => ({ size, root: f.root(size) }),
      signingKey: async () => ({ name: FIXTURE_KEY_NAME, publicKey, verifierKey: f.verifierKey }),
      // The fixture's key stands in for keyd's (its checkpoints were signed with it): the parts are
      // formatted as keyd formats them; keyd's own checks are tested in test/keyd/checkpoint-signing.test.ts.
      keyd: {
        tree: async () => ({ origin: FIXTURE_ORIGIN, size: 30, rootHash: f.root(30) }),
        sign: (request) =>
          f.signer.sign(Buffer.from(formatCheckpoint({ ...request, extensions: [] }), 'utf8')),
      },
      origin: FIXTURE_ORIGIN,
      witness: f.witness,
      intervalMs: 60_000,
    });
    try {
      await checkpointer.start();
      assert.deepEqual(checkpointer.health(), { ok: true, signedSize: 30 });
      const published = await checkpointer.verifierKey();
      assert.equal(published, ed25519VerifierKey(FIXTURE_ORIGIN, publicKey));

      await f.append(5);
      size = f.size;
      const signed = await checkpointer.checkpoint();
      assert.ok(signed);
      const opened = verifyCheckpoint(signed.note, [parseVerifierKey(published)], { origin: FIXTURE_ORIGIN });
      assert.equal(opened.checkpoint.size, 35);
      assert.deepEqual(
        parseNote(signed.note).signatures.map((s) => s.name),
        [FIXTURE_ORIGIN],
      );
      assert.throws(() => verifyCheckpoint(signed.note, [parseVerifierKey(f.verifierKey)]), /no verifiable/);
    } finally {
      await checkpointer.close();
      await control.close();
    }
  });
});
