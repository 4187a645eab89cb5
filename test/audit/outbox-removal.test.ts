// backends: sqlite postgres
/**
 * Outbox rows leave once the log holds them (src/audit/outbox-removal.ts), on the real stores of this
 * run's backend: after the sequencer moved a batch, its rows are deleted from the tenant's and the
 * control store's outbox (the newest row of each stays); the outbox's triggers still refuse any
 * UPDATE and any DELETE above the moved cursor, and the cursor only advances; and a sequencer killed
 * (SIGKILL) after its log commit and before the removal loses nothing and duplicates nothing: the
 * next one deletes the left rows without appending them again.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type Kysely, sql } from 'kysely';
import { appendAuditEvent, type WithAuditEvents } from '../../src/audit/event.ts';
import { readLeaves, storedLogSize } from '../../src/audit/leaf-store.ts';
import type { WithAuditLog } from '../../src/audit/log-schema.ts';
import { REMOVE_BATCH_ROWS } from '../../src/audit/sequencer.ts';
import type { Store } from '../../src/store/types.ts';
import { testDatabase } from '../helpers/backend.ts';
import { waitFor, withDeadline } from '../helpers/wait.ts';
import { openOutboxRig, readEvent, TENANT } from './fixtures/outbox-rig.ts';

const CHILD = join(import.meta.dirname, 'fixtures', 'outbox-crash-child.ts');
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-outbox-'));
  dirs.push(dir);
  return dir;
}

async function outboxSeqs(store: Store<WithAuditEvents>): Promise<number[]> {
  const rows = await store.db.selectFrom('audit_events').select('seq').orderBy('seq').execute();
  return rows.map((r) => Number(r.seq));
}

async function moved(store: Store<WithAuditEvents>): Promise<number> {
  const row = await store.db.selectFrom('audit_moved').select('seq').executeTakeFirstOrThrow();
  return Number(row.seq);
}

async function logRequestIds(control: { db: object }): Promise<string[]> {
  const db = control.db as Kysely<WithAuditLog>;
  const rows = await readLeaves(db, 0, await storedLogSize(db));
  return rows.map((r) => (JSON.parse(r.leaf) as { requestId: string }).requestId);
}

const refused = /audit events are append-only|audit cursors only advance/;

describe('outbox removal', () => {
  test('moved rows leave both outboxes; the triggers refuse any UPDATE and any DELETE above the cursor', async () => {
    const data = await testDatabase();
    const rig = await openOutboxRig(folder(), data.database, { removeEveryMs: 20 });
    try {
      await rig.write(0, 200);
      await rig.sequencer.start();
      await rig.sequencer.drain();
      const tenant = (await rig.backend.tenantStores.open(TENANT)) as unknown as Store<WithAuditEvents>;
      const control = rig.backend.control as unknown as Store<WithAuditEvents>;
      // Removed by the sequencer's own timer, without being asked.
      await waitFor('the moved rows to leave the outboxes', async () =>
        (await outboxSeqs(tenant)).length === 1 && (await outboxSeqs(control)).length === 1
          ? true
          : undefined,
      );
      assert.equal((await logRequestIds(rig.backend.control)).length, 200, 'every event is in the log');
      const [kept] = await outboxSeqs(tenant);
      assert.equal(kept, 180, 'the tenant outbox keeps its newest row (seq 180 of 180)');
      assert.equal(await moved(tenant), 180);
      assert.equal(await moved(control), 20);

      // Events not yet moved: a DELETE of them is refused, rows and cursor unchanged.
      await tenant.write((trx) => appendAuditEvent(trx as never, readEvent(1000)));
      await assert.rejects(
        tenant.write((trx) => sql`DELETE FROM audit_events`.execute(trx)),
        refused,
      );
      await assert.rejects(
        tenant.write((trx) => sql`DELETE FROM audit_events WHERE seq = 181`.execute(trx)),
        refused,
      );
      // Any UPDATE is refused, of a moved row and of a waiting one.
      for (const seq of [180, 181])
        await assert.rejects(
          tenant.write((trx) => sql`UPDATE audit_events SET action = 'x' WHERE seq = ${seq}`.execute(trx)),
          refused,
        );
      // The cursor copy never goes back, is never removed, never gets a second row.
      await assert.rejects(
        tenant.write((trx) => sql`UPDATE audit_moved SET seq = 5`.execute(trx)),
        refused,
      );
      await assert.rejects(tenant.write((trx) => sql`DELETE FROM audit_moved`.execute(trx)));
      await assert.rejects(
        tenant.write((trx) => sql`INSERT INTO audit_moved (one, seq) VALUES (2, 500)`.execute(trx)),
      );
      assert.deepEqual(await outboxSeqs(tenant), [180, 181]);
      assert.equal(await moved(tenant), 180);
      // A DELETE of a moved row is what removal does: allowed (the kept row is below the cursor).
      await tenant.write((trx) => sql`DELETE FROM audit_events WHERE seq = 180`.execute(trx));

      // Moving the new one lets it go too (the newest row stays until a newer one exists).
      rig.sequencer.notify(TENANT);
      await rig.sequencer.drain(TENANT);
      await rig.sequencer.removeMoved();
      assert.deepEqual(await outboxSeqs(tenant), [181]);
      assert.equal(await moved(tenant), 181);
      assert.equal((await logRequestIds(rig.backend.control)).length, 201);
    } finally {
      await rig.close();
      await data.drop();
    }
  });

  test('an outbox with a few moved rows waits for its linger; one with REMOVE_BATCH_ROWS is cleared at the next pass', async () => {
    const data = await testDatabase();
    // Passes every 20 ms; a few rows would wait an hour: within this test only the batch rule clears.
    const rig = await openOutboxRig(folder(), data.database, {
      removeEveryMs: 20,
      removeLingerMs: 3_600_000,
    });
    try {
      await rig.sequencer.start();
      const tenant = (await rig.backend.tenantStores.open(TENANT)) as unknown as Store<WithAuditEvents>;
      await rig.write(1, 9); // 9 events, all the tenant's
      rig.sequencer.notify(TENANT);
      await rig.sequencer.drain(TENANT);
      assert.equal(await storedLogSize(rig.backend.control.db as never), 9);
      await new Promise((resolve) => setTimeout(resolve, 400)); // about 20 passes
      assert.equal((await outboxSeqs(tenant)).length, 9, 'a few moved rows are not cleared yet');
      assert.equal(await moved(tenant), 0);

      await rig.write(11, REMOVE_BATCH_ROWS); // nine in ten the tenant's: past REMOVE_BATCH_ROWS in all
      rig.sequencer.notify(TENANT);
      await rig.sequencer.drain(TENANT);
      await waitFor('the outbox cleared by a pass', async () =>
        (await outboxSeqs(tenant)).length === 1 ? true : undefined,
      );
      assert.ok((await moved(tenant)) >= REMOVE_BATCH_ROWS);
    } finally {
      await rig.close();
      await data.drop();
    }
  });

  test('killed after the log commit and before the removal: nothing lost, nothing twice, rows removed later', async () => {
    const data = await testDatabase();
    const dir = folder();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', CHILD, dir, JSON.stringify(data.database), '300'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    try {
      const size = await withDeadline(
        'the child to move its events',
        new Promise<number>((resolve, reject) => {
          let out = '';
          child.stdout.setEncoding('utf8');
          child.stdout.on('data', (chunk: string) => {
            out += chunk;
            const m = /moved (\d+)\n/.exec(out);
            if (m) resolve(Number(m[1]));
          });
          child.on('exit', (code) => reject(new Error(`the child exited (${code}) before moving`)));
        }),
        120_000,
      );
      assert.equal(size, 300);
      child.kill('SIGKILL');
      await withDeadline('the child to die', new Promise((resolve) => child.once('exit', resolve)), 30_000);

      const rig = await openOutboxRig(dir, data.database, { removeEveryMs: 3_600_000 });
      try {
        const tenant = (await rig.backend.tenantStores.open(TENANT)) as unknown as Store<WithAuditEvents>;
        assert.equal((await outboxSeqs(tenant)).length, 270, 'the killed sequencer removed nothing');
        assert.equal(await moved(tenant), 0);
        await rig.sequencer.start();
        if (rig.lease) await waitFor('the lease', async () => (rig.lease?.held() ? true : undefined));
        await rig.sequencer.drain();
        await rig.sequencer.removeMoved();
        const ids = await logRequestIds(rig.backend.control);
        assert.equal(ids.length, 300, 'nothing appended twice');
        assert.equal(new Set(ids).size, 300, 'every event once');
        assert.deepEqual(await outboxSeqs(tenant), [270], 'the left rows are removed now');
        assert.equal(await moved(tenant), 270);
        assert.equal((await outboxSeqs(rig.backend.control as never)).length, 1);
      } finally {
        await rig.close();
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await data.drop();
    }
  });
});
