/** Events Tresor records of itself: their shape, and the caller's clock as their time. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { systemEvent } from '../../src/audit/system-event.ts';

describe('system events', () => {
  const now = new Date('2031-05-06T07:08:09.010Z');

  it('names the system actor, no tenant, success by default, at the given time', () => {
    const event = systemEvent({ id: 'tenant-close', action: 'system.job' }, now);
    assert.deepEqual(event, {
      at: '2031-05-06T07:08:09.010Z',
      actor: { kind: 'system', id: 'tenant-close' },
      tenant: null,
      action: 'system.job',
      outcome: 'success',
    });
    assert.ok(!('target' in event));
  });

  it('carries an outcome and a target in the order the stored events always had', () => {
    const failed = systemEvent({ id: 'server', action: 'tls.reload', outcome: 'failure' }, now);
    assert.equal(failed.outcome, 'failure');
    const disk = systemEvent({ id: 'disk-watch', action: 'audit.disk.low', target: { freeBytes: 5 } }, now);
    assert.equal(
      JSON.stringify(disk),
      '{"at":"2031-05-06T07:08:09.010Z","actor":{"kind":"system","id":"disk-watch"},"tenant":null,' +
        '"action":"audit.disk.low","target":{"freeBytes":5},"outcome":"success"}',
    );
  });

  it("takes the time from the caller's clock, not the machine's", () => {
    const clock = () => new Date('2001-02-03T04:05:06.000Z');
    assert.equal(systemEvent({ id: 'x', action: 'y' }, clock()).at, '2001-02-03T04:05:06.000Z');
  });
});
