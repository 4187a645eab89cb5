/**
 * Alerts as a domain, on a real migrated control store: detectors judge audit events as the log
 * holds them, the service opens one alert per kind and subject and bumps it with more evidence,
 * keeps its evidence bounded, and lets a person acknowledge and resolve it — each step committed
 * with its audit event — after which new evidence opens a new alert.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_EVIDENCE } from '../../src/alerts/alert-vocabulary.ts';
import { createAlertService, mergeEvidence } from '../../src/alerts/alerts.ts';
import {
  breakGlassDetector,
  noGrantDetector,
  tenantClosureDetector,
} from '../../src/alerts/detectors/access-events.ts';
import { bruteForceDetector } from '../../src/alerts/detectors/brute-force.ts';
import { createThresholdWindow } from '../../src/alerts/detectors/threshold-window.ts';
import type { AuditEvent } from '../../src/audit/event.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';

const T0 = Date.parse('2026-12-06T10:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
const failedLogin = (seconds: number, personId: string | undefined, address: string): AuditEvent => ({
  at: at(seconds),
  actor: { kind: personId ? 'staff' : 'anonymous', id: personId ?? 'anonymous' },
  tenant: null,
  action: 'auth.login',
  outcome: 'failure',
  target: { step: 'password', reason: 'wrong-password', ...(personId ? { personId } : {}) },
  sourceAddress: address,
});

describe('threshold window', () => {
  it('answers every unreported occurrence when the threshold is reached, then each further one alone', () => {
    const w = createThresholdWindow({ threshold: 3, windowMs: 60_000 });
    assert.equal(w.hit('a', at(0), 10), undefined);
    assert.equal(w.hit('a', at(1), 11), undefined);
    assert.deepEqual(w.hit('a', at(2), 12), { evidence: [10, 11, 12], weight: 3 });
    assert.deepEqual(w.hit('a', at(3), 13), { evidence: [13], weight: 1 });
    assert.equal(w.hit('b', at(3), 14), undefined, 'keys count apart');
  });

  it('forgets occurrences older than the window (by the entries’ own times)', () => {
    const w = createThresholdWindow({ threshold: 2, windowMs: 60_000 });
    assert.equal(w.hit('a', at(0), 1), undefined);
    assert.equal(w.hit('a', at(61), 2), undefined, 'the first one is out of the window');
    assert.deepEqual(w.hit('a', at(62), 3), { evidence: [2, 3], weight: 2 });
  });

  it('keeps at most maxKeys keys', () => {
    const w = createThresholdWindow({ threshold: 2, windowMs: 60_000, maxKeys: 2 });
    w.hit('a', at(0), 1);
    w.hit('b', at(0), 2);
    w.hit('c', at(0), 3); // drops a, the stalest
    assert.equal(w.hit('a', at(1), 4), undefined, 'a starts again from one');
    assert.deepEqual(w.hit('c', at(1), 5), { evidence: [3, 5], weight: 2 });
  });
});

describe('built-in detectors', () => {
  it('brute force: per account and per address, each at its own threshold; successes do not count', () => {
    const d = bruteForceDetector({ accountFailures: 3, addressFailures: 4, windowMs: 60_000 });
    const signals = [
      d.observe({ index: 1, event: failedLogin(0, 'per_1', '192.0.2.7') }),
      d.observe({ index: 2, event: { ...failedLogin(1, 'per_1', '192.0.2.7'), outcome: 'success' } }),
      d.observe({ index: 3, event: failedLogin(2, 'per_1', '192.0.2.7') }),
      d.observe({ index: 4, event: failedLogin(3, undefined, '192.0.2.7') }),
      d.observe({ index: 5, event: { ...failedLogin(4, 'per_1', '192.0.2.7'), outcome: 'denied' } }),
    ];
    assert.deepEqual(signals.slice(0, 4), [[], [], [], []]);
    const last = signals[4] ?? [];
    assert.deepEqual(
      last.map((s) => [s.kind, s.subject, s.evidence, s.count]),
      [
        ['brute-force.account', { kind: 'account', id: 'per_1' }, [1, 3, 5], 3],
        ['brute-force.address', { kind: 'address', id: '192.0.2.7' }, [1, 3, 4, 5], 4],
      ],
    );
  });

  it('break-glass: every successful one, critical, about the officer', () => {
    const d = breakGlassDetector();
    const event: AuditEvent = {
      at: at(0),
      actor: { kind: 'staff', id: 'per_sec' },
      tenant: 'ten_1',
      action: 'grant.break-glass',
      outcome: 'success',
    };
    assert.deepEqual(d.observe({ index: 7, event: { ...event, outcome: 'denied' } }), []);
    const [signal] = d.observe({ index: 8, event });
    assert.equal(signal?.severity, 'critical');
    assert.deepEqual(signal?.subject, { kind: 'staff', id: 'per_sec' });
    assert.deepEqual(signal?.evidence, [8]);
  });

  it('refused without a grant: staff denied on tenant-data routes only', () => {
    const d = noGrantDetector({ refusals: 1, windowMs: 60_000 });
    const denied = (route: string, kind: AuditEvent['actor']['kind'] = 'staff'): AuditEvent => ({
      at: at(0),
      actor: { kind, id: 'per_sam' },
      tenant: null,
      action: 'record.read',
      outcome: 'denied',
      target: { route, problem: 'TRESOR_ERR_FORBIDDEN' },
    });
    assert.deepEqual(d.observe({ index: 1, event: denied('GET /v1/tenants') }), []);
    assert.deepEqual(
      d.observe({ index: 2, event: denied('GET /v1/collections/:name/records/:id', 'customer') }),
      [],
    );
    const [signal] = d.observe({ index: 3, event: denied('GET /v1/collections/:name/records/:id') });
    assert.equal(signal?.kind, 'access.refused-no-grant');
    assert.deepEqual(signal?.evidence, [3]);
  });

  it('tenant closure: a successful close, not its retries', () => {
    const d = tenantClosureDetector();
    const close: AuditEvent = {
      at: at(0),
      actor: { kind: 'operator-admin', id: 'per_admin' },
      tenant: 'ten_9',
      action: 'tenant.close',
      outcome: 'success',
      target: { reason: 'contract-end' },
    };
    assert.deepEqual(d.observe({ index: 1, event: { ...close, target: { retry: true } } }), []);
    assert.deepEqual(
      d.observe({ index: 2, event: close }).map((s) => s.subject),
      [{ kind: 'tenant', id: 'ten_9' }],
    );
  });
});

describe('alert service', () => {
  let store: TestControlStore;
  let now = new Date(T0);
  before(async () => {
    store = await openTestControlStore('alerts');
  });
  after(() => store.close());

  const signal = (evidence: number[], seconds: number) => ({
    kind: 'brute-force.account' as const,
    severity: 'high' as const,
    subject: { kind: 'account' as const, id: 'per_1' },
    at: at(seconds),
    evidence,
    count: evidence.length,
  });
  const auditEvent = (action: string): AuditEvent => ({
    at: now.toISOString(),
    actor: { kind: 'staff', id: 'per_sec' },
    tenant: null,
    action,
    outcome: 'success',
  });

  it('opens one alert per kind and subject; more evidence bumps it', async () => {
    const service = createAlertService({ control: store.control, now: () => now });
    const first = await store.control.write((trx) => service.raiseIn(trx, signal([1, 2, 3], 0)));
    const second = await store.control.write((trx) => service.raiseIn(trx, signal([4], 5)));
    assert.equal(first.opened, true);
    assert.deepEqual(second, { id: first.id, opened: false });
    const alert = await service.get(first.id);
    assert.equal(alert?.count, 4);
    assert.deepEqual(alert?.evidence, [1, 2, 3, 4]);
    assert.equal(alert?.firstSeen, at(0));
    assert.equal(alert?.lastSeen, at(5));
    assert.equal((await service.list({ limit: 10 })).length, 1);
  });

  it('keeps the evidence bounded: the first ones and the newest', () => {
    const merged = mergeEvidence(
      [],
      Array.from({ length: 120 }, (_, i) => i),
    );
    assert.equal(merged.length, MAX_EVIDENCE);
    assert.deepEqual(merged.slice(0, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(merged.at(-1), 119);
  });

  it('acknowledges and resolves with the audit event in the same commit; then new evidence opens a new alert', async () => {
    const service = createAlertService({ control: store.control, now: () => now });
    const [open] = await service.list({ state: 'open', limit: 10 });
    assert.ok(open);
    now = new Date(T0 + 60_000);
    const acked = await service.acknowledge(
      open.id,
      { by: 'per_sec', note: 'looking' },
      auditEvent('alert.acknowledge'),
    );
    assert.equal(acked.state, 'acknowledged');
    assert.deepEqual(acked.acknowledged, { by: 'per_sec', at: now.toISOString(), note: 'looking' });
    await assert.rejects(
      service.acknowledge(open.id, { by: 'per_sec', note: 'again' }, auditEvent('alert.acknowledge')),
      { code: 'TRESOR_ERR_ALERT_STATE' },
    );
    const bumped = await store.control.write((trx) => service.raiseIn(trx, signal([9], 70)));
    assert.deepEqual(
      bumped,
      { id: open.id, opened: false },
      'an acknowledged alert still takes the evidence',
    );
    const resolved = await service.resolve(
      open.id,
      { by: 'per_sec', note: 'a forgotten password' },
      auditEvent('alert.resolve'),
    );
    assert.equal(resolved.state, 'resolved');
    await assert.rejects(
      service.resolve(open.id, { by: 'per_sec', note: 'x' }, auditEvent('alert.resolve')),
      { code: 'TRESOR_ERR_ALERT_STATE' },
    );
    await assert.rejects(
      service.resolve(
        'alr_000000000000000000000000',
        { by: 'per_sec', note: 'x' },
        auditEvent('alert.resolve'),
      ),
      { code: 'TRESOR_ERR_ALERT_NOT_FOUND' },
    );
    const actions = await store.control.db.selectFrom('audit_events').select('action').execute();
    assert.deepEqual(
      actions.map((a) => a.action),
      ['alert.acknowledge', 'alert.resolve'],
      'one audit event per step taken; refusals commit nothing',
    );
    const reopened = await store.control.write((trx) => service.raiseIn(trx, signal([10], 80)));
    assert.equal(reopened.opened, true);
    assert.notEqual(reopened.id, open.id);
  });
});
