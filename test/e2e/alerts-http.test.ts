/**
 * Alerts end to end, on a real stack (`tresor server` and `tresor keyd` processes) configured as an
 * operator would — thresholds, a webhook with its secret in a file, SMTP with STARTTLS and its
 * password in a file — with a real HTTPS webhook receiver (it checks every signature and answers
 * 500 to the first request) and a real SMTP server on loopback:
 *
 * - bad sign-ins over HTTP raise `brute-force.account` and `brute-force.address`, whose evidence
 *   indices point at the real `auth.login` failures in the audit log; more failures bump the count
 *   of the same alert;
 * - a support agent reaching for records without a grant raises `access.refused-no-grant`; a
 *   break-glass grant raises `break-glass.used`; closing a tenant raises `tenant.closed`;
 * - the security officer acknowledges and resolves, both in the audit log; nobody else may, and an
 *   `alerts:read` token only reads;
 * - every opened alert reaches the webhook (signed, retried after the 500) and the mailbox, and no
 *   secret shows up in a delivery, in the alerts or in the server's logs.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AlertView } from '../../src/alerts/alerts.ts';
import {
  type ConsoleAccount,
  type ConsoleSession,
  consoleClient,
  operatorAdmin,
  operatorToken,
} from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { untilEvent, waitFor } from '../helpers/wait.ts';
import {
  type LoopbackCa,
  loopbackCa,
  type SmtpReceiver,
  startSmtpReceiver,
  startWebhookReceiver,
  verifySignature,
  type WebhookReceiver,
} from '../monitor/alerts-receivers.ts';

/** Generous: the machine is loaded, and the watch and the deliveries run after the requests. */
const WAIT = { timeoutMs: 90_000, intervalMs: 200 };

interface Entry {
  index: number;
  entry: {
    action: string;
    outcome: string;
    actor: { kind: string; id: string };
    target?: Record<string, unknown>;
  };
}

