import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { agedOutAt, backupIdTime, isBackupId, newBackupId, planRetention } from '../../src/backup/index.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = new Date('2026-03-31T12:00:00.000Z');
const policy = { keepAllDays: 2, dailyDays: 35 };

/** Backups every 6 hours (00, 06, 12, 18 UTC) for `days` days up to NOW. */
function sixHourly(days: number) {
  const out = [];
  for (let t = NOW.getTime() - days * DAY; t <= NOW.getTime(); t += 6 * HOUR) {
    out.push({ id: new Date(t).toISOString(), takenAt: new Date(t) });
  }
  return out;
}

describe('backup retention', () => {
  test('keeps every backup of the last keepAllDays days and the newest of each day for dailyDays days', () => {
    const backups = sixHourly(60);
    const plan = planRetention(backups, policy, NOW);
    const kept = new Set(plan.keep);
    for (const b of backups) {
      const age = NOW.getTime() - b.takenAt.getTime();
      const newestOfDay = b.takenAt.getUTCHours() === 18 || b.takenAt.getTime() === NOW.getTime();
      const dayStart = Math.floor(b.takenAt.getTime() / DAY) * DAY;
      const expected = age < 2 * DAY || (newestOfDay && NOW.getTime() < dayStart + 35 * DAY);
      assert.equal(kept.has(b.id), expected, `${b.id}`);
    }
    assert.equal(plan.keep.length + plan.delete.length, backups.length);
    // 8 backups younger than 2 days, plus the newest of each of the 35 days 02-25 … 03-31, of which
    // 3 (03-29 18:00, 03-30 18:00, 03-31 12:00) are among the 8: 40 kept.
    assert.equal(plan.keep.length, 40);
  });

  test('always keeps the newest backup, however old', () => {
    const old = [{ id: 'a', takenAt: new Date(NOW.getTime() - 400 * DAY) }];
    assert.deepEqual(planRetention(old, policy, NOW), { keep: ['a'], delete: [] });
    assert.deepEqual(planRetention([], policy, NOW), { keep: [], delete: [] });
  });

  test('keeps backups dated in the future (a clock set back) and deletes none because of them', () => {
    const backups = [
      { id: 'future', takenAt: new Date(NOW.getTime() + DAY) },
      { id: 'old', takenAt: new Date(NOW.getTime() - 100 * DAY) },
    ];
    assert.deepEqual(planRetention(backups, policy, NOW), { keep: ['future'], delete: ['old'] });
  });

  test('with dailyDays 0 only the keep-all window counts', () => {
    const backups = sixHourly(5);
    const plan = planRetention(backups, { keepAllDays: 1, dailyDays: 0 }, NOW);
    assert.deepEqual(
      plan.keep,
      backups.filter((b) => NOW.getTime() - b.takenAt.getTime() < DAY).map((b) => b.id),
    );
  });

  test('refuses a policy that is not a whole number of days', () => {
    assert.throws(() => planRetention([], { keepAllDays: -1, dailyDays: 1 }, NOW), RangeError);
    assert.throws(() => planRetention([], { keepAllDays: 1.5, dailyDays: 1 }, NOW), RangeError);
    assert.throws(() => agedOutAt(NOW, [{ keepAllDays: 1, dailyDays: Number.NaN }]), RangeError);
  });

  test('agedOutAt is the latest moment any destination keeps the backup, and planRetention agrees', () => {
    const takenAt = new Date('2026-03-01T18:00:00.000Z');
    const short = { keepAllDays: 2, dailyDays: 7 };
    const long = { keepAllDays: 2, dailyDays: 35 };
    assert.equal(agedOutAt(takenAt, [short]).toISOString(), '2026-03-08T00:00:00.000Z');
    assert.equal(agedOutAt(takenAt, [short, long]).toISOString(), '2026-04-05T00:00:00.000Z');
    assert.equal(
      agedOutAt(takenAt, [{ keepAllDays: 3, dailyDays: 0 }]).toISOString(),
      '2026-03-04T18:00:00.000Z',
    );
    // The newest of its day, with later backups taken: kept just before, deleted at that moment.
    const later = { id: 'later', takenAt: new Date('2026-04-10T00:00:00.000Z') };
    const b = { id: 'b', takenAt };
    const out = agedOutAt(takenAt, [long]);
    assert.deepEqual(planRetention([b, later], long, new Date(out.getTime() - 1)).keep, ['b', 'later']);
    assert.deepEqual(planRetention([b, later], long, out).delete, ['b']);
  });
});

describe('backup ids', () => {
  test('carry the start time to the second, sort by it, and are checked strictly', () => {
    const id = newBackupId(new Date('2026-03-01T06:00:07.123Z'));
    assert.match(id, /^20260301T060007Z-[0-9a-f]{8}$/);
    assert.equal(isBackupId(id), true);
    assert.equal(backupIdTime(id)?.toISOString(), '2026-03-01T06:00:07.000Z');
    assert.ok(newBackupId(new Date('2026-03-01T06:00:08Z')) > id);
    for (const bad of [
      '',
      '../x',
      '20260301T060007Z',
      '20261301T060007Z-00000000x',
      'x20260301T060007Z-00000000',
    ]) {
      assert.equal(isBackupId(bad), false, bad);
    }
    assert.equal(backupIdTime('20261399T990000Z-00000000'), undefined);
  });
});
