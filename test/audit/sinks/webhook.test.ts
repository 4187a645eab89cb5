/**
 * The webhook sink against a real HTTPS endpoint that checks the HMAC signature and timestamp as
 * a SIEM would; with the dispatcher, failed deliveries are retried until everything arrived once,
 * in order.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { before, describe, test } from 'node:test';
import { createSinkDispatcher } from '../../../src/audit/sinks/dispatcher.ts';
import { createWebhookSink, webhookSignature } from '../../../src/audit/sinks/webhook.ts';
import { MemoryLog, makeEntry, makePki, type TestPki, tempDir, WebhookReceiver } from './helpers.ts';

describe('webhook sink', () => {
  let pki: TestPki;
  before(async () => {
    pki = await makePki();
  });

  test('POSTs signed JSON that the receiver verifies with the shared secret and the timestamp', async (t) => {
    const secret = randomBytes(32);
    const receiver = new WebhookReceiver(secret);
    const url = await receiver.start(pki.server);
    t.after(() => receiver.close());
    const sink = createWebhookSink({ name: 'siem', url, secret, ca: pki.ca.certPem });
    t.after(() => sink.close());

    const entries = [makeEntry(0), makeEntry(1, null)];
    await sink.deliverEntries(entries);
    await sink.deliverCheckpoint('tresor.test/audit\n2\nroot=\n\n— k sig\n', 2);

    assert.deepEqual(
      receiver.requests.map((r) => r.status),
      [204, 204],
    );
    const [batch, checkpoint] = receiver.requests.map((r) => JSON.parse(r.body));
    assert.deepEqual(batch, { entries: entries.map((e) => ({ index: e.index, entry: JSON.parse(e.leaf) })) });
    assert.deepEqual(checkpoint, {
      checkpoint: { size: 2, note: 'tresor.test/audit\n2\nroot=\n\n— k sig\n' },
    });
    // The leaf text travels verbatim, so the receiver can hash exactly the leaf bytes.
    assert.ok(receiver.requests[0]?.body.includes(entries[0]?.leaf ?? '?'));
    const deliveries = receiver.requests.map((r) => r.delivery);
    assert.equal(new Set(deliveries).size, 2);
    for (const id of deliveries) assert.match(id, /^[0-9a-f-]{36}$/);
  });

  test('the signature is HMAC-SHA256 over "<t>.<body>" and a stale or foreign one does not verify', () => {
    const secret = Buffer.alloc(32, 7);
    const receiver = new WebhookReceiver(secret);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(receiver.verify(webhookSignature(secret, '{"a":1}', now), '{"a":1}'));
    assert.ok(!receiver.verify(webhookSignature(secret, '{"a":1}', now), '{"a":2}'));
    assert.ok(!receiver.verify(webhookSignature(Buffer.alloc(32, 8), '{"a":1}', now), '{"a":1}'));
    assert.ok(!receiver.verify(webhookSignature(secret, '{"a":1}', now - 3600), '{"a":1}'));
    // Independent vector: printf '1700000000.body' | openssl dgst -sha256 -hmac kkk…k (32 × k)
    assert.equal(
      webhookSignature(Buffer.from('k'.repeat(32)), 'body', 1700000000),
      't=1700000000,v1=5ca15f622fa927ddac83fd4975c279e0b59972bcbce36f746ef7e63791c39035',
    );
  });

  test('rejects a non-2xx answer, naming the status but not the URL token or the secret', async (t) => {
    const secret = randomBytes(32);
    const receiver = new WebhookReceiver(randomBytes(32)); // holds another secret: answers 401
    const url = await receiver.start(pki.server);
    t.after(() => receiver.close());
    const sink = createWebhookSink({ name: 'siem', url, secret, ca: pki.ca.certPem });
    t.after(() => sink.close());
    await assert.rejects(sink.deliverEntries([makeEntry(0)]), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'TRESOR_ERR_UNAVAILABLE');
      assert.match(error.message, /HTTP 401/);
      assert.ok(!error.message.includes('url-token'), 'no URL query in the message');
      assert.ok(!error.message.includes(secret.toString('hex')));
      return true;
    });
  });

  test('rejects when the endpoint does not answer within timeoutMs', async (t) => {
    const server = createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, () => {
      // never answers
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => {
      server.closeAllConnections();
      server.close();
    });
    const port = (server.address() as AddressInfo).port;
    const sink = createWebhookSink({
      name: 'siem',
      url: `https://127.0.0.1:${port}/`,
      secret: randomBytes(32),
      ca: pki.ca.certPem,
      timeoutMs: 200,
    });
    t.after(() => sink.close());
    await assert.rejects(sink.deliverEntries([makeEntry(0)]), /timed out after 200 ms/);
  });

  test('refuses a server certificate from another CA', async (t) => {
    const secret = randomBytes(32);
    const receiver = new WebhookReceiver(secret);
    const url = await receiver.start(pki.otherServer);
    t.after(() => receiver.close());
    const sink = createWebhookSink({ name: 'siem', url, secret, ca: pki.ca.certPem });
    t.after(() => sink.close());
    await assert.rejects(sink.deliverEntries([makeEntry(0)]), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|certificate/i);
    assert.equal(receiver.requests.length, 0);
  });

  test('refuses http:, credentials in the URL and a short secret at creation', () => {
    const secret = randomBytes(32);
    assert.throws(
      () => createWebhookSink({ name: 'siem', url: 'http://siem.test/hook', secret }),
      /must be https:/,
    );
    assert.throws(
      () => createWebhookSink({ name: 'siem', url: 'https://u:p@siem.test/hook', secret }),
      /credentials/,
    );
    assert.throws(
      () => createWebhookSink({ name: 'siem', url: 'https://siem.test/hook', secret: randomBytes(31) }),
      /at least 32 bytes/,
    );
  });

  test('with the dispatcher: the first deliveries answer 500, retries deliver everything once, in order', async (t) => {
    const secret = randomBytes(32);
    const failures = 3;
    const receiver = new WebhookReceiver(secret, (n) => (n < failures ? 500 : 200));
    const url = await receiver.start(pki.server);
    t.after(() => receiver.close());
    const log = new MemoryLog().append(5).checkpoint().append(5).checkpoint();
    const dispatcher = createSinkDispatcher({
      sinks: [createWebhookSink({ name: 'siem', url, secret, ca: pki.ca.certPem })],
      stateDir: await tempDir(t),
      readEntries: log.readEntries,
      readCheckpoints: log.readCheckpoints,
      batchSize: 3,
      retry: { initialMs: 5, maxMs: 20 },
    });
    t.after(() => dispatcher.close());
    await dispatcher.flush();

    const accepted = receiver.requests.filter((r) => r.status === 200);
    const failed = receiver.requests.filter((r) => r.status === 500);
    assert.equal(failed.length, failures);
    // Every failed attempt was the same first batch, sent again — with a fresh delivery id.
    for (const r of failed) assert.equal(r.body, accepted[0]?.body);
    assert.equal(new Set(receiver.requests.map((r) => r.delivery)).size, receiver.requests.length);
    const sequence = accepted.flatMap((r) => {
      const body = JSON.parse(r.body);
      return body.entries
        ? body.entries.map((e: { index: number }) => `e${e.index}`)
        : [`c${body.checkpoint.size}`];
    });
    assert.deepEqual(sequence, ['e0', 'e1', 'e2', 'e3', 'e4', 'c5', 'e5', 'e6', 'e7', 'e8', 'e9', 'c10']);
    assert.deepEqual(dispatcher.status(), [
      { name: 'siem', deliveredIndex: 9, lastCheckpointSize: 10, failing: false },
    ]);
  });
});