describe('alerts over HTTP, on a real stack', { timeout: 600_000 }, () => {
  let s: TresorStack;
  let tls: LoopbackCa;
  let webhook: WebhookReceiver;
  let smtp: SmtpReceiver;
  let files: string;
  const webhookSecret = randomBytes(32).toString('hex');
  const smtpPassword = `smtp-${randomBytes(12).toString('hex')}`;
  let c: ReturnType<typeof consoleClient>;
  let sec: { account: ConsoleAccount; session: ConsoleSession };
  let sam: { account: ConsoleAccount; session?: ConsoleSession };
  const tenants: { id: string; apiKey: string }[] = [];

  const asSec = (method: string, path: string, body?: unknown) => c.as(sec.session, method, path, body);
  const alertsOf = async (query = '') => {
    const res = await asSec('GET', `/v1/alerts${query}`);
    assert.equal(res.status, 200, res.text);
    return res.json<{ alerts: AlertView[] }>().alerts;
  };
  const alertWhere = (what: string, pick: (a: AlertView) => boolean) =>
    waitFor(what, async () => (await alertsOf()).find(pick), WAIT);
  const entryAt = async (index: number): Promise<Entry> => {
    const res = await asSec('GET', `/v1/audit/entries?from=${index}&limit=1`);
    assert.equal(res.status, 200, res.text);
    const [entry] = res.json<{ entries: Entry[] }>().entries;
    assert.ok(entry && entry.index === index, `audit entry ${index}`);
    return entry;
  };
  /** A wrong password: the password step answers like a right one (a handle), and audits the failure. */
  const badLogin = async (email: string) => {
    const res = await s.request('POST', '/v1/auth/login', {
      body: { side: 'operator', email, password: 'not the password at all' },
    });
    assert.equal(res.status, 200, res.text);
  };

  before(async () => {
    tls = await loopbackCa();
    webhook = await startWebhookReceiver({ tls, secret: Buffer.from(webhookSecret, 'utf8'), failFirst: 1 });
    smtp = await startSmtpReceiver({ tls, user: 'tresor-alerts', password: smtpPassword });
    files = mkdtempSync(join(tmpdir(), 'tresor-alerts-e2e-'));
    writeFileSync(join(files, 'ca.pem'), tls.ca.certPem);
    writeFileSync(join(files, 'webhook-secret'), `${webhookSecret}\n`, { mode: 0o600 });
    writeFileSync(join(files, 'smtp-password'), `${smtpPassword}\n`, { mode: 0o600 });
    s = await startTresorStack({
      env: {
        // No sign-in delays in the way of the test (the lockout stays at 10).
        TRESOR_LOGIN_DELAY_AFTER: '100',
        TRESOR_LOGIN_ADDRESS_DELAY_AFTER: '100000',
        TRESOR_ALERTS_BRUTE_FORCE_ACCOUNT_FAILURES: '5',
        TRESOR_ALERTS_BRUTE_FORCE_ADDRESS_FAILURES: '6',
        TRESOR_ALERTS_RETRY_BASE_MS: '50',
        TRESOR_ALERTS_STAFF_RECORD_READS: '3',
        TRESOR_ALERTS_EXPORTS: '2',
        TRESOR_ALERTS_CHECK_INTERVAL_SECONDS: '1',
        // The test speaks for a load balancer on loopback: X-Forwarded-For names the client.
        TRESOR_TRUST_PROXY: '127.0.0.1',
        TRESOR_ALERTS_WEBHOOK_URL: webhook.url,
        TRESOR_ALERTS_WEBHOOK_SECRET_FILE: join(files, 'webhook-secret'),
        TRESOR_ALERTS_WEBHOOK_CA: join(files, 'ca.pem'),
        TRESOR_ALERTS_SMTP_HOST: '127.0.0.1',
        TRESOR_ALERTS_SMTP_PORT: String(smtp.port),
        TRESOR_ALERTS_SMTP_TLS: 'starttls',
        TRESOR_ALERTS_SMTP_USER: 'tresor-alerts',
        TRESOR_ALERTS_SMTP_PASSWORD_FILE: join(files, 'smtp-password'),
        TRESOR_ALERTS_SMTP_CA: join(files, 'ca.pem'),
        TRESOR_ALERTS_MAIL_FROM: 'tresor@ops.test',
        TRESOR_ALERTS_MAIL_TO: 'security@ops.test',
      },
    });
    c = consoleClient(s);
    for (const name of ['Alpha', 'Beta']) {
      const created = await s.request('POST', '/v1/tenants', {
        token: await operatorToken(s, 'tenants:create'),
        body: { name },
      });
      assert.equal(created.status, 201, created.text);
      tenants.push(created.json<{ id: string; apiKey: string }>());
    }
    const alpha = tenants[0] as { apiKey: string };
    const put = await s.request('PUT', '/v1/collections/people', {
      token: alpha.apiKey,
      body: { fields: { email: { type: 'string', classification: 'confidential' } } },
    });
    assert.equal(put.status, 201, put.text);
    for (let i = 0; i < 3; i++) {
      const rec = await s.request('POST', '/v1/collections/people/records', {
        token: alpha.apiKey,
        body: { email: `alerts-canary-${i}@example.test` },
      });
      assert.equal(rec.status, 201, rec.text);
    }
    const secAccount = await c.createAndEnrol({
      side: 'operator',
      role: 'security-officer',
      email: 'sec@tresor.test',
    });
    sec = { account: secAccount, session: await c.login(secAccount) };
    sam = {
      account: await c.createAndEnrol({ side: 'operator', role: 'support-agent', email: 'sam@tresor.test' }),
    };
  });

  after(async () => {
    await s?.stop();
    await webhook?.close();
    await smtp?.close();
    if (files) rmSync(files, { recursive: true, force: true });
  });

  it('raises brute force per account and per address, with the failed sign-ins as evidence; more failures bump it', async () => {
    for (let i = 0; i < 5; i++) await badLogin(sam.account.email);
    const account = await alertWhere(
      'the brute-force.account alert',
      (a) => a.kind === 'brute-force.account' && a.subject.id === sam.account.id,
    );
    assert.equal(account.severity, 'high');
    assert.equal(account.state, 'open');
    assert.equal(account.count, 5);
    assert.equal(account.evidence.length, 5);
    for (const index of account.evidence) {
      const { entry } = await entryAt(index);
      assert.equal(entry.action, 'auth.login');
      assert.equal(entry.outcome, 'failure');
      assert.equal(entry.target?.personId, sam.account.id);
    }

    for (let i = 0; i < 2; i++) await badLogin(sam.account.email);
    const bumped = await alertWhere('the account alert at 7', (a) => a.id === account.id && a.count === 7);
    assert.equal(bumped.evidence.length, 7);
    assert.equal(bumped.firstSeen, account.firstSeen);
    const all = await alertsOf();
    assert.equal(all.filter((a) => a.kind === 'brute-force.account').length, 1, 'one alert, not a new one');

    const address = await alertWhere(
      'the brute-force.address alert',
      (a) => a.kind === 'brute-force.address' && a.count === 7,
    );
    assert.deepEqual(address.subject, { kind: 'address', id: '127.0.0.1' });
    for (const index of address.evidence) assert.equal((await entryAt(index)).entry.action, 'auth.login');
  });

  it('raises access.refused-no-grant when a support agent reaches for records without a grant', async () => {
    sam.session = await c.login(sam.account);
    const refused = await c.as(sam.session, 'GET', '/v1/collections/people/records?limit=1');
    assert.equal(refused.status, 403, refused.text);
    const alert = await alertWhere('the no-grant alert', (a) => a.kind === 'access.refused-no-grant');
    assert.deepEqual(alert.subject, { kind: 'staff', id: sam.account.id });
    const { entry } = await entryAt(alert.evidence[0] as number);
    assert.equal(entry.outcome, 'denied');
    assert.equal(entry.actor.id, sam.account.id);
  });

  it('raises break-glass.used (critical) and tenant.closed', async () => {
    const tenant = tenants[0] as { id: string };
    const opened = await asSec('POST', '/v1/grants/break-glass', {
      tenant: tenant.id,
      collections: '*',
      access: 'read',
      reason: 'incident 17: alert pipeline check',
      ticket: 'INC-17',
    });
    assert.equal(opened.status, 201, opened.text);
    const glass = await alertWhere('the break-glass alert', (a) => a.kind === 'break-glass.used');
    assert.equal(glass.severity, 'critical');
    assert.deepEqual(glass.subject, { kind: 'staff', id: sec.account.id });
    assert.equal((await entryAt(glass.evidence[0] as number)).entry.action, 'grant.break-glass');

    // Paging through the customer's records with it: staff.bulk-reads (threshold 3 records).
    const listed = await c.as(sec.session, 'GET', '/v1/collections/people/records?limit=10', undefined, {
      'tresor-grant': opened.json<{ id: string }>().id,
    });
    assert.equal(listed.status, 200, listed.text);
    const bulk = await alertWhere('the staff.bulk-reads alert', (a) => a.kind === 'staff.bulk-reads');
    assert.deepEqual(bulk.subject, { kind: 'staff', id: sec.account.id });
    assert.equal(bulk.count, 3, 'counted in records');
    const read = await entryAt(bulk.evidence[0] as number);
    assert.equal(read.entry.action, 'record.list');

    const closing = tenants[1] as { id: string };
    const admin = await operatorAdmin(s);
    const closed = await admin.request('POST', `/v1/tenants/${closing.id}/close`, { reason: 'alerts test' });
    assert.ok([200, 202].includes(closed.status), closed.text);
    const alert = await alertWhere('the tenant.closed alert', (a) => a.kind === 'tenant.closed');
    assert.deepEqual(alert.subject, { kind: 'tenant', id: closing.id });
    assert.equal((await entryAt(alert.evidence[0] as number)).entry.action, 'tenant.close');
  });

  it('raises export.volume for repeated full exports, and api-key.new-network for a key used from elsewhere', async () => {
    const alpha = tenants[0] as { id: string; apiKey: string };
    for (let i = 0; i < 2; i++) {
      const exported = await s.request('POST', '/v1/export', {
        token: alpha.apiKey,
        body: { passphrase: 'a long export passphrase' },
      });
      assert.equal(exported.status, 200, exported.text);
    }
    const volume = await alertWhere('the export.volume alert', (a) => a.kind === 'export.volume');
    assert.deepEqual(volume.subject, { kind: 'tenant', id: alpha.id });
    assert.equal(volume.evidence.length, 2);
    for (const index of volume.evidence) assert.equal((await entryAt(index)).entry.action, 'tenant.export');

    // So far the key came from 127.0.0.1; now from another network (through the trusted proxy).
    const elsewhere = await s.request('GET', '/v1/collections/people/records?limit=1', {
      token: alpha.apiKey,
      headers: { 'x-forwarded-for': '203.0.113.5' },
    });
    assert.equal(elsewhere.status, 200, elsewhere.text);
    const network = await alertWhere(
      'the api-key.new-network alert',
      (a) => a.kind === 'api-key.new-network',
    );
    assert.equal(network.subject.kind, 'api-key');
    const used = await entryAt(network.evidence[0] as number);
    assert.equal(used.entry.actor.id, network.subject.id);
    assert.equal((used.entry as { sourceAddress?: string }).sourceAddress, '203.0.113.5');
  });

  it('lets the security officer acknowledge and resolve, audited; refuses everyone else and bad input', async () => {
    const [alert] = (await alertsOf()).filter((a) => a.kind === 'brute-force.account');
    assert.ok(alert);
    const acked = await asSec('POST', `/v1/alerts/${alert.id}/acknowledge`, { note: 'calling sam' });
    assert.equal(acked.status, 200, acked.text);
    assert.equal(acked.json<AlertView>().state, 'acknowledged');
    assert.equal(acked.json<AlertView>().acknowledged?.by, sec.account.id);
    const again = await asSec('POST', `/v1/alerts/${alert.id}/acknowledge`, { note: 'again' });
    assert.equal(again.status, 409, again.text);
    assert.equal(again.json<{ code: string }>().code, 'TRESOR_ERR_ALERT_STATE');

    // Bad input: a clear 4xx and nothing changes.
    for (const [body, path] of [
      [{ note: 'bell\u0007' }, `/v1/alerts/${alert.id}/resolve`],
      [{ note: '' }, `/v1/alerts/${alert.id}/resolve`],
      [{ note: 'x', extra: 1 }, `/v1/alerts/${alert.id}/resolve`],
      [{}, `/v1/alerts/${alert.id}/resolve`],
      [{ note: 'x' }, '/v1/alerts/not-an-id/resolve'],
    ] as const) {
      const refused = await asSec('POST', path, body);
      assert.ok([400, 422].includes(refused.status), `${refused.status} ${refused.text}`);
    }
    const unchanged = await asSec('GET', `/v1/alerts/${alert.id}`);
    assert.equal(unchanged.json<AlertView>().state, 'acknowledged', 'bad input changed nothing');
    const missing = await asSec('GET', '/v1/alerts/alr_000000000000000000000000');
    assert.equal(missing.status, 404, missing.text);

    // Others: a support agent, the operator admin, and a read-only token.
    assert.equal((await c.as(sam.session as ConsoleSession, 'GET', '/v1/alerts')).status, 403);
    const admin = await operatorAdmin(s);
    assert.equal((await admin.request('GET', '/v1/alerts')).status, 403);
    const token = await operatorToken(s, 'alerts:read');
    const read = await s.request('GET', `/v1/alerts/${alert.id}`, { token });
    assert.equal(read.status, 200, read.text);
    assert.equal(read.json<AlertView>().state, 'acknowledged');
    const tokenResolve = await s.request('POST', `/v1/alerts/${alert.id}/resolve`, {
      token,
      body: { note: 'x' },
    });
    assert.ok([401, 403].includes(tokenResolve.status), tokenResolve.text);

    const resolved = await asSec('POST', `/v1/alerts/${alert.id}/resolve`, {
      note: 'sam forgot the password\nreset done',
    });
    assert.equal(resolved.status, 200, resolved.text);
    assert.equal(resolved.json<AlertView>().state, 'resolved');
    assert.equal(resolved.json<AlertView>().resolved?.note, 'sam forgot the password\nreset done');

    const steps = await waitFor(
      'both steps in the audit log',
      async () => {
        const res = await asSec('GET', '/v1/audit/entries?limit=1000');
        const entries = res
          .json<{ entries: Entry[] }>()
          .entries.filter(
            (e) => e.entry.action === 'alert.acknowledge' || e.entry.action === 'alert.resolve',
          );
        return entries.filter((e) => e.entry.outcome === 'success').length >= 2 ? entries : undefined;
      },
      WAIT,
    );
    const ok = steps.filter((e) => e.entry.outcome === 'success');
    assert.deepEqual(
      ok.map((e) => [e.entry.action, e.entry.actor.id, e.entry.target?.alertId]),
      [
        ['alert.acknowledge', sec.account.id, alert.id],
        ['alert.resolve', sec.account.id, alert.id],
      ],
    );
    for (const e of steps)
      assert.ok(!JSON.stringify(e.entry).includes('sam forgot'), 'notes stay out of the log');

    // Resolved: the next failures open a new alert.
    for (let i = 0; i < 5; i++) await badLogin(sam.account.email);
    const fresh = await alertWhere(
      'a new brute-force.account alert',
      (a) => a.kind === 'brute-force.account' && a.state === 'open',
    );
    assert.notEqual(fresh.id, alert.id);
  });

  it('delivers every opened alert to the signed webhook (after a retry) and by mail, with no secret anywhere', async () => {
    const opened = await alertsOf();
    const ids = new Set(opened.map((a) => a.id));
    await untilEvent(
      'a webhook delivery of every alert',
      webhook.events,
      'delivery',
      () => [...ids].every((id) => webhook.deliveries.some((d) => d.status === 204 && d.body.includes(id))),
      WAIT.timeoutMs,
    );
    await untilEvent(
      'a mail of every alert',
      smtp.events,
      'mail',
      () => [...ids].every((id) => smtp.mails.some((m) => m.raw.includes(id))),
      WAIT.timeoutMs,
    );
    assert.equal(webhook.deliveries[0]?.status, 500, 'the first was refused and retried');
    const secret = Buffer.from(webhookSecret, 'utf8');
    for (const d of webhook.deliveries) {
      assert.equal(d.verified, true);
      assert.ok(verifySignature(secret, d.headers['tresor-signature'] as string, d.body));
    }
    for (const m of smtp.mails) {
      assert.equal(m.secure, true, 'over STARTTLS');
      assert.equal(m.user, 'tresor-alerts');
    }
    const views = await waitFor(
      'every delivery stored as delivered',
      async () => {
        const all = await alertsOf();
        return all.every(
          (a) => a.deliveries.length === 2 && a.deliveries.every((d) => d.state === 'delivered'),
        )
          ? all
          : undefined;
      },
      WAIT,
    );
    assert.ok(views.length >= 9);

    const admin = await operatorAdmin(s);
    const secrets = [webhookSecret, smtpPassword, ...c.secrets, ...admin.secrets];
    const seen = [
      ...webhook.deliveries.map((d) => d.body),
      ...smtp.mails.map((m) => m.raw),
      JSON.stringify(views),
      s.serverOutput(),
    ].join('\n');
    for (const [i, secretValue] of secrets.entries())
      assert.ok(!seen.includes(secretValue), `secret #${i} (not shown) leaked`);
  });

  it('raises keyd.sealed, then audit.unhealthy once checkpoints cannot be signed; delivered while the API fails closed', async () => {
    const keyd = s.keydClient();
    const admin = { id: 'alerts-test', role: 'admin' } as const;
    await keyd.call('seal', {}, admin);
    try {
      // The API answers 503 now (nothing is audited without signed checkpoints for long): the
      // webhook is where the security team learns of it.
      const delivered = (kind: string) => () =>
        webhook.deliveries.some((d) => d.status === 204 && JSON.parse(d.body).alert.kind === kind);
      await untilEvent(
        'keyd.sealed at the webhook',
        webhook.events,
        'delivery',
        delivered('keyd.sealed'),
        WAIT.timeoutMs,
      );
      await untilEvent(
        'audit.unhealthy at the webhook',
        webhook.events,
        'delivery',
        delivered('audit.unhealthy'),
        WAIT.timeoutMs,
      );
    } finally {
      await keyd.call('unseal', { secret: '' }, admin);
    }
    const sealed = await waitFor(
      'the API back, showing keyd.sealed',
      async () => {
        const res = await asSec('GET', '/v1/alerts');
        return res.status === 200
          ? res.json<{ alerts: AlertView[] }>().alerts.find((a) => a.kind === 'keyd.sealed')
          : undefined;
      },
      WAIT,
    );
    assert.equal(sealed.severity, 'critical');
    assert.deepEqual(sealed.subject, { kind: 'component', id: 'keyd' });
    assert.deepEqual(sealed.evidence, [], 'state, not an audit entry');
    assert.ok(sealed.count >= 1);
  });
});
