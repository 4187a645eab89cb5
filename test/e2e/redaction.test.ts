// backends: sqlite postgres
/**
 * Redaction across every output, on one real stack at the most verbose log level: known secrets and
 * known field values go in through every path that handles them — tenant API keys, operator tokens,
 * console passwords, TOTP secrets, session cookies and CSRF tokens, enrolment tokens and recovery
 * codes, wrong passwords of a brute-force attempt, the webhook's HMAC secret and the SMTP password,
 * and field values written, read, searched (by blind index), updated and refused as bad input — and
 * none of them comes out: not in the server's log, the Prometheus scrape, the audit log, the stored
 * alerts, the webhook deliveries (bodies and headers) or the alert mails.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { consoleClient, operatorToken, TEST_PASSWORD } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  type LoopbackCa,
  loopbackCa,
  type SmtpReceiver,
  startSmtpReceiver,
  startWebhookReceiver,
  type WebhookReceiver,
} from '../monitor/alerts-receivers.ts';

const hex = () => randomBytes(8).toString('hex');

describe('no secret and no field value in any output', () => {
  let s: TresorStack;
  let tls: LoopbackCa;
  let webhook: WebhookReceiver;
  let smtp: SmtpReceiver;
  let files: string;
  const webhookSecret = `whsec-${randomBytes(24).toString('hex')}`;
  const smtpPassword = `smtp-${hex()}`;
  const wrongPassword = `wrong-password-${hex()}`;
  const values = {
    written: `written-${hex()}@example.test`,
    updated: `updated-${hex()}@example.test`,
    refused: `refused-${hex()}`,
    note: `note-${hex()} confidential`,
  };
  const secrets: string[] = [webhookSecret, smtpPassword, wrongPassword];

  before(async () => {
    tls = await loopbackCa();
    webhook = await startWebhookReceiver({ tls, secret: Buffer.from(webhookSecret, 'utf8') });
    smtp = await startSmtpReceiver({ tls, user: 'tresor-alerts', password: smtpPassword });
    files = mkdtempSync(join(tmpdir(), 'tresor-redaction-'));
    writeFileSync(join(files, 'ca.pem'), tls.ca.certPem);
    writeFileSync(join(files, 'webhook-secret'), `${webhookSecret}\n`, { mode: 0o600 });
    writeFileSync(join(files, 'smtp-password'), `${smtpPassword}\n`, { mode: 0o600 });
    s = await startTresorStack({
      logLevel: 'debug',
      env: {
        TRESOR_LOGIN_DELAY_AFTER: '100',
        TRESOR_LOGIN_ADDRESS_DELAY_AFTER: '100000',
        TRESOR_ALERTS_BRUTE_FORCE_ACCOUNT_FAILURES: '3',
        TRESOR_ALERTS_RETRY_BASE_MS: '50',
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

    // Operator tokens of several scopes, and a tenant with its API key.
    for (const scope of ['tenants:create', 'audit:read', 'metrics:read', 'alerts:read'] as const)
      secrets.push(await operatorToken(s, scope));
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Redaction Ltd' },
    });
    assert.equal(created.status, 201, created.text);
    const apiKey = created.json<{ apiKey: string }>().apiKey;
    secrets.push(apiKey);

    // Field values: written, read, searched, updated, and refused as bad input.
    const put = await s.request('PUT', '/v1/collections/people', {
      token: apiKey,
      body: {
        fields: {
          email: { type: 'string', classification: 'personal', searchable: true },
          note: { type: 'string', classification: 'confidential' },
          age: { type: 'number', classification: 'personal' },
        },
      },
    });
    assert.equal(put.status, 201, put.text);
    const rec = await s.request('POST', '/v1/collections/people/records', {
      token: apiKey,
      body: { email: values.written, note: values.note },
    });
    assert.equal(rec.status, 201, rec.text);
    const id = rec.json<{ id: string }>().id;
    assert.equal(
      (await s.request('GET', `/v1/collections/people/records/${id}`, { token: apiKey })).status,
      200,
    );
    const found = await s.request('POST', '/v1/collections/people/records/search', {
      token: apiKey,
      body: { where: { email: values.written } },
    });
    assert.equal(found.status, 200, found.text);
    assert.equal(found.json<{ records: unknown[] }>().records.length, 1, 'the search finds the record');
    // The old form, the value in the URL, is refused by name and not echoed.
    const inUrl = await s.request(
      'GET',
      `/v1/collections/people/records?where%5Bemail%5D=${encodeURIComponent(values.written)}`,
      { token: apiKey },
    );
    assert.equal(inUrl.status, 400, inUrl.text);
    assert.equal(inUrl.json<{ code: string }>().code, 'TRESOR_ERR_SEARCH_IN_URL');
    assert.ok(!inUrl.text.includes(values.written), 'the refusal does not echo the value');
    const patched = await s.request('PATCH', `/v1/collections/people/records/${id}`, {
      token: apiKey,
      headers: { 'if-match': '"1"' },
      body: { email: values.updated },
    });
    assert.equal(patched.status, 200, patched.text);
    for (const body of [
      { unknown: values.refused },
      { age: values.refused },
      { email: { nested: values.refused } },
    ]) {
      const bad = await s.request('POST', '/v1/collections/people/records', { token: apiKey, body });
      assert.ok(bad.status >= 400 && bad.status < 500, `bad input answers 4xx, got ${bad.status}`);
      assert.ok(!bad.text.includes(values.refused), 'the answer does not echo the refused value');
    }

    // People: passwords, TOTP secrets, enrolment tokens, recovery codes, cookies, CSRF tokens;
    // then a brute-force attempt on one of them with a known wrong password.
    const c = consoleClient(s);
    const agent = await c.createAndEnrol({
      side: 'operator',
      role: 'support-agent',
      email: 'agent@redaction.test',
    });
    await c.login(agent);
    const officer = await c.createAndEnrol({
      side: 'operator',
      role: 'security-officer',
      email: 'officer@redaction.test',
    });
    await c.login(officer);
    for (let i = 0; i < 4; i++) {
      const res = await s.request('POST', '/v1/auth/login', {
        body: { side: 'operator', email: 'agent@redaction.test', password: wrongPassword },
      });
      assert.ok(res.status < 500, res.text);
    }
    secrets.push(...c.secrets, TEST_PASSWORD, agent.secret, officer.secret);
    await waitFor(
      'the brute-force alert delivered by webhook and mail',
      async () =>
        webhook.deliveries.some((d) => d.status < 300 && d.verified) && smtp.mails.length > 0
          ? true
          : undefined,
      {
        timeoutMs: 60_000,
        diagnostics: () =>
          `webhook: ${webhook.deliveries.map((d) => d.status).join(',')}; mails: ${smtp.mails.length}; log tail: ${s
            .serverOutput()
            .split('\n')
            .filter((l) => /alert|deliver/i.test(l))
            .slice(-5)
            .join(' | ')}`,
      },
    );
  });

  after(async () => {
    await s?.stop();
    await webhook?.close();
    await smtp?.close();
    if (files) rmSync(files, { recursive: true, force: true });
  });

  it('had secrets and values to look for', () => {
    assert.ok(secrets.length >= 12, `${secrets.length} secrets`);
    for (const secret of secrets) assert.ok(secret.length >= 8, 'each secret is long enough to find');
  });

  it('finds none of them in the log, the metrics, the audit log, the alerts, the webhook or the mail', async () => {
    const scrape = await s.request('GET', '/metrics', { token: await operatorToken(s, 'metrics:read') });
    assert.equal(scrape.status, 200);
    const auditToken = await operatorToken(s, 'audit:read');
    let auditText = '';
    for (let from: number | null = 0; from !== null; ) {
      const page = await s.request('GET', `/v1/audit/entries?from=${from}&limit=1000`, { token: auditToken });
      assert.equal(page.status, 200, page.text);
      auditText += page.text;
      from = page.json<{ next: number | null }>().next;
    }
    assert.ok(auditText.includes('auth.login'), 'the audit log was read');
    const alerts = await s.request('GET', '/v1/alerts', { token: await operatorToken(s, 'alerts:read') });
    assert.equal(alerts.status, 200);
    assert.ok(alerts.json<{ alerts: unknown[] }>().alerts.length > 0, 'an alert to look into');
    const outputs: Record<string, string> = {
      'server log': s.serverOutput(),
      metrics: scrape.text,
      'audit log': auditText,
      alerts: alerts.text,
      webhook: JSON.stringify(webhook.deliveries),
      mail: JSON.stringify(smtp.mails.map((m) => m.raw)),
    };
    assert.ok(outputs['server log'] && outputs['server log'].length > 1000, 'the debug log was captured');
    const found: string[] = [];
    for (const [where, text] of Object.entries(outputs)) {
      for (const secret of secrets) if (text.includes(secret)) found.push(`a secret in the ${where}`);
      for (const [name, value] of Object.entries(values))
        if (text.includes(value)) found.push(`the ${name} value in the ${where}`);
      // URL-encoded too: a value that reached a log through a URL.
      for (const [name, value] of Object.entries(values))
        if (text.includes(encodeURIComponent(value)))
          found.push(`the ${name} value (URL-encoded) in the ${where}`);
    }
    assert.deepEqual(found, []);
  });
});
