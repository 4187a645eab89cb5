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
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:https';
import { MIN_SECRET_BYTES, webhookSignature } from '../audit/sinks/webhook.ts';
import { TresorError } from '../errors.ts';
import type { AlertChannel } from './alert-channel.ts';

export interface WebhookChannelOptions {
  url: string;
  /** HMAC key, at least 32 bytes. */
  secret: Buffer;
  ca?: string | Buffer;
  timeoutMs?: number;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

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
      const body = JSON.stringify(message);
      const signature = webhookSignature(secret, body, Math.floor(Date.now() / 1000));
      return new Promise((resolve, reject) => {
        const req = request(url, {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'tresor-signature': signature,
            'tresor-delivery': randomUUID(),
            'user-agent': 'tresor-alerts',
          },
          signal: AbortSignal.timeout(timeoutMs),
        });
        req.on('response', (res) => {
          let received = 0;
          res.on('data', (chunk: Buffer) => {
            received += chunk.length;
            if (received > MAX_RESPONSE_BYTES) res.destroy();
          });
          res.on('close', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve();
            else reject(fail(`answered HTTP ${status}`));
          });
        });
        req.on('error', (error: NodeJS.ErrnoException) => {
          const reason =
            error.name === 'AbortError' || error.name === 'TimeoutError'
              ? `timed out after ${timeoutMs} ms`
              : (error.code ?? 'request failed');
          reject(fail(reason));
        });
        req.end(body);
      });
    },
    async close() {
      agent.destroy();
      secret.fill(0);
    },
  };
}
