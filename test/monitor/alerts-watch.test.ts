/**
 * The watch over a real control store: it starts at the log's end on a new deployment, judges
 * entries in order, commits the alerts a batch raises together with its cursor, and a watch made
 * again from the stored cursor (a restart) goes on where the first stopped — no alert counted
 * twice, no entry skipped. The entries are canonical audit leaves as the log stores them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createAlertWatch } from '../../src/alerts/alert-watch.ts';
import { createAlertService } from '../../src/alerts/alerts.ts';
import { breakGlassDetector } from '../../src/alerts/detectors/access-events.ts';
import { canonicalJson } from '../../src/audit/canonical.ts';
import type { AuditEvent } from '../../src/audit/event.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';
import { withDeadline } from '../helpers/wait.ts';

const breakGlass = (index: number): string =>
  canonicalJson({
    at: new Date(Date.parse('2026-12-06T10:00:00Z') + index * 1000).toISOString(),
    actor: { kind: 'staff', id: 'per_sec' },
    tenant: 'ten_1',
    action: 'grant.break-glass',
    outcome: 'success',
    index,
  } satisfies AuditEvent & { index: number });
const other = (index: number): string =>
  canonicalJson({
    at: '2026-12-06T10:00:00.000Z',
    actor: { kind: 'api-key', id: 'ak_1' },
    tenant: 'ten_1',
    action: 'record.read',
    outcome: 'success',
    index,
  });

describe('alert watch', () => {
  let store: TestControlStore;
  const log: string[] = [];
  before(async () => {
    store = await openTestControlStore('alert-watch');
  });
  after(() => store.close());

  function watch(opened: string[], leads?: () => boolean) {
    const alerts = createAlertService({ control: store.control, now: () => new Date() });
    return {
      alerts,
      watch: createAlertWatch({
        control: store.control,
        readEntries: async (from, limit) =>
          log.slice(from, from + limit).map((leaf, i) => ({ index: from + i, leaf })),
        treeSize: () => log.length,
        detectors: [breakGlassDetector()],
        alerts,
        enqueueIn: async () => {},
        opened: (ids) => opened.push(...ids),
        warn: (obj, msg) => assert.fail(`${msg} ${JSON.stringify(obj)}`),
        batchSize: 3,
        ...(leads ? { leads } : {}),
      }),
    };
  }

  it('starts at the log’s end, judges what comes after, and goes on from its cursor after a restart', async () => {
    log.push(breakGlass(0), other(1)); // history before the first start: not judged
    const opened: string[] = [];
    const first = watch(opened);
    await first.watch.start();
    log.push(other(2), breakGlass(3), other(4), other(5), other(6), breakGlass(7));
    first.watch.notify();
    await withDeadline('the first watch to catch up', first.watch.caughtUp(), 30_000);
    const [alert] = await first.alerts.list({ limit: 10 });
    assert.equal(opened.length, 1);
    assert.deepEqual([alert?.evidence, alert?.count], [[3, 7], 2]);
    log.push(other(8), other(9));
    first.watch.notify();
    await withDeadline('the first watch to catch up again', first.watch.caughtUp(), 30_000);
    await first.watch.close();
    const cursor = await store.control.db.selectFrom('alert_watch').select('next_index').executeTakeFirst();
    assert.equal(cursor?.next_index, 10, 'the cursor past entries that raised nothing is stored at close');

    // A restart: a new watch from the stored cursor.
    log.push(breakGlass(10));
    const second = watch(opened);
    await second.watch.start();
    await withDeadline('the second watch to catch up', second.watch.caughtUp(), 30_000);
    await second.watch.close();
    const [again] = await second.alerts.list({ limit: 10 });
    assert.deepEqual([again?.id, again?.evidence, again?.count], [alert?.id, [3, 7, 10], 3]);
    assert.equal(opened.length, 1, 'bumped, not opened again');
  });

  it('judges only in the process that leads; the next leader goes on from the stored cursor', async () => {
    let leader: 'a' | 'b' = 'a';
    const opened: string[] = [];
    const a = watch(opened, () => leader === 'a');
    const b = watch(opened, () => leader === 'b');
    await a.watch.start();
    await b.watch.start();
    const start = log.length;
    log.push(breakGlass(start), other(start + 1));
    a.watch.notify();
    b.watch.notify();
    await withDeadline('the leading watch to catch up', a.watch.caughtUp(), 30_000);
    await b.watch.caughtUp(); // not leading: returns at once, judging nothing
    const [alert] = await a.alerts.list({ limit: 10 });
    assert.equal(alert?.count, 4, 'the break-glass entry counted once, by the leader alone');
    await a.watch.close(); // the leader goes (its cursor is stored)

    leader = 'b';
    log.push(breakGlass(start + 2));
    b.watch.notify();
    await withDeadline('the new leader to catch up', b.watch.caughtUp(), 30_000);
    await b.watch.close();
    const [after] = await b.alerts.list({ limit: 10 });
    assert.deepEqual([after?.id, after?.count], [alert?.id, 5], 'only the new entry judged: nothing twice');
    assert.deepEqual(after?.evidence.slice(-2), [start, start + 2]);
  });
});

describe('alert watch on a backlog', () => {
  let store: TestControlStore;
  before(async () => {
    store = await openTestControlStore('alert-watch-backlog');
  });
  after(() => store.close());

  it('gives the event loop a turn between batches while it catches up', async () => {
    const log: string[] = [];
    let reads = 0;
    const alerts = createAlertService({ control: store.control, now: () => new Date() });
    const watch = createAlertWatch({
      control: store.control,
      // Resolves at once, as SQLite's reads do: only the watch itself can give the loop a turn.
      readEntries: async (from, limit) => {
        reads++;
        return log.slice(from, from + limit).map((leaf, i) => ({ index: from + i, leaf }));
      },
      treeSize: () => log.length,
      detectors: [breakGlassDetector()],
      alerts,
      enqueueIn: async () => {},
      opened: () => {},
      warn: (obj, msg) => assert.fail(`${msg} ${JSON.stringify(obj)}`),
      batchSize: 3,
    });
    await watch.start();
    for (let i = 0; i < 3_000; i++) log.push(other(i));
    // A timer set now fires only when the loop gets a turn: while the watch is still reading the
    // 1,000 batches if it yields between them, after the last one if it does not.
    let readsWhenTimerFired = -1;
    const timer = new Promise<void>((resolve) =>
      setTimeout(() => {
        readsWhenTimerFired = reads;
        resolve();
      }, 0),
    );
    watch.notify();
    await withDeadline('the backlog to be judged', watch.caughtUp(), 60_000);
    await timer;
    await watch.close();
    const stored = await store.control.db.selectFrom('alert_watch').select('next_index').executeTakeFirst();
    assert.equal(stored?.next_index, 3_000);
    assert.ok(reads > 1_000, `${reads} reads`);
    assert.ok(readsWhenTimerFired < 1_000, `the timer ran after ${readsWhenTimerFired} of ${reads} reads`);
  });
});
