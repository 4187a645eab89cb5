/**
 * The metric families on their own, fed through the same narrow sources the server wires: labels
 * stay inside their vocabulary and bound whatever is reported, a request no route matched is
 * `unmatched`, and the backup gauges tell, per destination, the newest good copy, a failing
 * destination, a failed verification and a destination that never held a backup.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { labelVocabulary, OTHER, PLAIN_NAME, ROUTE_TEMPLATE } from '../../src/monitor/label-values.ts';
import { createTresorMetrics } from '../../src/monitor/metrics.ts';
import { promtool, samples, sampleValue } from './scrape.ts';

describe('metric labels', () => {
  it('keep values of their pattern, up to their bound, and call the rest other', () => {
    const names = labelVocabulary(PLAIN_NAME, 2);
    assert.equal(names.of('backup.run'), 'backup.run');
    assert.equal(names.of('ten_0123 secret'), OTHER);
    assert.equal(names.of('grants.expire'), 'grants.expire');
    assert.equal(names.of('third'), OTHER, 'the label is full');
    assert.equal(names.of('backup.run'), 'backup.run', 'a known value stays');
  });

  it('take route templates, never a URL with a query or an encoded path', () => {
    assert.ok(ROUTE_TEMPLATE.test('/v1/collections/:name/records/:id'));
    assert.ok(!ROUTE_TEMPLATE.test('/v1/collections/notes/records?where[email]=a@b'));
    assert.ok(!ROUTE_TEMPLATE.test('/v1/%2e%2e/x'));
  });
});

describe('request metrics', () => {
  it('count a request no route matched as unmatched, whatever its path', async () => {
    const metrics = createTresorMetrics();
    metrics.requests.observe({ method: 'GET', route: undefined, status: 404, seconds: 0.001 });
    metrics.requests.observe({ method: 'BREW', route: '/x?y=secret', status: 418, seconds: -1 });
    const { body } = await metrics.scrape();
    assert.equal(
      sampleValue(body, 'tresor_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' }),
      1,
    );
    assert.equal(
      sampleValue(body, 'tresor_http_requests_total', { method: 'other', route: 'other', status: '418' }),
      1,
    );
    assert.ok(!body.includes('secret'));
  });
});

describe('backup metrics', () => {
  it('tell each destination’s newest good backup, failing copies and failed verifications', async () => {
    const metrics = createTresorMetrics();
    const copy = (name: string, state: string, verification: string | null = null) => ({
      name,
      state,
      verification: verification === null ? null : { result: verification },
    });
    metrics.backups.watch({
      destinations: ['a', 'b', 'never'],
      intervalSeconds: 3600,
      recent: async () => [
        // newest first
        { startedAt: '2026-12-06T12:00:00Z', outcome: 'running', destinations: [copy('a', 'writing')] },
        {
          startedAt: '2026-12-06T11:00:00Z',
          outcome: 'partial',
          destinations: [copy('a', 'checked', 'failed'), copy('b', 'failed')],
        },
        {
          startedAt: '2026-12-06T10:00:00Z',
          outcome: 'done',
          destinations: [copy('a', 'checked', 'passed'), copy('b', 'checked', 'passed')],
        },
      ],
    });
    const { body } = await metrics.scrape();
    const at = (iso: string) => Date.parse(iso) / 1000;
    const v = (name: string, destination: string) => sampleValue(body, name, { destination });
    assert.equal(v('tresor_backup_last_success_timestamp_seconds', 'a'), at('2026-12-06T11:00:00Z'));
    assert.equal(v('tresor_backup_last_success_timestamp_seconds', 'b'), at('2026-12-06T10:00:00Z'));
    assert.equal(v('tresor_backup_last_success_timestamp_seconds', 'never'), 0);
    assert.equal(v('tresor_backup_destination_failing', 'a'), 0);
    assert.equal(v('tresor_backup_destination_failing', 'b'), 1);
    assert.equal(v('tresor_backup_verification_failed', 'a'), 1);
    assert.equal(v('tresor_backup_verification_failed', 'b'), 0);
    assert.equal(sampleValue(body, 'tresor_backup_interval_seconds'), 3600);
    const checked = await promtool(['check', 'metrics'], body);
    assert.equal(checked.code, 0, checked.output);
  });

  it('leave a source that cannot answer out of the scrape instead of failing it', async () => {
    const metrics = createTresorMetrics();
    metrics.backups.watch({
      destinations: ['a'],
      intervalSeconds: 0,
      recent: async () => {
        throw new Error('the store is closing');
      },
    });
    metrics.state.watch({
      grants: async () => {
        throw new Error('the store is closing');
      },
      certificates: { server: () => 'not a certificate' },
    });
    const { body } = await metrics.scrape();
    const names = new Set(samples(body).map((s) => s.name));
    assert.ok(!names.has('tresor_backup_last_success_timestamp_seconds'));
    assert.ok(!names.has('tresor_access_grants_active'));
    assert.ok(!names.has('tresor_tls_certificate_expiry_timestamp_seconds'));
    assert.equal(sampleValue(body, 'tresor_backup_interval_seconds'), 0);
  });
});
