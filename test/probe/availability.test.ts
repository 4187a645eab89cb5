/**
 * Availability arithmetic (src/probe/availability.ts), case by case: time-weighted spans, failed
 * probes as down time, gaps unobserved for an outside prober and down for the server's own, UTC
 * days, the 30-day window and its error budget.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { availability, type ProbeSample } from '../../src/probe/availability.ts';

const MIN = 60_000;
const T0 = Date.parse('2026-12-01T00:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();

/** One probe a minute from T0 for `n` minutes; `down` lists the minutes that failed. */
function everyMinute(n: number, down: readonly number[] = []): ProbeSample[] {
  return Array.from({ length: n }, (_, i) => ({ at: at(i * MIN), ok: !down.includes(i) }));
}

describe('availability', () => {
  it('all probes passing: 100 %, the whole budget left', () => {
    const r = availability(everyMinute(60), {
      now: new Date(T0 + 60 * MIN),
      intervalMs: MIN,
      objective: 0.999,
      gaps: 'unobserved',
    });
    assert.equal(r.last30Days.probes, 60);
    assert.equal(r.last30Days.failed, 0);
    assert.equal(r.last30Days.observedMs, 60 * MIN);
    assert.equal(r.last30Days.availability, 1);
    assert.equal(r.last30Days.errorBudget.usedDownMs, 0);
    assert.equal(r.last30Days.errorBudget.allowedDownMs, Math.round(60 * MIN * 0.001));
    assert.equal(r.last30Days.meetsObjective, true);
  });

  it('a failed probe counts its interval down; the budget is spent and overspent', () => {
    const r = availability(everyMinute(1000, [10, 11]), {
      now: new Date(T0 + 1000 * MIN),
      intervalMs: MIN,
      objective: 0.999,
      gaps: 'unobserved',
    });
    assert.equal(r.last30Days.failed, 2);
    assert.equal(r.last30Days.downMs, 2 * MIN);
    assert.equal(r.last30Days.availability, 1 - 2 / 1000);
    assert.equal(r.last30Days.errorBudget.allowedDownMs, MIN);
    assert.equal(r.last30Days.errorBudget.remainingDownMs, -MIN);
    assert.equal(r.last30Days.errorBudget.remainingRatio, -1);
    assert.equal(r.last30Days.meetsObjective, false);
  });

  it('probes at uneven times: each stands until the next one starts', () => {
    const samples = [
      { at: at(0), ok: true },
      { at: at(30_000), ok: false },
      { at: at(45_000), ok: true },
    ];
    const r = availability(samples, {
      now: new Date(T0 + 60_000),
      intervalMs: 30_000,
      objective: 0.99,
      gaps: 'down',
    });
    assert.equal(r.last30Days.downMs, 15_000);
    assert.equal(r.last30Days.observedMs, 60_000);
  });

  it('a gap (the prober silent): unobserved from outside, down for the server’s own prober', () => {
    const samples = [
      ...everyMinute(10),
      ...everyMinute(10).map((s) => ({ ...s, at: at(Date.parse(s.at) - T0 + 30 * MIN) })),
    ];
    const now = new Date(T0 + 40 * MIN);
    const outside = availability(samples, { now, intervalMs: MIN, objective: 0.999, gaps: 'unobserved' });
    // Minutes 0-9 and 30-39 observed; the probe at minute 9 stands for two intervals at most.
    assert.equal(outside.last30Days.observedMs, 21 * MIN);
    assert.equal(outside.last30Days.downMs, 0);
    const own = availability(samples, { now, intervalMs: MIN, objective: 0.999, gaps: 'down' });
    assert.equal(own.last30Days.observedMs, 40 * MIN);
    assert.equal(own.last30Days.downMs, 19 * MIN);
  });

  it('splits by UTC day and ignores results from the future and older than 30 days', () => {
    const samples = [
      { at: new Date(T0 - 31 * 86_400_000).toISOString(), ok: false },
      { at: at(-MIN), ok: false },
      { at: at(0), ok: true },
      { at: at(MIN), ok: true },
      { at: at(10 * MIN), ok: false },
    ];
    const r = availability(samples, {
      now: new Date(T0 + 2 * MIN),
      intervalMs: MIN,
      objective: 0.999,
      gaps: 'unobserved',
      days: 2,
    });
    assert.equal(r.days.length, 2);
    assert.equal(r.days[0]?.from, '2026-11-30T00:00:00.000Z');
    assert.equal(r.days[0]?.downMs, MIN, 'the last minute of 30 November was down');
    assert.equal(r.days[1]?.from, '2026-12-01T00:00:00.000Z');
    assert.equal(r.days[1]?.downMs, 0);
    assert.equal(r.days[1]?.probes, 2, 'the probe from the future is not counted');
    assert.equal(r.last30Days.probes, 3, 'the probe from 31 days ago is outside the window');
  });

  it('nothing observed: no availability, no verdict', () => {
    const r = availability([], { now: new Date(T0), intervalMs: MIN, objective: 0.999, gaps: 'unobserved' });
    assert.equal(r.last30Days.availability, null);
    assert.equal(r.last30Days.meetsObjective, null);
    assert.throws(
      () => availability([], { now: new Date(T0), intervalMs: MIN, objective: 1, gaps: 'down' }),
      RangeError,
    );
  });
});
