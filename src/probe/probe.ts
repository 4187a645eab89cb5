/**
 * One end-to-end probe of a Tresor API, as a customer's integration would use it: a TLS handshake
 * verified against the CA, then with a tenant's admin API key a write, a read of what was written,
 * the audit entry of that read found in the tenant's log, and the record deleted again. Each step
 * is timed; the first that fails names the probe's failure. Nothing here is a secret or a customer
 * value: the record holds a random nonce in a collection of its own, and the key is never printed.
 *
 * Used by `tresor probe` (from outside) and the server's probe job (against its own public URL).
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';

export const PROBE_STEPS = ['tls', 'auth', 'write', 'read', 'audit', 'delete'] as const;
export type ProbeStep = (typeof PROBE_STEPS)[number];

export interface ProbeTarget {
  /** The API's https base URL. */
  url: URL;
  /** The CA to trust; undefined: the system's CAs. */
  ca: Buffer | undefined;
  /** A tenant admin API key (write, read and the tenant's audit entries). */
  apiKey: string;
  /** The probe's own collection (created on first use). */
  collection: string;
  /** Per step; the whole probe is bounded by steps × this plus the audit wait. */
  deadlineMs: number;
  /** How long the read's audit entry may take to be sequenced into the log. */
  auditWaitMs: number;
}

export interface ProbeResult {
  /** When the probe started (ISO 8601). */
  at: string;
  ok: boolean;
  /** The step that failed, and why (an error code or HTTP status; never a body). */
  failed?: { step: ProbeStep; why: string };
  /** Milliseconds each finished step took. */
  ms: Partial<Record<ProbeStep, number>>;
}

class StepFailure extends Error {
  constructor(
    readonly step: ProbeStep,
    readonly why: string,
  ) {
    super(`${step}: ${why}`);
  }
}

interface Answer {
  status: number;
  body: unknown;
  requestId: string | undefined;
}

function tlsHandshake(target: ProbeTarget): Promise<void> {
  return new Promise((resolve, reject) => {
    const port = Number(target.url.port || 443);
    let socket: TLSSocket | undefined;
    const timer = setTimeout(() => {
      socket?.destroy();
      reject(new StepFailure('tls', 'deadline'));
    }, target.deadlineMs);
    socket = connect({
      host: target.url.hostname,
      port,
      // SNI carries host names only (RFC 6066); an IP address is checked against the certificate's IP SANs.
      ...(isIP(target.url.hostname) === 0 ? { servername: target.url.hostname } : {}),
      ...(target.ca ? { ca: target.ca } : {}),
      ALPNProtocols: ['http/1.1'],
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const ok = socket?.authorized === true;
      const why = socket?.authorizationError;
      socket?.end();
      if (ok) resolve();
      else reject(new StepFailure('tls', `certificate not trusted (${String(why ?? 'unknown')})`));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new StepFailure('tls', err.code ?? 'connection failed'));
    });
  });
}

function send(
  target: ProbeTarget,
  step: ProbeStep,
  method: string,
  path: string,
  body?: unknown,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      new URL(path, target.url),
      {
        method,
        ...(target.ca ? { ca: target.ca } : {}),
        headers: {
          authorization: `Bearer ${target.apiKey}`,
          accept: 'application/json',
          ...(payload
            ? { 'content-type': 'application/json', 'content-length': String(payload.length) }
            : {}),
        },
        timeout: target.deadlineMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text.length > 0 ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          const id = res.headers['x-request-id'];
          resolve({
            status: res.statusCode ?? 0,
            body: parsed,
            requestId: typeof id === 'string' ? id : undefined,
          });
        });
        res.on('error', (err: NodeJS.ErrnoException) =>
          reject(new StepFailure(step, err.code ?? 'response failed')),
        );
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('deadline'), { code: 'deadline' })));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(new StepFailure(step, err.code ?? 'request failed')),
    );
    req.end(payload);
  });
}

