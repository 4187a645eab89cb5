/**
 * A checkpointer in a process that does not lead (several server processes on one database: only
 * the sequencer's lease holder signs): it never asks keyd to sign; it adopts the newest checkpoint in
 * the store once its signature verifies — into its own witness, to its listeners, as its signed
 * size — so its health follows the holder's signing; a stored checkpoint that does not verify is not
 * adopted.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createCheckpointer } from '../../src/audit/checkpointer.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import { buildAuditLogFixture, FIXTURE_ORIGIN, removeAuditLogFixtures } from './log-fixture.ts';

after(() => removeAuditLogFixtures());

describe('a checkpointer that does not lead', () => {
  it('adopts the stored checkpoints, verified, and never asks keyd to sign', async () => {
    const f = await buildAuditLogFixture({ entries: 20, checkpointEvery: 10, witness: false });
    const control = await openSqliteStore<ControlDB>(f.dbPath, controlStoreMigrations);
    const head = { size: f.size };
    // <name>+<key ID>+<base64 of 0x01 ‖ key> (base64 may itself hold '+').
    const first = f.verifierKey.indexOf('+');
    const second = f.verifierKey.indexOf('+', first + 1);
    const name = f.verifierKey.slice(0, first);
    const publicKey = Buffer.from(f.verifierKey.slice(second + 1), 'base64').subarray(1);
    let keydCalls = 0;
    const kept: string[] = [];
    const told: number[] = [];
    const checkpointer = createCheckpointer({
      control,
      reader: createAuditLogReader(control.db, () => head.size),
      treeHead: () => ({ size: head.size, root: f.root(head.size) }),
      signingKey: async () => ({ name, publicKey, verifierKey: f.verifierKey }),
      keyd: {
        tree: async () => {
          keydCalls += 1;
          throw new Error('a process that does not lead must not ask keyd');
        },
        sign: async () => {
          keydCalls += 1;
          throw new Error('a process that does not lead must not ask keyd');
        },
      },
      origin: FIXTURE_ORIGIN,
      witness: { record: async (note) => void kept.push(note), latest: async () => kept.at(-1) ?? null },
      onCheckpoint: (c) => void told.push(c.size),
      intervalMs: 60_000,
      leads: () => false,
    });
    try {
      await checkpointer.start();
      assert.equal(checkpointer.health().signedSize, 20);
      // The holder appends and signs (the fixture writes the entries and a checkpoint of 30).
      await f.append(10);
      head.size = f.size;
      const adopted = await checkpointer.checkpoint();
      assert.equal(adopted?.size, 30);
      assert.deepEqual(told, [30], 'the listeners (stream, sinks) hear of it');
      assert.equal(kept.length, 1, 'its own witness keeps it');
      assert.equal(checkpointer.health().ok, true);
      assert.equal(checkpointer.health().signedSize, 30);
      assert.equal(await checkpointer.checkpoint(), null, 'nothing newer: nothing adopted');

      // A stored checkpoint whose signature does not verify (forged in the store) is not adopted.
      await f.append(5);
      head.size = f.size;
      f.tamper((db) => {
        const row = db
          .prepare('SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1')
          .get() as {
          size: number;
          note: string;
        };
        db.prepare('DELETE FROM audit_checkpoints WHERE size = ?').run(row.size);
        db.prepare('INSERT INTO audit_checkpoints (size, note, at) VALUES (?, ?, ?)').run(
          row.size + 100,
          row.note.replace(/^(.*\n)(\d+)\n/, (_, origin: string) => `${origin}${row.size + 100}\n`),
          '2030-01-01T00:00:00.000Z',
        );
      });
      await assert.rejects(checkpointer.checkpoint());
      assert.equal(checkpointer.health().signedSize, 30);
      assert.equal(kept.length, 1);
      assert.equal(keydCalls, 0);
    } finally {
      await checkpointer.close();
      await control.close();
    }
  });

  it('stays healthy under steady writes while newer checkpoints keep coming, though the head is always past them', async () => {
    const f = await buildAuditLogFixture({ entries: 20, checkpointEvery: 10, witness: false });
    const control = await openSqliteStore<ControlDB>(f.dbPath, controlStoreMigrations);
    const first = f.verifierKey.indexOf('+');
    const second = f.verifierKey.indexOf('+', first + 1);
    const name = f.verifierKey.slice(0, first);
    const publicKey = Buffer.from(f.verifierKey.slice(second + 1), 'base64').subarray(1);
    let clock = Date.parse('2026-12-06T12:00:00Z');
    // The holder's log always one entry ahead of its newest checkpoint, as under steady writes.
    const head = { size: f.size + 1 };
    const refuse = async (): Promise<never> => {
      throw new Error('a process that does not lead must not ask keyd');
    };
    const checkpointer = createCheckpointer({
      control,
      reader: createAuditLogReader(control.db, () => f.size),
      treeHead: () => ({ size: head.size, root: f.root(f.size) }),
      signingKey: async () => ({ name, publicKey, verifierKey: f.verifierKey }),
      keyd: { tree: refuse, sign: refuse },
      origin: FIXTURE_ORIGIN,
      witness: { record: async () => undefined, latest: async () => null },
      intervalMs: 60_000,
      signBoundMs: 10_000,
      now: () => new Date(clock),
      leads: () => false,
    });
    try {
      await checkpointer.start();
      await checkpointer.checkpoint();
      for (let round = 0; round < 4; round++) {
        clock += 8_000; // under the 10 s bound between two checkpoints, far past it since the first
        await f.append(10);
        head.size = f.size + 1;
        const adopted = await checkpointer.checkpoint();
        assert.equal(adopted?.size, f.size);
        clock += 1_000;
        assert.equal(checkpointer.health().ok, true, checkpointer.health().reason);
      }
      clock += 10_000; // then no newer checkpoint for longer than the bound: red, as on the holder
      assert.equal(checkpointer.health().ok, false);
    } finally {
      await checkpointer.close();
      await control.close();
    }
  });
});
