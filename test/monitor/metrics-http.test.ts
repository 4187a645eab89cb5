/**
 * GET /metrics on a real server (in this process, with a real keyd): traffic of every kind — a
 * tenant with a record, failed console logins, refused requests, a backup to the default folder
 * destinations — then a scrape with an operator token of scope `metrics:read`. The scrape passes
 * the real `promtool check metrics`, names every family docs/monitoring.md promises, and its series
 * move with the traffic; it is refused without a token (401) and to every other scope and a tenant
 * key (403); and no tenant id, record value, e-mail or secret planted by the test appears in it.
 * Each caller's scrapes within the hour are covered by one audit entry, not one each.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OPERATOR_SCOPES } from '../../src/identity/operator-scopes.ts';
import { auditLog } from '../cli/cli-run.ts';
import { operatorAdmin, operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';
import { promtool, samples, sampleValue } from './scrape.ts';

const MARK = `mx${Date.now().toString(36)}`;
const RECORD_VALUE = `${MARK}-record-value-never-in-metrics`;
const TENANT_NAME = `${MARK}-tenant-name`;
const LOGIN_EMAIL = `${MARK}-nobody@example.test`;
const LOGIN_PASSWORD = `${MARK}-wrong-password-never-in-metrics`;

/** The families docs/monitoring.md lists, each of which a running server exposes. */
const FAMILIES = [
  'tresor_http_requests_total',
  'tresor_http_request_duration_seconds_bucket',
  'tresor_audit_events_total',
  'tresor_audit_break_glass_events_total',
  'tresor_audit_append_lag_seconds_bucket',
  'tresor_audit_up',
  'tresor_audit_log_entries',
  'tresor_audit_unsigned_entries',
  'tresor_audit_archived_entries',
  'tresor_audit_checkpoint_timestamp_seconds',
  'tresor_audit_sequencer_pending_sources',
  'tresor_audit_sequencer_failing',
  'tresor_login_failures_total',
  'tresor_login_lockouts_total',
  'tresor_keyd_calls_total',
  'tresor_keyd_call_duration_seconds_bucket',
  'tresor_keyd_up',
  'tresor_keyd_sealed',
  'tresor_key_cache_hits_total',
  'tresor_key_cache_misses_total',
  'tresor_key_cache_evictions_total',
  'tresor_key_cache_expirations_total',
  'tresor_key_cache_entries',
  'tresor_store_commit_batches_total',
  'tresor_store_commit_jobs_total',
  'tresor_store_commit_failed_batches_total',
  'tresor_store_commit_max_batch',
  'tresor_store_commit_queued',
  'tresor_tenant_stores_open',
  'tresor_tenant_stores_opened_total',
  'tresor_tenant_stores_max_open',
  'tresor_tenant_stores_closed_total',
  'tresor_tenant_stores_evicted_total',
  'tresor_tenant_stores_wiped_total',
  'tresor_tenant_store_commit_batches_total',
  'tresor_tenant_store_commit_jobs_total',
  'tresor_tenant_wal_checkpoints_total',
  'tresor_tenant_wal_checkpoints_complete_total',
  'tresor_tenant_wal_checkpoints_failed_total',
  'tresor_backup_last_success_timestamp_seconds',
  'tresor_backup_destination_failing',
  'tresor_backup_verification_failed',
  'tresor_backup_interval_seconds',
  'tresor_tls_certificate_expiry_timestamp_seconds',
  'tresor_access_grants_active',
  'tresor_access_grants_break_glass_active',
  'tresor_job_runs_total',
  'tresor_job_failures_total',
  'tresor_job_last_run_failed',
  'tresor_job_last_success_timestamp_seconds',
  'process_cpu_seconds_total',
];

