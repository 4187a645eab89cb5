/**
 * Shared pieces for the sink tests: an in-memory stand-in for the control store's audit tables
 * (the dispatcher only sees its two read functions), temporary folders, certificates from the
 * dev CA, and a real HTTPS server that checks webhook signatures as a SIEM would.
 */
import 'reflect-metadata';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalJson } from '../../../src/audit/canonical.ts';
import type { SequencedCheckpoint, SequencedEntry } from '../../../src/audit/sinks/types.ts';
import { type CertificateAndKey, createDevCa, issueCertificate } from '../../../src/tls/dev-ca.ts';
import { untilEvent } from '../../helpers/wait.ts';

/** A value that must never appear in a status, a log line or an error message. */
export const CUSTOMER_MARKER = 'customer-value-7f3a';

export function makeEntry(index: number, tenant: string | null = 't-1'): SequencedEntry {
  return {
    index,
    tenant,
    leaf: canonicalJson({ index, action: 'record.read', tenant, note: `${CUSTOMER_MARKER}-${index}` }),
  };
}

/** The audit tables as the dispatcher sees them: append entries, sign checkpoints, read both. */
export class MemoryLog {
  readonly entries: SequencedEntry[] = [];
  readonly checkpoints: SequencedCheckpoint[] = [];

  append(count: number): this {
    for (let i = 0; i < count; i += 1) this.entries.push(makeEntry(this.entries.length));
    return this;
  }

  checkpoint(): this {
    const size = this.entries.length;
    this.checkpoints.push({
      size,
      note: `tresor.test/audit\n${size}\nroot-${size}=\n\n— tresor-test sig${size}\n`,
    });
    return this;
  }

  readEntries = async (fromIndex: number, limit: number): Promise<SequencedEntry[]> =>
    this.entries.slice(fromIndex, fromIndex + limit);

  readCheckpoints = async (afterSize: number, limit: number): Promise<SequencedCheckpoint[]> =>
    this.checkpoints.filter((c) => c.size > afterSize).slice(0, limit);
}

export async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tresor-sinks-'));
  // Hooks run in the order they were registered, so this may run before the test's dispatcher.close():
  // a cursor file written meanwhile makes rmdir fail with ENOTEMPTY, which rm retries.
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }));
  return dir;
}

export interface TestPki {
  ca: CertificateAndKey;
  server: CertificateAndKey;
  /** A second CA and a server certificate from it, which the sinks must refuse. */
  otherCa: CertificateAndKey;
  otherServer: CertificateAndKey;
}

export async function makePki(): Promise<TestPki> {
  const ca = await createDevCa({ commonName: 'Tresor sinks test CA' });
  const otherCa = await createDevCa({ commonName: 'Some other CA' });
  const sans = { dns: ['localhost'], ip: ['127.0.0.1'] };
  return {
    ca,
    server: await issueCertificate(ca, { commonName: 'localhost', sans, usage: 'server', days: 1 }),
    otherCa,
    otherServer: await issueCertificate(otherCa, { commonName: 'localhost', sans, usage: 'server', days: 1 }),
  };
}

export interface WebhookRequest {
  body: string;
  delivery: string;
  status: number;
}

/**
 * A SIEM's webhook endpoint: verifies `Tresor-Signature` (HMAC over "<t>.<body>", t within
 * 5 minutes) and answers 401 when it does not hold, else `answer(n)` for the n-th valid request.
 */
export class WebhookReceiver extends EventEmitter {
  readonly requests: WebhookRequest[] = [];
  private server: Server | undefined;

  constructor(
    private readonly secret: Buffer,
    private readonly answer: (n: number) => number = () => 204,
  ) {
    super();
  }

  async start(cert: CertificateAndKey): Promise<string> {
    let valid = 0;
    this.server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let status = 401;
        if (
          req.method === 'POST' &&
          req.headers['content-type'] === 'application/json' &&
          this.verify(String(req.headers['tresor-signature']), body)
        ) {
          status = this.answer(valid);
          valid += 1;
        }
        const record = { body, delivery: String(req.headers['tresor-delivery']), status };
        this.requests.push(record);
        res.writeHead(status).end();
        this.emit('request', record);
      });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/tresor?token=url-token-9c1d`;
  }

  verify(header: string, body: string): boolean {
    const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
    if (!match) return false;
    const t = Number(match[1]);
    if (Math.abs(Date.now() / 1000 - t) > 300) return false;
    const expected = createHmac('sha256', this.secret).update(`${t}.${body}`).digest();
    return timingSafeEqual(expected, Buffer.from(match[2] ?? '', 'hex'));
  }

  /** Resolves once `predicate` holds for the requests seen so far. */
  async until(predicate: (requests: readonly WebhookRequest[]) => boolean): Promise<void> {
    await untilEvent('the webhook requests awaited', this, 'request', () => predicate(this.requests));
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
