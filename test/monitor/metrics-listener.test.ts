/**
 * The metrics listener (`metrics.port`): a real server started with TRESOR_METRICS_PORT=0 answers
 * GET /metrics over plain HTTP on 127.0.0.1 without a token, with the same families as the HTTPS
 * route (promtool accepts it), writes no audit entry for it, and serves nothing else. Without the
 * setting there is no such listener; a port that clashes with the HTTPS one is refused at start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { resolveServerConfig } from '../../src/config/server-config.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';
import { promtool, sampleValue } from './scrape.ts';

/** keyd's admin caller, as tests on its Unix socket name it. */
const ADMIN = { id: 'test-admin', role: 'admin' as const };

describe('the metrics listener', () => {
  let s: TresorStack;
  let base: string;
  before(async () => {
    s = await startTresorStack({ server: 'in-process', env: { TRESOR_METRICS_PORT: '0' } });
    base = s.server?.metricsUrl ?? '';
  });
  after(async () => {
    await s?.stop();
  });

  it('serves GET /metrics on 127.0.0.1 over plain HTTP, no token, and promtool accepts it', async () => {
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(30_000) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const checked = await promtool(['check', 'metrics'], text);
    assert.equal(checked.code, 0, checked.output);
    assert.equal(sampleValue(text, 'tresor_keyd_up'), 1);
  });

  it('writes no audit entry for its scrapes, and serves no other path or method', async () => {
    for (let i = 0; i < 3; i++) await (await fetch(`${base}/metrics`)).text();
    // The sequencer has had the time of these requests: anything recorded would be counted by now
    // (the e2e route test proves the counting itself).
    await s.server?.audit.sequencer.drain();
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.equal(
      sampleValue(text, 'tresor_audit_events_total', { action: 'system.metrics-read', outcome: 'success' }),
      undefined,
    );
    assert.equal((await fetch(`${base}/v1/tenants`)).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
  });

  it('tells keyd sealed, then unreachable, with the failed calls’ error code', async () => {
    const scrape = async () =>
      (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
    await s.keydClient().call('seal', {}, ADMIN);
    const sealed = await waitFor('keyd sealed in the metrics', async () => {
      const t = await scrape();
      return sampleValue(t, 'tresor_keyd_sealed') === 1 ? t : undefined;
    });
    assert.equal(sampleValue(sealed, 'tresor_keyd_up'), 1, 'a sealed keyd still answers');
    // The server's own client closed: every call fails as keyd unavailable.
    await s.server?.keyd.close();
    const gone = await waitFor('keyd unreachable in the metrics', async () => {
      const t = await scrape();
      const failed = sampleValue(t, 'tresor_keyd_calls_total', {
        operation: 'health',
        outcome: 'TRESOR_ERR_KEYD_UNAVAILABLE',
      });
      return sampleValue(t, 'tresor_keyd_up') === 0 && (failed ?? 0) > 0 ? t : undefined;
    });
    assert.equal(sampleValue(gone, 'tresor_keyd_sealed'), 0);
  });

  it('is off unless configured, and refuses the HTTPS port', () => {
    const env = { TRESOR_DATA_DIR: '/tmp/mx-config' };
    assert.equal(resolveServerConfig({}, env).metrics, undefined);
    assert.deepEqual(resolveServerConfig({}, { ...env, TRESOR_METRICS_PORT: '18500' }).metrics, {
      host: '127.0.0.1',
      port: 18500,
    });
    assert.throws(
      () => resolveServerConfig({}, { ...env, TRESOR_PORT: '18501', TRESOR_METRICS_PORT: '18501' }),
      /metrics\.port must differ/,
    );
  });
});
