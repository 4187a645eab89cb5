/**
 * The detectors of staff reads, export volume, API keys from new networks and failed backups, and
 * the state checks (keyd, audit health, overdue backups, an expiring certificate — a real
 * certificate of a throwaway CA): each judged on the events and state as Tresor records them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apiKeyNetworkDetector, networkOf } from '../../src/alerts/detectors/api-key-network.ts';
import { backupEventsDetector } from '../../src/alerts/detectors/backup-events.ts';
import { exportVolumeDetector } from '../../src/alerts/detectors/export-volume.ts';
import { staffReadsDetector } from '../../src/alerts/detectors/staff-reads.ts';
import {
  auditHealthCheck,
  backupOverdueCheck,
  certificateCheck,
  keydCheck,
} from '../../src/alerts/state-checks.ts';
import type { AuditEvent } from '../../src/audit/event.ts';
import { TresorError } from '../../src/errors.ts';
import { createDevCa, issueCertificate } from '../../src/tls/dev-ca.ts';

const T0 = Date.parse('2026-12-06T10:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
const DAY = 86_400_000;

const staffRead = (seconds: number, tenant: string, recordIds: string[]): AuditEvent => ({
  at: at(seconds),
  actor: { kind: 'staff', id: 'per_sam', grantId: 'gr_1' },
  tenant,
  action: 'record.list',
  outcome: 'success',
  target: { collection: 'people', recordIds },
});

describe('staff reads', () => {
  it('bulk reads: the records returned, summed within the window', () => {
    const d = staffReadsDetector({ records: 5, tenants: 100, windowMs: 60_000 });
    assert.deepEqual(d.observe({ index: 1, event: staffRead(0, 'ten_a', ['r1', 'r2']) }), []);
    assert.deepEqual(
      d.observe({
        index: 2,
        event: { ...staffRead(1, 'ten_a', ['r3', 'r4', 'r5']), actor: { kind: 'staff', id: 'per_sam' } },
      }),
      [],
      'not through a grant: not counted (and refused anyway)',
    );
    const [signal] = d.observe({ index: 3, event: staffRead(2, 'ten_a', ['r3', 'r4', 'r5']) });
    assert.equal(signal?.kind, 'staff.bulk-reads');
    assert.deepEqual(signal?.subject, { kind: 'staff', id: 'per_sam' });
    assert.deepEqual(signal?.evidence, [1, 3]);
    assert.equal(signal?.count, 5, 'the count is in records');
  });

  it('many tenants: distinct tenants within the window', () => {
    const d = staffReadsDetector({ records: 1000, tenants: 3, windowMs: 60_000 });
    assert.deepEqual(d.observe({ index: 1, event: staffRead(0, 'ten_a', ['r']) }), []);
    assert.deepEqual(d.observe({ index: 2, event: staffRead(1, 'ten_a', ['r']) }), []);
    assert.deepEqual(d.observe({ index: 3, event: staffRead(2, 'ten_b', ['r']) }), []);
    const [signal] = d.observe({ index: 4, event: staffRead(3, 'ten_c', ['r']) });
    assert.equal(signal?.kind, 'staff.many-tenants');
    assert.deepEqual(signal?.evidence, [1, 3, 4], 'the first sighting of each tenant');
    assert.deepEqual(d.observe({ index: 5, event: staffRead(4, 'ten_c', ['r']) }), [], 'nothing new');
    assert.deepEqual(
      d.observe({ index: 6, event: staffRead(5, 'ten_d', ['r']) }).map((s) => s.evidence),
      [[6]],
    );
  });
});

describe('export volume', () => {
  it('counts one tenant’s successful exports within the window', () => {
    const d = exportVolumeDetector({ exports: 2, windowMs: 3_600_000 });
    const exported = (
      seconds: number,
      tenant: string,
      outcome: AuditEvent['outcome'] = 'success',
    ): AuditEvent => ({
      at: at(seconds),
      actor: { kind: 'api-key', id: 'ak_1' },
      tenant,
      action: 'tenant.export',
      outcome,
    });
    assert.deepEqual(d.observe({ index: 1, event: exported(0, 'ten_a') }), []);
    assert.deepEqual(d.observe({ index: 2, event: exported(1, 'ten_b') }), []);
    assert.deepEqual(d.observe({ index: 3, event: exported(2, 'ten_a', 'failure') }), []);
    const [signal] = d.observe({ index: 4, event: exported(3, 'ten_a') });
    assert.deepEqual(
      [signal?.kind, signal?.subject.id, signal?.evidence],
      ['export.volume', 'ten_a', [1, 4]],
    );
  });
});

describe('API key from a new network', () => {
  it('groups addresses by IPv4 /24 and IPv6 /48', () => {
    assert.equal(networkOf('192.0.2.77'), '192.0.2.0/24');
    assert.equal(networkOf('::ffff:192.0.2.77'), '192.0.2.0/24');
    assert.equal(networkOf('2001:db8:1:2::5'), '2001:db8:1::/48');
    assert.equal(networkOf('2001:db8::5'), '2001:db8:0::/48');
    assert.equal(networkOf('::1'), '0:0:0::/48');
    assert.equal(networkOf('not an address'), undefined);
  });

  it('learns a key’s first network silently and alerts on the next one', () => {
    const d = apiKeyNetworkDetector();
    const used = (address: string, key = 'ak_1'): AuditEvent => ({
      at: at(0),
      actor: { kind: 'api-key', id: key },
      tenant: 'ten_a',
      action: 'record.read',
      outcome: 'success',
      sourceAddress: address,
    });
    assert.deepEqual(d.observe({ index: 1, event: used('192.0.2.7') }), []);
    assert.deepEqual(d.observe({ index: 2, event: used('192.0.2.200') }), [], 'same /24');
    assert.deepEqual(
      d.observe({ index: 3, event: used('198.51.100.1', 'ak_2') }),
      [],
      'another key learns its own',
    );
    const [signal] = d.observe({ index: 4, event: used('203.0.113.9') });
    assert.deepEqual(
      [signal?.kind, signal?.subject, signal?.evidence],
      ['api-key.new-network', { kind: 'api-key', id: 'ak_1' }, [4]],
    );
    assert.deepEqual(d.observe({ index: 5, event: used('203.0.113.10') }), [], 'learned now');
  });
});

describe('failed backups', () => {
  it('raises per destination that did not take it, and for a run nobody holds', () => {
    const d = backupEventsDetector();
    const run = (outcome: string, held: Record<string, boolean>): AuditEvent => ({
      at: at(0),
      actor: { kind: 'system', id: 'backup' },
      tenant: null,
      action: 'backup.create',
      outcome: outcome === 'done' ? 'success' : 'failure',
      target: {
        backupId: 'b1',
        outcome,
        destinations: Object.entries(held).map(([name, ok]) => ({ name, held: ok, attempts: 1 })),
      },
    });
    assert.deepEqual(d.observe({ index: 1, event: run('done', { a: true, b: true }) }), []);
    assert.deepEqual(
      d
        .observe({ index: 2, event: run('partial', { a: true, b: false }) })
        .map((s) => [s.kind, s.subject.id]),
      [['backup.destination-failing', 'b']],
    );
    assert.deepEqual(
      d
        .observe({ index: 3, event: run('failed', { a: false, b: false }) })
        .map((s) => [s.kind, s.subject.id]),
      [
        ['backup.destination-failing', 'a'],
        ['backup.destination-failing', 'b'],
        ['backup.failed', 'backup'],
      ],
    );
  });
});

describe('state checks', () => {
  const now = new Date(T0);

  it('keyd: sealed, unreachable, or fine', async () => {
    assert.equal(await keydCheck(async () => ({ status: 'ok' })).run(now), undefined);
    assert.equal((await keydCheck(async () => ({ status: 'sealed' })).run(now))?.kind, 'keyd.sealed');
    const sealed = keydCheck(async () => {
      throw new TresorError('TRESOR_ERR_KEYD_SEALED', 'sealed');
    });
    assert.equal((await sealed.run(now))?.kind, 'keyd.sealed');
    const gone = keydCheck(async () => {
      throw new TresorError('TRESOR_ERR_KEYD_UNAVAILABLE', 'no answer');
    });
    const signal = await gone.run(now);
    assert.deepEqual(
      [signal?.kind, signal?.severity, signal?.subject, signal?.evidence],
      ['keyd.unreachable', 'critical', { kind: 'component', id: 'keyd' }, []],
    );
  });

  it('audit: the log’s own verdict', async () => {
    assert.equal(await auditHealthCheck(() => ({ ok: true })).run(now), undefined);
    assert.equal((await auditHealthCheck(() => ({ ok: false })).run(now))?.kind, 'audit.unhealthy');
  });

  it('backups: overdue after the newest completed one, or after the start before any', async () => {
    const check = (last: string | undefined) =>
      backupOverdueCheck({
        lastDone: async () => last,
        overdueMs: 60 * 60_000,
        since: new Date(T0 - 30 * 60_000),
      });
    assert.equal(await check(undefined).run(now), undefined, 'started 30 minutes ago');
    assert.equal(await check(new Date(T0 - 59 * 60_000).toISOString()).run(now), undefined);
    assert.equal((await check(new Date(T0 - 61 * 60_000).toISOString()).run(now))?.kind, 'backup.overdue');
  });

  it('certificate: expiring within the threshold', async () => {
    const ca = await createDevCa({ commonName: 'alerts test CA' });
    const cert = await issueCertificate(ca, {
      commonName: 'localhost',
      sans: { dns: ['localhost'] },
      usage: 'server',
      days: 10,
    });
    const within = (days: number) =>
      certificateCheck({ certificatePem: () => cert.certPem, withinMs: days * DAY });
    const today = new Date();
    assert.equal(await within(5).run(today), undefined);
    assert.equal((await within(14).run(today))?.kind, 'certificate.expiring');
  });
});
