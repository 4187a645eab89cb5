/**
 * The webhook sink: POSTs each batch to a SIEM's HTTPS endpoint, so it receives the log without
 * polling, and the answer is an acknowledgement — the cursor moves only on a 2xx.
 *
 *   POST <url>   Content-Type: application/json
 *   Tresor-Signature: t=1764585021,v1=<hex HMAC-SHA256(secret, "1764585021.<body>")>
 *   Tresor-Delivery: <random UUID, new on every attempt>
 *
 *   {"entries":[{"index":12,"entry":{...}}, ...]}   or   {"checkpoint":{"size":13,"note":"..."}}
 *
 * The signature scheme is the one Stripe and GitHub made familiar: the receiver recomputes the
 * HMAC (RFC 2104) over the timestamp, a dot and the raw body, compares in constant time, and
 * refuses stale timestamps so a captured request cannot be replayed later. Batches may arrive
 * twice after a retry: receivers de-duplicate by `index` / `size`, not by delivery id.
 *
 * HTTPS only (a plain-HTTP URL is refused when the sink is created); the server certificate is
 * checked against `ca` when given, else the system roots. Error messages name the sink and the
 * HTTP status only — never the URL's path or query (they may carry a token), nor the body.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { Agent, request } from 'node:https';
import { TresorError } from '../../errors.ts';
import type { AuditSink, SequencedEntry } from './types.ts';

export interface WebhookSinkOptions {
  name: string;
  /** `https:` URL; no user name or password in it (the secret signs, it is never sent). */
  url: string;
  /** HMAC key, at least 32 bytes (RFC 2104 §3: not shorter than the hash output, 32 for SHA-256). */
  secret: Buffer;
  /** PEM of the CA(s) for the endpoint's certificate; replaces the system roots when given. */
  ca?: string | Buffer;
  /** Bound on the whole request, connection to last byte of the answer. Default 10 s. */
  timeoutMs?: number;
}

export const MIN_SECRET_BYTES = 32;
/** Answers beyond this are not read: the sink only needs the status. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. */
export function webhookSignature(secret: Buffer, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.`).update(body).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/**
 * One signed JSON POST (the audit sink's and the alerts channel's): `Tresor-Signature` over the
 * body, a fresh `Tresor-Delivery` id, bounded by `timeoutMs`; a 2xx answer resolves, anything else
 * rejects with `fail(reason, status)`. The answer's body is not kept (only its status matters). A
 * socket error is named by its code, else by `uncoded(error)`.
 */
export function postSigned(options: {
  url: URL;
  agent: Agent;
  secret: Buffer;
  body: string;
  userAgent: string;
  timeoutMs: number;
  fail: (reason: string, status?: number) => Error;
  uncoded: (error: Error) => string;
}): Promise<void> {
  const { body, timeoutMs, fail } = options;
  const signature = webhookSignature(options.secret, body, Math.floor(Date.now() / 1000));
  return new Promise((resolve, reject) => {
    const req = request(options.url, {
      method: 'POST',
      agent: options.agent,
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'tresor-signature': signature,
        'tresor-delivery': randomUUID(),
        'user-agent': options.userAgent,
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
        else reject(fail(`answered HTTP ${status}`, status));
      });
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      const reason =
        error.name === 'AbortError' || error.name === 'TimeoutError'
          ? `timed out after ${timeoutMs} ms`
          : (error.code ?? options.uncoded(error));
      reject(fail(reason));
    });
    req.end(body);
  });
}

export function createWebhookSink(options: WebhookSinkOptions): AuditSink {
  const { name } = options;
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TypeError(`webhook sink ${name}: url is not a valid URL`);
  }
  if (url.protocol !== 'https:')
    throw new TypeError(`webhook sink ${name}: url must be https:, not ${url.protocol}`);
  if (url.username !== '' || url.password !== '') {
    throw new TypeError(`webhook sink ${name}: url must not carry credentials`);
  }
  if (!Buffer.isBuffer(options.secret) || options.secret.length < MIN_SECRET_BYTES) {
    throw new TypeError(`webhook sink ${name}: secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1)
    throw new TypeError('timeoutMs must be a positive integer');
  // Our own copy, zeroed on close; the caller may wipe theirs.
  const secret = Buffer.from(options.secret);
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: options.ca, minVersion: 'TLSv1.2' });
  const where = `webhook sink ${name} (${url.host})`;
  let closed = false;

  function fail(reason: string, details: Record<string, unknown> = {}): TresorError {
    return new TresorError('TRESOR_ERR_UNAVAILABLE', `${where}: ${reason}`, { sink: name, ...details });
  }

  function post(body: string): Promise<void> {
    if (closed) return Promise.reject(fail('closed'));
    return postSigned({
      url,
      agent,
      secret,
      body,
      userAgent: 'tresor-audit-webhook',
      timeoutMs,
      fail: (reason, status) => fail(reason, status === undefined ? {} : { status }),
      uncoded: (error) => error.message,
    });
  }

  return {
    name,
    async deliverEntries(entries: readonly SequencedEntry[]) {
      // The leaf text is JSON already: embedding it keeps the exact leaf bytes for the receiver.
      const items = entries.map((e) => {
        if (!Number.isSafeInteger(e.index) || e.index < 0) throw new TypeError('entry index must be a count');
        return `{"index":${e.index},"entry":${e.leaf}}`;
      });
      return post(`{"entries":[${items.join(',')}]}`);
    },
    async deliverCheckpoint(note: string, size: number) {
      return post(JSON.stringify({ checkpoint: { size, note } }));
    },
    async close() {
      closed = true;
      agent.destroy();
      secret.fill(0);
    },
  };
}
