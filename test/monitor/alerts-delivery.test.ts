/**
 * Delivery of opened alerts to real receivers on loopback: an HTTPS webhook endpoint that checks the
 * HMAC signature and answers 500 once (the delivery is retried and then acknowledged), and an SMTP
 * server that requires STARTTLS and credentials. Each delivery's state is stored with the alert; a
 * receiver that keeps failing gets a bounded number of attempts, then the delivery is `failed`.
 * Neither the mail nor the webhook body carries a secret.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createAlertDelivery } from '../../src/alerts/alert-delivery.ts';
import { createAlertService } from '../../src/alerts/alerts.ts';
import { createMailChannel } from '../../src/alerts/mail-channel.ts';
import { createWebhookChannel } from '../../src/alerts/webhook-channel.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';
import { untilEvent } from '../helpers/wait.ts';
import {
  type LoopbackCa,
  loopbackCa,
  type SmtpReceiver,
  startSmtpReceiver,
  startWebhookReceiver,
  type WebhookReceiver,
} from './alerts-receivers.ts';

const DEADLINE_MS = 60_000;

describe('alert delivery', () => {
  let store: TestControlStore;
  let tls: LoopbackCa;
  let webhook: WebhookReceiver;
  let smtp: SmtpReceiver;
  const secret = randomBytes(32);
  const smtpPassword = `pw-${randomBytes(12).toString('hex')}`;

  before(async () => {
    store = await openTestControlStore('alert-delivery');
    tls = await loopbackCa();
    webhook = await startWebhookReceiver({ tls, secret, failFirst: 1 });
    smtp = await startSmtpReceiver({ tls, user: 'alerts', password: smtpPassword });
  });
  after(async () => {
    await webhook.close();
    await smtp.close();
    await store.close();
  });

  const signal = (id: string) => ({
    kind: 'brute-force.address' as const,
    severity: 'high' as const,
    subject: { kind: 'address' as const, id },
    at: new Date().toISOString(),
    evidence: [3, 4, 5],
    count: 3,
  });

  it('signs the webhook, retries after a 500, mails over STARTTLS with credentials, and stores each state', async () => {
    const alerts = createAlertService({ control: store.control, now: () => new Date() });
    const warnings: string[] = [];
    const delivery = createAlertDelivery({
      control: store.control,
      channels: [
        createWebhookChannel({ url: webhook.url, secret, ca: tls.ca.certPem }),
        createMailChannel({
          host: '127.0.0.1',
          port: smtp.port,
          tls: 'starttls',
          from: 'tresor@ops.test',
          to: ['security@ops.test'],
          user: 'alerts',
          password: smtpPassword,
          ca: tls.ca.certPem,
        }),
      ],
      alerts,
      retry: { attempts: 3, baseMs: 20 },
      now: () => new Date(),
      warn: (obj, msg) => warnings.push(`${msg} ${JSON.stringify(obj)}`),
    });
    try {
      const raised = await store.control.write(async (trx) => {
        const r = await alerts.raiseIn(trx, signal('192.0.2.9'));
        await delivery.enqueueIn(trx, r.id);
        return r;
      });
      delivery.kick();
      await untilEvent('the mail', smtp.events, 'mail', () => smtp.mails.length >= 1, DEADLINE_MS);
      await untilEvent(
        'an accepted webhook delivery',
        webhook.events,
        'delivery',
        () => webhook.deliveries.some((d) => d.status === 204),
        DEADLINE_MS,
      );
      await delivery.settled(DEADLINE_MS);

      // The webhook: a 500 first, then the same alert again, both correctly signed.
      assert.deepEqual(
        webhook.deliveries.map((d) => [d.verified, d.status]),
        [
          [true, 500],
          [true, 204],
        ],
      );
      const body = JSON.parse(webhook.deliveries[1]?.body ?? '{}');
      assert.equal(body.type, 'alert.opened');
      assert.equal(body.alert.id, raised.id);
      assert.deepEqual(body.alert.subject, { kind: 'address', id: '192.0.2.9' });
      assert.deepEqual(body.alert.evidence, [3, 4, 5]);
      assert.notEqual(
        webhook.deliveries[0]?.headers['tresor-delivery'],
        webhook.deliveries[1]?.headers['tresor-delivery'],
      );

      // The mail: through STARTTLS, authenticated, to the configured recipient.
      const [mail] = smtp.mails;
      assert.equal(mail?.secure, true);
      assert.equal(mail?.user, 'alerts');
      assert.deepEqual(mail?.to, ['security@ops.test']);
      assert.match(mail?.raw ?? '', /brute-force\.address/);
      assert.match(mail?.raw ?? '', new RegExp(raised.id));

      // Stored states.
      const view = await alerts.get(raised.id);
      assert.deepEqual(
        view?.deliveries.map((d) => [d.channel, d.state, d.attempts]),
        [
          ['mail', 'delivered', 1],
          ['webhook', 'delivered', 2],
        ],
      );

      // No secret anywhere the deliveries went, nor in the warnings.
      const seen = [...webhook.deliveries.map((d) => d.body), mail?.raw ?? '', ...warnings].join('\n');
      for (const s of [secret.toString('hex'), secret.toString('base64'), smtpPassword])
        assert.ok(!seen.includes(s), 'a secret leaked into a delivery or a warning');
      assert.ok(
        warnings.some((w) => w.includes('HTTP 500')),
        'the failed attempt is logged by its status',
      );
      assert.ok(!warnings.some((w) => w.includes('/hooks/tresor')), 'the URL path is not logged');
    } finally {
      await delivery.close();
    }
  });

  it('gives up after the configured retries and keeps the delivery as failed', async () => {
    const alerts = createAlertService({ control: store.control, now: () => new Date() });
    const refusing = await startWebhookReceiver({ tls, secret: randomBytes(32) }); // every signature fails: 401
    const delivery = createAlertDelivery({
      control: store.control,
      channels: [createWebhookChannel({ url: refusing.url, secret, ca: tls.ca.certPem })],
      alerts,
      retry: { attempts: 2, baseMs: 20 },
      now: () => new Date(),
      warn: () => {},
    });
    try {
      const raised = await store.control.write(async (trx) => {
        const r = await alerts.raiseIn(trx, signal('192.0.2.10'));
        await delivery.enqueueIn(trx, r.id);
        return r;
      });
      delivery.kick();
      await delivery.settled(DEADLINE_MS);
      const view = await alerts.get(raised.id);
      assert.deepEqual(
        view?.deliveries.map((d) => [d.channel, d.state, d.attempts, d.lastError]),
        [
          [
            'webhook',
            'failed',
            3,
            `alerts webhook (127.0.0.1:${new URL(refusing.url).port}): answered HTTP 401`,
          ],
        ],
      );
      assert.equal(refusing.deliveries.length, 3, 'one attempt and two retries');
    } finally {
      await delivery.close();
      await refusing.close();
    }
  });

  it('refuses a webhook that is not https or a secret shorter than 32 bytes', () => {
    assert.throws(() => createWebhookChannel({ url: 'http://127.0.0.1:1/x', secret }), /https/);
    assert.throws(() => createWebhookChannel({ url: webhook.url, secret: randomBytes(16) }), /32 bytes/);
  });
});
