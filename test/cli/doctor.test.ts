/**
 * `tresor doctor` on a development deployment (test/helpers/tresor-stack.ts: keyd with the
 * development key file, backups to the default folders, rate limits raised for tests): it fails,
 * naming those, while what holds (keyd unsealed on a Unix socket, TLS 1.2+ only, a trusted
 * certificate, the clock, operator tokens) passes. The production setup passing is proven by
 * docs/operations.md, run as written (test/e2e/operations-doc.test.ts). The verdicts themselves are
 * tested case by case (doctor-checks).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  auditCheck,
  backupChecks,
  clockCheck,
  isPublicAddress,
  keydChannelCheck,
  operatorTokenCheck,
  rateLimitCheck,
  storeChecks,
  tlsChecks,
} from '../../src/cli/doctor-checks.ts';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { tresor } from './cli-run.ts';

const NOW = new Date('2026-12-06T12:00:00.000Z');
const DAY = 86_400_000;

describe('tresor doctor on a development deployment', () => {
  let s: TresorStack;

  before(async () => {
    s = await startTresorStack();
    await operatorToken(s, 'tenants:read');
  });

  after(async () => {
    await s?.stop();
  });

  it('fails on the development root key and the backups on the data’s disk; passes what holds', async () => {
    const run = await tresor(
      ['doctor', '--data-dir', s.dataDir, '--url', s.url, '--ca-file', s.caFile, '--json'],
      {
        env: { TRESOR_KEYD_SOCKET: s.keydSocket, TRESOR_RATE_LIMIT_PER_KEY: '1000000' },
      },
    );
    assert.equal(run.status, 1, run.stderr);
    const body = JSON.parse(run.stdout) as {
      ok: boolean;
      checks: { id: string; verdict: string; detail: string }[];
    };
    assert.equal(body.ok, false);
    const verdict = Object.fromEntries(body.checks.map((c) => [c.id, c.verdict]));
    assert.deepEqual(verdict, {
      'keyd.network': 'pass',
      'keyd.root-key': 'fail',
      'keyd.sealed': 'pass',
      'store.network': 'pass',
      'store.permissions': 'pass',
      'tls.settings': 'pass',
      'tls.certificate': 'pass',
      'clock.skew': 'pass',
      'backups.destinations': 'fail',
      'backups.fresh': 'fail',
      'audit.verified': 'fail',
      'rate-limits': 'fail',
      'operator-tokens': 'pass',
    });
    const table = await tresor(['doctor', '--data-dir', s.dataDir, '--url', s.url, '--ca-file', s.caFile], {
      env: { TRESOR_KEYD_SOCKET: s.keydSocket },
    });
    assert.equal(table.status, 1);
    assert.match(table.stdout, /keyd\.root-key\s+FAIL\s+the root key is a development key file/);
    assert.match(table.stdout, /rate-limits\s+PASS/);
  });

  it('an untrusted certificate and an unreachable keyd fail', async () => {
    const run = await tresor(['doctor', '--data-dir', s.dataDir, '--url', s.url, '--json'], {
      env: { TRESOR_KEYD_SOCKET: `${s.keydSocket}.nobody` },
    });
    assert.equal(run.status, 1);
    const checks = (JSON.parse(run.stdout) as { checks: { id: string; verdict: string }[] }).checks;
    assert.equal(checks.find((c) => c.id === 'tls.certificate')?.verdict, 'fail');
    assert.equal(checks.find((c) => c.id === 'keyd.sealed')?.verdict, 'fail');
  });
});

describe('doctor verdicts', () => {
  it('public and private addresses', () => {
    for (const ip of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.1.1',
      '::1',
      'fd00::1',
      'fe80::1',
      '::ffff:10.0.0.1',
    ])
      assert.equal(isPublicAddress(ip), false, ip);
    for (const ip of ['8.8.8.8', '172.32.0.1', '2001:db8::1', '::ffff:1.1.1.1'])
      assert.equal(isPublicAddress(ip), true, ip);
    assert.equal(keydChannelCheck({ kind: 'tls', host: 'keyd', addresses: ['10.0.0.5'] }).verdict, 'pass');
    assert.equal(
      keydChannelCheck({ kind: 'tls', host: 'keyd', addresses: ['10.0.0.5', '203.0.113.9'] }).verdict,
      'fail',
    );
    assert.equal(keydChannelCheck({ kind: 'tls', host: 'keyd', addresses: [] }).verdict, 'fail');
  });

  it('the certificate: trusted and valid, expiring, expired, untrusted; TLS 1.1 accepted', () => {
    const base = { protocol: 'TLSv1.3', refusesOld: true, authorized: true };
    const v = (validTo: string) =>
      tlsChecks({ ...base, validTo }, NOW).find((c) => c.id === 'tls.certificate')?.verdict;
    assert.equal(v(new Date(NOW.getTime() + 90 * DAY).toISOString()), 'pass');
    assert.equal(v(new Date(NOW.getTime() + 20 * DAY).toISOString()), 'warn');
    assert.equal(v(new Date(NOW.getTime() + 3 * DAY).toISOString()), 'fail');
    assert.equal(v(new Date(NOW.getTime() - DAY).toISOString()), 'fail');
    const untrusted = tlsChecks({ ...base, authorized: false, validTo: NOW.toISOString() }, NOW);
    assert.equal(untrusted.find((c) => c.id === 'tls.certificate')?.verdict, 'fail');
    assert.equal(
      tlsChecks({ ...base, refusesOld: false }, NOW).find((c) => c.id === 'tls.settings')?.verdict,
      'fail',
    );
    assert.equal(tlsChecks({ unreachable: 'ECONNREFUSED', refusesOld: true }, NOW)[0]?.verdict, 'fail');
  });

  it('backups: apart from the data, fresh, verified', () => {
    const apart = [
      { name: 'a', kind: 'folder', underDataDir: false },
      { name: 'b', kind: 's3', underDataDir: false },
    ];
    const fresh = { id: 'b1', startedAt: new Date(NOW.getTime() - 60 * 60_000).toISOString() };
    const ok = backupChecks(
      { destinations: apart, defaultDestinations: false, intervalMinutes: 360, newestDone: fresh },
      NOW,
    );
    assert.deepEqual(
      ok.map((c) => c.verdict),
      ['pass', 'pass'],
    );
    const oneApart = backupChecks(
      {
        destinations: [apart[0] as (typeof apart)[0], { name: 'c', kind: 'folder', underDataDir: true }],
        defaultDestinations: false,
        intervalMinutes: 360,
        newestDone: fresh,
      },
      NOW,
    );
    assert.equal(oneApart[0]?.verdict, 'fail');
    const stale = backupChecks(
      {
        destinations: apart,
        defaultDestinations: false,
        intervalMinutes: 360,
        newestDone: { id: 'b0', startedAt: new Date(NOW.getTime() - 13 * 3_600_000).toISOString() },
      },
      NOW,
    );
    assert.equal(stale[1]?.verdict, 'fail');
    const facts = { destinations: apart, defaultDestinations: false, intervalMinutes: 360 };
    assert.equal(
      auditCheck(
        { ...facts, newestVerified: { id: 'b1', at: new Date(NOW.getTime() - DAY).toISOString() } },
        NOW,
      ).verdict,
      'pass',
    );
    assert.equal(
      auditCheck(
        { ...facts, newestVerified: { id: 'b1', at: new Date(NOW.getTime() - 3 * DAY).toISOString() } },
        NOW,
      ).verdict,
      'fail',
    );
    assert.equal(auditCheck(facts, NOW).verdict, 'fail');
  });

  it('clock, rate limits, store permissions, operator tokens', () => {
    assert.equal(clockCheck(new Date(NOW.getTime() + 2_000).toUTCString(), NOW).verdict, 'pass');
    assert.equal(clockCheck(new Date(NOW.getTime() - 60_000).toUTCString(), NOW).verdict, 'fail');
    assert.equal(clockCheck(undefined, NOW).verdict, 'fail');
    const defaults = { perAddress: 300, perKey: 600 };
    assert.equal(rateLimitCheck({ ...defaults, windowMs: 60_000 }, defaults).verdict, 'pass');
    assert.equal(
      rateLimitCheck({ perAddress: 300, perKey: 1_000_000, windowMs: 60_000 }, defaults).verdict,
      'fail',
    );
    assert.equal(storeChecks({ kind: 'sqlite', dataDir: '/d', mode: 0o40700 })[1]?.verdict, 'pass');
    assert.equal(storeChecks({ kind: 'sqlite', dataDir: '/d', mode: 0o40755 })[1]?.verdict, 'fail');
    const made = NOW.toISOString();
    assert.equal(
      operatorTokenCheck(
        [{ id: 't1', createdAt: made, expiresAt: new Date(NOW.getTime() + 30 * DAY).toISOString() }],
        NOW,
      ).verdict,
      'pass',
    );
    assert.equal(operatorTokenCheck([{ id: 't2', createdAt: made, expiresAt: null }], NOW).verdict, 'fail');
    assert.equal(
      operatorTokenCheck(
        [{ id: 't3', createdAt: made, expiresAt: new Date(NOW.getTime() + 400 * DAY).toISOString() }],
        NOW,
      ).verdict,
      'fail',
    );
    assert.equal(
      operatorTokenCheck(
        [{ id: 't4', createdAt: made, expiresAt: new Date(NOW.getTime() - DAY).toISOString() }],
        NOW,
      ).verdict,
      'pass',
      'an expired token is no longer a risk',
    );
  });
});