describe('GET /metrics', () => {
  let s: TresorStack;
  let token: string;
  let tenantId: string;
  let apiKey: string;
  const secrets: string[] = [];

  const scrape = async (by = token) => {
    const res = await s.request('GET', '/metrics', { token: by });
    assert.equal(res.status, 200, res.text);
    return res;
  };

  before(async () => {
    s = await startTresorStack({ server: 'in-process', env: { TRESOR_BACKUP_INTERVAL_MINUTES: '0' } });
    token = await operatorToken(s, 'metrics:read');
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: TENANT_NAME },
    });
    assert.equal(created.status, 201, created.text);
    ({ id: tenantId, apiKey } = created.json<{ id: string; apiKey: string }>());
    const schema = await s.request('PUT', '/v1/collections/notes', {
      token: apiKey,
      body: { fields: { text: { type: 'string', classification: 'confidential' } } },
    });
    assert.ok(schema.status < 300, schema.text);
    const record = await s.request('POST', '/v1/collections/notes/records', {
      token: apiKey,
      body: { text: RECORD_VALUE },
    });
    assert.equal(record.status, 201, record.text);
    const admin = await operatorAdmin(s);
    secrets.push(token, apiKey, ...admin.secrets);
  });
  after(async () => {
    await s?.stop();
  });

  it('refuses a scrape without a token (401), with any other scope or a tenant key (403)', async () => {
    assert.equal((await s.request('GET', '/metrics')).status, 401);
    for (const scope of OPERATOR_SCOPES.filter((x) => x !== 'metrics:read')) {
      const res = await s.request('GET', '/metrics', { token: await operatorToken(s, scope) });
      assert.equal(res.status, 403, `${scope}: ${res.text}`);
    }
    assert.equal((await s.request('GET', '/metrics', { token: apiKey })).status, 403);
  });

  it('answers the Prometheus text format that promtool check metrics accepts, with every family', async () => {
    const res = await scrape();
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.equal(res.headers['cache-control'], 'no-store');
    const checked = await promtool(['check', 'metrics'], res.text);
    assert.equal(checked.code, 0, checked.output);
    // The checkpoint's time shows once this node signed one (within seconds of the first writes).
    let missing: string[] = [];
    await waitFor(
      'every family in the scrape',
      async () => {
        const names = new Set(samples((await scrape()).text).map((x) => x.name));
        missing = FAMILIES.filter((f) => !names.has(f));
        return missing.length === 0 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250, diagnostics: () => `missing: ${missing.join(', ')}` },
    );
    assert.equal(sampleValue(res.text, 'tresor_keyd_up'), 1);
    assert.equal(sampleValue(res.text, 'tresor_keyd_sealed'), 0);
    assert.equal(sampleValue(res.text, 'tresor_audit_up'), 1);
    const expiry =
      sampleValue(res.text, 'tresor_tls_certificate_expiry_timestamp_seconds', { certificate: 'server' }) ??
      0;
    assert.ok(expiry > Date.now() / 1000, 'the certificate expires in the future');
  });

  it('counts requests by route template and status, never by URL', async () => {
    const labels = { method: 'GET', route: '/metrics', status: '200' };
    const before = sampleValue((await scrape()).text, 'tresor_http_requests_total', labels) ?? 0;
    const after = sampleValue((await scrape()).text, 'tresor_http_requests_total', labels) ?? 0;
    assert.ok(after >= before + 1, `${before} → ${after}`);
    await s.request('GET', `/v1/tenants/${tenantId}/nothing-here`, { token });
    const text = (await scrape()).text;
    const routes = new Set(samples(text).flatMap((x) => (x.labels.route ? [x.labels.route] : [])));
    assert.ok(routes.has('/v1/collections/:name/records'), [...routes].join(' '));
    assert.ok(routes.has('unmatched'));
    assert.ok(
      (sampleValue(text, 'tresor_http_requests_total', { method: 'GET', route: '/metrics', status: '403' }) ??
        0) >= 1,
    );
  });

  it('shows failed console logins once the log has them', async () => {
    const failures = (text: string) =>
      sampleValue(text, 'tresor_login_failures_total', { outcome: 'failure' }) ?? 0;
    const before = failures((await scrape()).text);
    // An unknown account answers like a real one (a handle); the refusal comes at the second factor.
    const begun = await s.request('POST', '/v1/auth/login', {
      body: { side: 'operator', email: LOGIN_EMAIL, password: LOGIN_PASSWORD },
    });
    assert.equal(begun.status, 200, begun.text);
    const refused = await s.request('POST', '/v1/auth/login/second-factor', {
      body: { handle: begun.json<{ handle: string }>().handle, totp: '000000' },
    });
    assert.equal(refused.status, 401, refused.text);
    await waitFor(
      'the failed login counted',
      async () => (failures((await scrape()).text) > before ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  });

  it('shows each destination’s last backup after a backup, and its state', async () => {
    const runToken = await operatorToken(s, 'backups:run');
    secrets.push(runToken);
    // The backup's start lies between these two readings of the clock (the server's is the same).
    const asked = Math.floor(Date.now() / 1000);
    const started = await s.request('POST', '/v1/backups', { token: runToken });
    assert.equal(started.status, 202, started.text);
    const text = await waitFor(
      'both default destinations holding the backup',
      async () => {
        const t = (await scrape()).text;
        const a = sampleValue(t, 'tresor_backup_last_success_timestamp_seconds', { destination: 'a' }) ?? 0;
        const b = sampleValue(t, 'tresor_backup_last_success_timestamp_seconds', { destination: 'b' }) ?? 0;
        return a > 0 && b > 0 ? t : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const taken =
      sampleValue(text, 'tresor_backup_last_success_timestamp_seconds', { destination: 'a' }) ?? 0;
    assert.ok(taken >= asked && taken <= Date.now() / 1000, `${taken} is not this backup's start`);
    assert.equal(sampleValue(text, 'tresor_backup_destination_failing', { destination: 'a' }), 0);
    assert.equal(sampleValue(text, 'tresor_backup_interval_seconds'), 0);
    assert.ok((sampleValue(text, 'tresor_job_runs_total', { job: 'backup.run' }) ?? 0) >= 1);
    assert.ok(
      (sampleValue(text, 'tresor_keyd_calls_total', { operation: 'generateBackupDataKey', outcome: 'ok' }) ??
        0) >= 1,
    );
  });

  it('records one audit entry for a caller’s scrapes within the hour', async () => {
    const entries = (text: string) =>
      sampleValue(text, 'tresor_audit_events_total', {
        action: 'system.metrics-read',
        outcome: 'success',
        actor_kind: 'operator-admin',
      }) ?? 0;
    // Earlier tests scraped many times with this one token: one entry covers them all.
    const text = await waitFor('the first scrape’s entry sequenced', async () => {
      const t = (await scrape()).text;
      return entries(t) >= 1 ? t : undefined;
    });
    assert.equal(entries(text), 1);
    // A scrape by a session of the operator admin is another caller: its own entry.
    const admin = await operatorAdmin(s);
    const res = await admin.request('GET', '/metrics');
    assert.equal(res.status, 200, res.text);
    await waitFor('the second caller’s entry sequenced', async () =>
      entries((await scrape()).text) === 2 ? true : undefined,
    );
    // The log itself: two entries, each saying how long it covers, naming no tenant.
    await s.server?.audit.sequencer.drain();
    const logged = auditLog(s.dataDir).filter(
      (e) => e.action === 'system.metrics-read' && e.outcome === 'success',
    );
    assert.equal(logged.length, 2);
    for (const e of logged) {
      assert.equal(e.actor.kind, 'operator-admin');
      assert.deepEqual(e.target, { coversScrapesForSeconds: 3600 });
      assert.equal((e as { tenant?: unknown }).tenant, null);
    }
  });

  it('never carries a tenant id, a record value, a name, an e-mail or a secret', async () => {
    const text = (await scrape()).text;
    for (const planted of [
      tenantId,
      RECORD_VALUE,
      TENANT_NAME,
      LOGIN_EMAIL,
      LOGIN_PASSWORD,
      MARK,
      ...secrets,
    ]) {
      assert.ok(!text.includes(planted), 'a planted value appears in the scrape');
    }
  });
});
