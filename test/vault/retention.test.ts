/**
 * Retention: records expire retentionDays after creation; the job deletes exactly the expired
 * ones, with their index rows, in batches each audited as the system actor.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { caller, PEOPLE, tresorError, type VaultRig, vaultRig } from './helpers.ts';

const T = 'acme';
const DAY = 86_400_000;
const START = new Date('2025-01-01T00:00:00.000Z');

describe('retention', () => {
  let rig: VaultRig;
  before(async () => {
    rig = await vaultRig({ limits: { retentionBatch: 2 } });
  });
  after(async () => {
    await rig.close();
  });

  it('deletes only expired records, with their index rows, in audited batches by the system actor', async () => {
    rig.setNow(START);
    await rig.vault.putCollection(T, 'short', { ...PEOPLE, retentionDays: 10 }, caller());
    await rig.vault.putCollection(T, 'long', { ...PEOPLE, retentionDays: 100 }, caller());
    await rig.vault.putCollection(T, 'forever', PEOPLE, caller());
    const early: string[] = [];
    for (let i = 0; i < 5; i++) {
      early.push((await rig.vault.createRecord(T, 'short', { email: `s${i}@example.com` }, caller())).id);
    }
    rig.setNow(new Date(START.getTime() + 5 * DAY));
    const late = (await rig.vault.createRecord(T, 'short', { email: 'late@example.com' }, caller())).id;
    const long = (await rig.vault.createRecord(T, 'long', { email: 'long@example.com' }, caller())).id;
    const kept = (await rig.vault.createRecord(T, 'forever', { email: 'forever@example.com' }, caller())).id;

    rig.setNow(new Date(START.getTime() + 10 * DAY - 1));
    assert.deepEqual(await rig.vault.runRetention(T), { deleted: 0 }, 'nothing is due a millisecond early');

    rig.setNow(new Date(START.getTime() + 10 * DAY));
    const before = (await rig.auditEvents(T)).length;
    assert.deepEqual(await rig.vault.runRetention(T), { deleted: 5 });
    for (const id of early) {
      assert.equal(
        (await tresorError(rig.vault.readRecord(T, 'short', id, caller()))).code,
        'TRESOR_ERR_NOT_FOUND',
      );
    }
    assert.equal((await rig.vault.readRecord(T, 'short', late, caller())).id, late);
    assert.equal((await rig.vault.readRecord(T, 'long', long, caller())).id, long);
    assert.equal((await rig.vault.readRecord(T, 'forever', kept, caller())).id, kept);

    const store = await rig.store(T);
    const index = await store.db
      .selectFrom('blind_index')
      .select('record_id')
      .where('record_id', 'in', early)
      .execute();
    assert.equal(index.length, 0);

    const events = (await rig.auditEvents(T)).slice(before).filter((e) => e.target?.reason === 'retention');
    assert.equal(events.length, 3, 'batches of 2: 2 + 2 + 1');
    for (const e of events) {
      assert.deepEqual(e.actor, { kind: 'system', id: 'retention' });
      assert.equal(e.action, 'record.delete');
      assert.equal(e.tenant, T);
      assert.equal(e.target?.collection, 'short');
      assert.equal(e.at, new Date(START.getTime() + 10 * DAY).toISOString());
    }
    assert.deepEqual(events.flatMap((e) => e.target?.recordIds ?? []).sort(), [...early].sort());

    rig.setNow(new Date(START.getTime() + 1000 * DAY));
    assert.deepEqual(await rig.vault.runRetention(T), { deleted: 2 }, 'late and long');
    assert.equal((await rig.vault.readRecord(T, 'forever', kept, caller())).id, kept);
  });

  it('recomputes expiry from creation time when the retention period changes', async () => {
    rig.setNow(START);
    await rig.vault.putCollection(T, 'policy', { ...PEOPLE, retentionDays: 365 }, caller());
    const { id } = await rig.vault.createRecord(T, 'policy', { email: 'policy@example.com' }, caller());
    rig.setNow(new Date(START.getTime() + 40 * DAY));
    assert.deepEqual(await rig.vault.runRetention(T), { deleted: 0 });
    await rig.vault.putCollection(T, 'policy', { ...PEOPLE, retentionDays: 30 }, caller());
    assert.deepEqual(await rig.vault.runRetention(T), { deleted: 1 });
    assert.equal(
      (await tresorError(rig.vault.readRecord(T, 'policy', id, caller()))).code,
      'TRESOR_ERR_NOT_FOUND',
    );

    const { id: other } = await rig.vault.createRecord(T, 'policy', { email: 'kept@example.com' }, caller());
    await rig.vault.putCollection(T, 'policy', PEOPLE, caller());
    rig.setNow(new Date(START.getTime() + 10_000 * DAY));
    assert.deepEqual(await rig.vault.runRetention(T), { deleted: 0 }, 'no retention period, no expiry');
    assert.equal((await rig.vault.readRecord(T, 'policy', other, caller())).id, other);
  });
});