/** The answer's problem code, else its HTTP status: what a failed step reports. */
function whyOf(answer: Answer): string {
  const code = (answer.body as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^TRESOR_ERR_[A-Z0-9_]{1,60}$/.test(code)
    ? code
    : `HTTP ${answer.status}`;
}

function expect(step: ProbeStep, answer: Answer, ...statuses: number[]): Answer {
  if (!statuses.includes(answer.status)) throw new StepFailure(step, whyOf(answer));
  return answer;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface AuditPage {
  entries: {
    index: number;
    entry: { action?: string; requestId?: string; target?: { recordIds?: unknown } };
  }[];
  treeSize: number;
  next: number | null;
}

/** Runs one probe; never throws (a failure is a result). */
export async function runProbe(
  target: ProbeTarget,
  now: () => Date = () => new Date(),
): Promise<ProbeResult> {
  const result: ProbeResult = { at: now().toISOString(), ok: false, ms: {} };
  let step: ProbeStep = 'tls';
  const timed = async <T>(s: ProbeStep, work: () => Promise<T>): Promise<T> => {
    step = s;
    const started = performance.now();
    const value = await work();
    result.ms[s] = Math.round((performance.now() - started) * 10) / 10;
    return value;
  };
  const collection = encodeURIComponent(target.collection);
  try {
    await timed('tls', () => tlsHandshake(target));
    // Authentication, and the log's head before the read (its entry comes after it).
    const head = await timed('auth', async () => {
      const page = expect('auth', await send(target, 'auth', 'GET', '/v1/audit/entries?limit=1&from=0'), 200);
      const treeSize = (page.body as AuditPage).treeSize;
      const existing = await send(target, 'auth', 'GET', `/v1/collections`);
      expect('auth', existing, 200);
      const names = ((existing.body as { collections?: { name: string }[] }).collections ?? []).map(
        (c) => c.name,
      );
      if (!names.includes(target.collection)) {
        expect(
          'auth',
          await send(target, 'auth', 'PUT', `/v1/collections/${collection}`, {
            fields: { nonce: { type: 'string', classification: 'internal' } },
          }),
          200,
          201,
        );
      }
      return treeSize;
    });
    const nonce = randomBytes(16).toString('hex');
    const id = await timed('write', async () => {
      const created = expect(
        'write',
        await send(target, 'write', 'POST', `/v1/collections/${collection}/records`, { nonce }),
        201,
      );
      const recordId = (created.body as { id?: unknown }).id;
      if (typeof recordId !== 'string') throw new StepFailure('write', 'no record id');
      return recordId;
    });
    const readId = await timed('read', async () => {
      const read = expect(
        'read',
        await send(target, 'read', 'GET', `/v1/collections/${collection}/records/${id}`),
        200,
      );
      if ((read.body as { data?: { nonce?: unknown } }).data?.nonce !== nonce)
        throw new StepFailure('read', 'read back a different value');
      return read.requestId;
    });
    await timed('audit', async () => {
      const deadline = Date.now() + target.auditWaitMs;
      let from = head;
      for (;;) {
        const page = expect(
          'audit',
          await send(target, 'audit', 'GET', `/v1/audit/entries?from=${from}&limit=500`),
          200,
        );
        const { entries, next } = page.body as AuditPage;
        const found = entries.some(
          (e) =>
            e.entry.action === 'record.read' &&
            (readId === undefined || e.entry.requestId === readId) &&
            Array.isArray(e.entry.target?.recordIds) &&
            e.entry.target.recordIds.includes(id),
        );
        if (found) return;
        if (next !== null) {
          from = next;
          continue;
        }
        const last = entries.at(-1);
        if (last) from = last.index + 1;
        if (Date.now() >= deadline) throw new StepFailure('audit', 'the read is not in the audit log');
        await sleep(100);
      }
    });
    await timed('delete', async () => {
      expect(
        'delete',
        await send(target, 'delete', 'DELETE', `/v1/collections/${collection}/records/${id}`),
        200,
        204,
      );
    });
    result.ok = true;
  } catch (err) {
    result.failed =
      err instanceof StepFailure ? { step: err.step, why: err.why } : { step, why: 'unexpected failure' };
  }
  return result;
}
