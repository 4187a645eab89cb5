/**
 * The audit window of GET /metrics, on the real HTTP application (the http tests' harness, whose
 * audit recorder keeps events in memory and can be made to fail) with the route's clock moved by
 * hand: a caller's first scrape is recorded, the scrapes within the hour are covered by it, the
 * first after the hour is recorded again, another caller is recorded at once — and a scrape whose
 * entry cannot be recorded is refused (503) with nothing of the metrics sent.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { METRICS_AUDIT_WINDOW_MS, metricsRoutes } from '../../src/http/routes/metrics.ts';
import { createTresorMetrics } from '../../src/monitor/metrics.ts';
import { buildTestApp, session } from '../http/fixtures/harness.ts';

describe('GET /metrics audit window', () => {
  async function setup() {
    let clock = Date.parse('2026-12-06T10:00:00Z');
    const metrics = createTresorMetrics();
    const h = await buildTestApp({
      routes: () => [metricsRoutes({ scrape: () => metrics.scrape(), now: () => new Date(clock) })],
    });
    const scrape = (who: 'adminFresh2fa' | 'adminStale2fa' = 'adminFresh2fa') =>
      h.app.inject({ method: 'GET', url: '/metrics', headers: session(who) });
    const recorded = () => h.audit.events.filter((e) => e.action === 'system.metrics-read').length;
    return {
      h,
      scrape,
      recorded,
      advance: (ms: number) => {
        clock += ms;
      },
    };
  }

  it('records a caller’s first scrape, covers the hour with it, and records again after it', async () => {
    const { h, scrape, recorded, advance } = await setup();
    assert.equal((await scrape()).statusCode, 200);
    assert.equal(recorded(), 1);
    assert.deepEqual(h.audit.events[0]?.target, { coversScrapesForSeconds: 3600 });
    advance(METRICS_AUDIT_WINDOW_MS - 1);
    assert.equal((await scrape()).statusCode, 200);
    assert.equal(recorded(), 1, 'covered by the first entry');
    advance(1);
    assert.equal((await scrape()).statusCode, 200);
    assert.equal(recorded(), 2, 'the hour is over');
    assert.equal((await scrape('adminStale2fa')).statusCode, 200);
    assert.equal(recorded(), 3, 'another session is another caller');
    await h.app.close();
  });

  it('refuses a scrape whose entry cannot be recorded, sending no metrics', async () => {
    const { h, scrape, recorded } = await setup();
    h.audit.failing = true;
    const res = await scrape();
    assert.equal(res.statusCode, 503);
    assert.ok(!res.body.includes('tresor_'), 'no metric in the refusal');
    h.audit.failing = false;
    assert.equal((await scrape()).statusCode, 200);
    assert.equal(recorded(), 1, 'recorded once it could be');
    await h.app.close();
  });
});
