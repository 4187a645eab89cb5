/**
 * The syslog sink: RFC 5424 messages over TLS (RFC 5425), for rsyslog, syslog-ng or a SIEM's
 * syslog collector.
 *
 *   <110>1 2026-12-01T10:30:21.123Z node-1 tresor 4242 entry [tresor@32473 index="12" tenant="t1"] BOM{"type":"entry",...}
 *
 * - PRI = facility × 8 + severity (§6.2.1); facility 13 "log audit" by default, severity 6
 *   (informational) for entries and 5 (notice) for checkpoints.
 * - TIMESTAMP is RFC 3339 in UTC with milliseconds (§6.2.3); HOSTNAME, APP-NAME, PROCID and MSGID
 *   are PRINTUSASCII of at most 255, 48, 128 and 32 octets (§6.2.4–6.2.7).
 * - Structured data under `tresor@32473` (§6.3.2: a private SD-ID is name@<enterprise number>;
 *   32473 is the number RFC 5612 reserves for documentation — to be replaced once Tresor has its
 *   own); values escape `"`, `\` and `]` (§6.3.3).
 * - MSG is the JSON record of ./jsonl-file.ts, UTF-8 with a BOM so receivers know it is (§6.4).
 * - Frames use octet counting, `MSG-LEN SP SYSLOG-MSG` (RFC 5425 §4.3), so a message may hold any
 *   byte; receivers only have to accept 2048 octets and SHOULD accept 8192 (§4.3.1): set the
 *   collector's maximum message size above the largest entry.
 * - TLS 1.2 or later, the server certificate verified against `ca` and the host name (RFC 5425
 *   §5), an optional client certificate for mutual authentication.
 *
 * Durability: syslog over TCP has no application acknowledgement. A delivery resolves when the
 * write callback fires, i.e. the bytes are in the kernel's send buffer — not that the collector
 * stored them. If the collector dies right then, those messages are lost although the cursor
 * moved on; a collector that closes cleanly is noticed (its FIN) and the next batch reconnects.
 * For delivery the destination confirms, use the webhook sink.
 */

import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { connect, type TLSSocket } from 'node:tls';
import { TresorError } from '../../errors.ts';
import { checkpointRecord, entryRecord } from './jsonl-file.ts';
import type { AuditSink, SequencedEntry } from './types.ts';

export interface SyslogSinkOptions {
  name: string;
  host: string;
  port: number;
  /** PEM of the CA(s) that issue the collector's certificate; replaces the system roots. */
  ca: string | Buffer;
  /** Client certificate and key (PEM) when the collector requires mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name to verify in the collector's certificate (and send as SNI); default `host`. */
  servername?: string;
  appName?: string;
  hostname?: string;
  /** RFC 5424 §6.2.1 facility 0–23; 13 = log audit. */
  facility?: number;
  /** Bound on connecting and on each write; the socket is dropped when it passes. Default 10 s. */
  timeoutMs?: number;
}

/** RFC 5424 §6.2.1 Table 2. */
const SEVERITY_NOTICE = 5;
const SEVERITY_INFORMATIONAL = 6;
const SD_ID = 'tresor@32473';
const NILVALUE = '-';
const BOM = '\uFEFF';
const PRINTUSASCII = /^[\x21-\x7e]+$/;

