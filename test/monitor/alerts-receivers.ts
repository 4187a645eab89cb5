/**
 * TEST-ONLY. Real receivers of alert deliveries on loopback: an HTTPS webhook endpoint that checks
 * each request's `Tresor-Signature` as a receiver must (HMAC-SHA256 over "<t>.<raw body>", constant
 * time, fresh timestamp) and can answer 500 to the first few, and an SMTP server (smtp-server) that
 * requires STARTTLS and a user name and password, and keeps the mails it receives. Both use
 * certificates of a throwaway development CA, whose certificate the sender is given.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { type CertificateAndKey, createDevCa, issueCertificate } from '../../src/tls/dev-ca.ts';

export interface LoopbackCa {
  ca: CertificateAndKey;
  server: CertificateAndKey;
}

/** A CA and a server certificate for 127.0.0.1 and localhost. */
export async function loopbackCa(): Promise<LoopbackCa> {
  const ca = await createDevCa({ commonName: 'alerts test CA' });
  const server = await issueCertificate(ca, {
    commonName: 'localhost',
    sans: { dns: ['localhost'], ip: ['127.0.0.1'] },
    usage: 'server',
    days: 2,
  });
  return { ca, server };
}

export interface WebhookDelivery {
  /** Whether the signature checked out (HMAC over "<t>.<body>", timestamp within 5 minutes). */
  verified: boolean;
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface WebhookReceiver {
  url: string;
  deliveries: WebhookDelivery[];
  events: EventEmitter;
  close(): Promise<void>;
}

/** Verifies `t=<unix>,v1=<hex>` as a receiver does: recompute, compare in constant time, refuse stale. */
export function verifySignature(
  secret: Buffer,
  header: string | undefined,
  body: string,
  nowMs = Date.now(),
) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(nowMs / 1000 - t) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(m[2] as string, 'hex'));
}

export async function startWebhookReceiver(options: {
  tls: LoopbackCa;
  secret: Buffer;
  /** Answer 500 to this many requests first. */
  failFirst?: number;
}): Promise<WebhookReceiver> {
  const deliveries: WebhookDelivery[] = [];
  const events = new EventEmitter();
  let toFail = options.failFirst ?? 0;
  const server: Server = createServer(
    { cert: options.tls.server.certPem, key: options.tls.server.keyPem },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const verified = verifySignature(options.secret, req.headers['tresor-signature'] as string, body);
        const status = !verified ? 401 : toFail > 0 ? 500 : 204;
        if (verified && toFail > 0) toFail -= 1;
        deliveries.push({ verified, status, body, headers: req.headers });
        res.statusCode = status;
        res.end();
        events.emit('delivery');
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}/hooks/tresor`,
    deliveries,
    events,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface ReceivedMail {
  from: string | undefined;
  to: string[];
  /** The raw message (headers and body). */
  raw: string;
  user: string | undefined;
  secure: boolean;
}

export interface SmtpReceiver {
  port: number;
  mails: ReceivedMail[];
  events: EventEmitter;
  close(): Promise<void>;
}

/** An SMTP server on 127.0.0.1 that requires STARTTLS and the given user name and password. */
export async function startSmtpReceiver(options: {
  tls: LoopbackCa;
  user: string;
  password: string;
}): Promise<SmtpReceiver> {
  const mails: ReceivedMail[] = [];
  const events = new EventEmitter();
  const server = new SMTPServer({
    secure: false,
    key: options.tls.server.keyPem,
    cert: options.tls.server.certPem,
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    onAuth(auth, session, callback) {
      if (!session.secure) return callback(new Error('STARTTLS first'));
      if (auth.username === options.user && auth.password === options.password)
        return callback(null, { user: auth.username });
      return callback(new Error('bad credentials'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : undefined,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
          user: session.user as string | undefined,
          secure: session.secure,
        });
        callback();
        events.emit('mail');
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = (server as unknown as { server: Server }).server.address() as AddressInfo;
  return {
    port,
    mails,
    events,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
