/**
 * Alerts to a webhook: one HTTPS POST per opened alert, signed as the audit webhook sink signs
 * (audit/sinks/webhook.ts): `Tresor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
 * "<t>.<body>")>`, so a receiver recomputes the HMAC over the timestamp, a dot and the raw body,
 * compares in constant time and refuses stale timestamps. `Tresor-Delivery` is new on every attempt;
 * receivers de-duplicate by the alert id.
 *
 * HTTPS only; the server certificate is checked against `ca` when given, else the system roots. A
 * 2xx answer is the acknowledgement. Errors name the status or the socket error code — never the
 * URL's path or query (they may carry a token), nor any body.
 */
import { Agent } from 'node:https';
import { MIN_SECRET_BYTES, postSigned } from '../audit/sinks/webhook.ts';
import { TresorError } from '../errors.ts';
import type { AlertChannel } from './alert-channel.ts';

export interface WebhookChannelOptions {
  url: string;
  /** HMAC key, at least 32 bytes. */
  secret: Buffer;
  ca?: string | Buffer;
  timeoutMs?: number;
}

export function createWebhookChannel(options: WebhookChannelOptions): AlertChannel {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TypeError('alerts webhook: url is not a valid URL');
  }
  if (url.protocol !== 'https:')
    throw new TypeError(`alerts webhook: url must be https:, not ${url.protocol}`);
  if (url.username !== '' || url.password !== '')
    throw new TypeError('alerts webhook: url must not carry credentials');
  if (options.secret.length < MIN_SECRET_BYTES)
    throw new TypeError(`alerts webhook: secret must be at least ${MIN_SECRET_BYTES} bytes`);
  const secret = Buffer.from(options.secret);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const agent = new Agent({ keepAlive: true, maxSockets: 2, ca: options.ca, minVersion: 'TLSv1.2' });
  const fail = (reason: string) =>
    new TresorError('TRESOR_ERR_UNAVAILABLE', `alerts webhook (${url.host}): ${reason}`);

  return {
    name: 'webhook',
    send(message) {
      return postSigned({
        url,
        agent,
        secret,
        body: JSON.stringify(message),
        userAgent: 'tresor-alerts',
        timeoutMs,
        fail: (reason) => fail(reason),
        uncoded: () => 'request failed',
      });
    },
    async close() {
      agent.destroy();
      secret.fill(0);
    },
  };
}
