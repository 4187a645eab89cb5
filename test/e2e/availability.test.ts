// backends: sqlite postgres
/**
 * The server's own availability probe on a real stack: off until `probe.apiKeyFile` names a probe
 * tenant's key; then every interval it probes its own URL end to end, keeps each result in the
 * control store, and GET /v1/system/availability reports availability with the error budget. A
 * server that was stopped could not probe itself: that time is counted down, bounded by the time
 * it was certainly stopped and the time from asking it to stop until it served again (widened by
 * the probe's interval and the probe's own length).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AvailabilityView } from '../../src/server/probe-job.ts';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

// Two seconds, not one: a probe delayed past two intervals leaves a gap that counts as down, and on a
// loaded 2-core machine a 1-second probe loop was late by more than 2 s (downMs 3 instead of 0).
const INTERVAL_S = 2;

describe('the server’s own availability probe', () => {
  let s: TresorStack;
  let token: string;
  const view = async () => {
    const res = await s.request('GET', '/v1/system/availability', { token });
    assert.equal(res.status, 200, res.text);
    return res.json<AvailabilityView>();
  };

  before(async () => {
    s = await startTresorStack();
    token = await operatorToken(s, 'jobs:read');
  });

  after(async () => {
    await s?.stop();
  });

  it('is off without a probe key: nothing probed, nothing observed', async () => {
    const v = await view();
    assert.equal(v.probing, false);
    assert.equal(v.report.last30Days.probes, 0);
    assert.equal(v.report.last30Days.availability, null);
    assert.equal(v.report.objective, 0.999);
    const other = await s.request('GET', '/v1/system/availability', {
      token: await operatorToken(s, 'tenants:read'),
    });
    assert.equal(other.status, 403, 'only the jobs:read scope');
  });

  it('probes its own URL end to end and counts the time it was stopped as down', async () => {
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Probe' },
    });
    assert.equal(created.status, 201, created.text);
    const apiKey = created.json<{ apiKey: string }>().apiKey;
    const keyFile = join(s.root, 'probe-key');
    writeFileSync(keyFile, apiKey, { mode: 0o600 });
    await s.stopServer();
    await s.startServer({
      TRESOR_PROBE_API_KEY_FILE: keyFile,
      TRESOR_PROBE_INTERVAL_SECONDS: String(INTERVAL_S),
      TRESOR_PROBE_CA_FILE: s.caFile,
    });
    token = await operatorToken(s, 'jobs:read');
    const probing = await waitFor(
      'three passing probes',
      async () => {
        const v = await view();
        return v.report.last30Days.probes >= 3 && v.last?.ok ? v : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.equal(probing.probing, true);
    assert.equal(probing.url, new URL(s.url).origin);
    assert.equal(probing.report.last30Days.failed, 0);
    assert.equal(probing.report.last30Days.downMs, 0);
    assert.equal(probing.report.last30Days.availability, 1);
    // Each probe's read is in the probe tenant's own log.
    const entries = (await s.request('GET', '/v1/audit/entries?limit=1000', { token: apiKey })).json<{
      entries: { entry: { action: string; target?: { collection?: string } } }[];
    }>().entries;
    assert.ok(
      entries.filter((e) => e.entry.action === 'record.read' && e.entry.target?.collection === 'tresor_probe')
        .length >= 3,
    );
    assert.ok(!s.serverOutput().includes(apiKey), 'the probe key is not in the server log');
    // …and as metrics.
    const scrape = await s.request('GET', '/metrics', { token: await operatorToken(s, 'metrics:read') });
    assert.equal(scrape.status, 200, scrape.text);
    assert.match(scrape.text, /^tresor_probe_up 1$/m);
    assert.match(scrape.text, /^tresor_availability_30d_ratio 1$/m);
    assert.match(scrape.text, /^tresor_availability_objective_ratio 0\.999$/m);
    assert.match(scrape.text, /^tresor_probe_last_timestamp_seconds \d/m);

    // An outage: the server stopped for a while.
    const before = probing.report.last30Days.downMs;
    const askedToStop = Date.now();
    await s.stopServer();
    const stopped = Date.now();
    await new Promise((r) => setTimeout(r, 4_000));
    const starting = Date.now();
    await s.startServer();
    const serving = Date.now();
    token = await operatorToken(s, 'jobs:read');
    const afterOutage = await waitFor(
      'a passing probe after the restart',
      async () => {
        const v = await view();
        return v.last?.ok && Date.parse(v.last.at) >= serving ? v : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const down = afterOutage.report.last30Days.downMs - before;
    const slack = 2 * INTERVAL_S * 1000 + 10_000;
    assert.ok(
      down >= starting - stopped - 2 * INTERVAL_S * 1000,
      `down ${down} ms; stopped for ${starting - stopped} ms`,
    );
    assert.ok(
      down <= serving - askedToStop + slack,
      `down ${down} ms; away at most ${serving - askedToStop} ms`,
    );
    assert.ok((afterOutage.report.last30Days.availability ?? 1) < 1);
    assert.ok(afterOutage.report.last30Days.errorBudget.usedDownMs >= down);
  });
});