export function createSyslogSink(options: SyslogSinkOptions): AuditSink {
  const { name, host, port } = options;
  const appName = options.appName ?? 'tresor';
  const facility = options.facility ?? 13;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const hostname = options.hostname ?? osHostname();
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new TypeError('port must be 1-65535');
  if (!Number.isInteger(facility) || facility < 0 || facility > 23)
    throw new TypeError('facility must be 0-23');
  checkHeaderField('appName', appName, 48);
  checkHeaderField('hostname', hostname, 255);
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError('a client certificate needs both cert and key');
  }
  const procId = String(process.pid);
  const servername = options.servername ?? (isIP(host) === 0 ? host : undefined);

  let socket: TLSSocket | undefined;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  function fail(reason: string): TresorError {
    return new TresorError('TRESOR_ERR_UNAVAILABLE', `syslog sink ${name}: ${reason}`, { sink: name });
  }

  function forget(s: TLSSocket): void {
    if (socket === s) socket = undefined;
    s.destroy();
  }

  function connectOnce(): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const s = connect({
        host,
        port,
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        servername,
        minVersion: 'TLSv1.2',
        // Explicit, so nobody "fixes" a certificate problem by flipping a default.
        rejectUnauthorized: true,
      });
      const timer = setTimeout(() => {
        s.destroy();
        reject(fail(`connecting to ${host}:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('secureConnect', () => {
        clearTimeout(timer);
        // The collector never speaks on this channel: its FIN or an error means the link is gone.
        s.on('data', () => undefined);
        s.once('end', () => forget(s));
        s.once('close', () => forget(s));
        s.on('error', () => forget(s));
        resolve(s);
      });
      s.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        s.destroy();
        reject(fail(`cannot connect to ${host}:${port}: ${error.code ?? error.message}`));
      });
    });
  }

  async function send(messages: readonly string[]): Promise<void> {
    if (closed) throw fail('closed');
    if (socket === undefined || socket.destroyed || !socket.writable) socket = await connectOnce();
    const s = socket;
    const frames = Buffer.concat(
      messages.map((message) => {
        const bytes = Buffer.from(message, 'utf8');
        return Buffer.concat([Buffer.from(`${bytes.length} `, 'ascii'), bytes]);
      }),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        forget(s);
        reject(fail(`write timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      s.write(frames, (error) => {
        clearTimeout(timer);
        if (error) {
          forget(s);
          reject(fail(`write failed: ${(error as NodeJS.ErrnoException).code ?? error.message}`));
        } else resolve();
      });
    });
  }

  function enqueue(build: () => string[]): Promise<void> {
    let messages: string[];
    try {
      messages = build();
    } catch (error) {
      return Promise.reject(error);
    }
    const run = queue.then(() => send(messages));
    queue = run.catch(() => undefined);
    return run;
  }

  function header(severity: number, msgId: string): string {
    return `<${facility * 8 + severity}>1 ${new Date().toISOString()} ${hostname} ${appName} ${procId} ${msgId}`;
  }

  return {
    name,
    deliverEntries(entries: readonly SequencedEntry[]) {
      return enqueue(() =>
        entries.map((entry) => {
          const params: [string, string][] = [['index', String(entry.index)]];
          if (entry.tenant !== null) params.push(['tenant', entry.tenant]);
          return `${header(SEVERITY_INFORMATIONAL, 'entry')} ${structuredData(params)} ${BOM}${entryRecord(entry)}`;
        }),
      );
    },
    deliverCheckpoint(note: string, size: number) {
      return enqueue(() => [
        `${header(SEVERITY_NOTICE, 'checkpoint')} ${structuredData([['size', String(size)]])} ${BOM}${checkpointRecord(note, size)}`,
      ]);
    },
    async close() {
      closed = true;
      await queue;
      const s = socket;
      socket = undefined;
      if (s !== undefined && !s.destroyed) {
        await new Promise<void>((resolve) => {
          s.once('close', () => resolve());
          s.end();
          setTimeout(() => s.destroy(), timeoutMs).unref();
        });
      }
    },
  };
}

/** One SD-ELEMENT (RFC 5424 §6.3); PARAM-VALUE escapes `"`, `\` and `]` (§6.3.3). */
export function structuredData(params: readonly (readonly [string, string])[]): string {
  const body = params
    .map(([key, value]) => ` ${key}="${value.replace(/["\\\]]/g, (c) => `\\${c}`)}"`)
    .join('');
  return `[${SD_ID}${body}]`;
}

function checkHeaderField(field: string, value: string, maxLength: number): void {
  if (value === NILVALUE || value.length > maxLength || !PRINTUSASCII.test(value)) {
    throw new TypeError(`${field} must be 1-${maxLength} printable US-ASCII characters (RFC 5424 §6.2)`);
  }
}
