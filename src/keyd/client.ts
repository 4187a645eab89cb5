/**
 * The keyd client: a KeyService that reaches keyd over its private channel (Unix socket or mTLS),
 * so the server's code is the same whether keyd runs in-process (tests) or on its own host.
 *
 * Failure model — fail closed. A few pooled, pipelined connections; a deadline per request.
 * Transport failures (refused, reset, closed, timed out) are retried with exponential backoff and
 * jitter, but only when a repeat cannot do harm: the request never left (nothing to repeat), or
 * the operation is idempotent or a read (RETRYABLE_OPERATIONS). An answer from keyd, even an
 * error, is never retried. When the retries are spent the caller gets TRESOR_ERR_KEYD_UNAVAILABLE
 * (→ 503), never a fallback. Connections are opened lazily, so a restarted keyd is picked up by
 * the next request. A certificate keyd refuses (not on the allowlist, wrong CA, none) surfaces as
 * TRESOR_ERR_FORBIDDEN, not as an outage, since retrying cannot fix it.
 *
 * Connection setup: wait for keyd's greeting (an mTLS refusal arrives instead of it), then `hello`
 * with our name for keyd's ops log; only then are requests written.
 *
 * Several keyd instances (one PostgreSQL store, docs/keyd.md): `connect` may list several targets.
 * The client prefers one — every request goes to it, so its key caches stay warm — and on a
 * transport failure moves its preference to the next target and repeats the request there, at
 * once, under the same rule as any retry (only when a repeat cannot do harm: RETRYABLE_OPERATIONS,
 * and ONCE_OPERATIONS, which carry a request id keyd does only once). The backoff starts
 * only once every target failed in turn; each target counts `retries` further attempts. An answer
 * from keyd, even an error, is never retried elsewhere.
 */
import { randomBytes } from 'node:crypto';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { isKeydErrorCode, KeydError } from './errors.ts';
import type { Caller, KeydOperationName, KeyService, OpArgs, OpResult } from './operations.ts';
import {
  CLIENT_NAME_PATTERN,
  decodeResponse,
  encodeFrame,
  FrameDecoder,
  PROTOCOL_VERSION,
  parsePayload,
  type WireError,
  type WireOperationName,
} from './protocol.ts';

export type KeydConnectTarget =
  | { kind: 'unix'; path: string }
  | {
      kind: 'tls';
      host: string;
      port: number;
      cert: string | Buffer;
      key: string | Buffer;
      ca: string | Buffer;
      /** Name checked against keyd's certificate when it differs from host. */
      servername?: string;
    };

export interface KeydClientOptions {
  /** One keyd, or several instances over one store: the client fails over between them. */
  connect: KeydConnectTarget | readonly KeydConnectTarget[];
  /** Names this client in keyd's ops log on the Unix socket (mTLS callers are named by their certificate). */
  clientName: string;
  /** Deadline for connecting and for each request (default 5000 ms). */
  timeoutMs?: number;
  /** Further attempts after a retryable transport failure (default 3). */
  retries?: number;
  /** Pipelined connections kept to keyd (default 2). */
  poolSize?: number;
  /** Backoff before retry n: a random delay in [d/2, d] with d = min(maxMs, baseMs · 2ⁿ) (defaults 50 ms, 2000 ms). */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Waits between attempts; tests replace it to act at the moment of a retry. */
  sleep?: (ms: number) => Promise<void>;
}

export interface KeydClient extends KeyService {
  /** The caller is proved by the transport: a `caller` argument is ignored. */
  call<K extends KeydOperationName>(op: K, args: OpArgs<K>, caller?: Caller): Promise<OpResult<K>>;
  /** Lets in-flight calls settle, then closes every connection; later calls fail with TRESOR_ERR_KEYD_UNAVAILABLE. */
  close(): Promise<void>;
}

/**
 * Operations safe to send twice (docs/keyd.md, "Which operations fail over"): reads;
 * generateDataKey, generateBackupDataKey and rewrapDataKey (an unused key or wrapped form is
 * harmless); cancelTenantKeyDestroy (cancelling a cancelled destruction answers the same status);
 * sign, signDeletionCertificate and signCheckpoint (Ed25519 is deterministic: the same statement,
 * certificate or checkpoint — keyd signs its remembered tree again — gets the same signature).
 */
export const RETRYABLE_OPERATIONS: ReadonlySet<KeydOperationName> = new Set([
  'status',
  'health',
  'tenantKeyStatus',
  'publicKey',
  'checkpointTree',
  'opsLog',
  'listKeydBackups',
  'keydBackupHorizon',
  'unwrapDataKey',
  'generateDataKey',
  'rewrapDataKey',
  'unwrapBackupDataKey',
  'generateBackupDataKey',
  'cancelTenantKeyDestroy',
  'sign',
  'signDeletionCertificate',
  'signCheckpoint',
]);

/**
 * Operations a repeat would do twice: the client gives each call a request id (the same on every
 * attempt), and keyd does a request with a recorded id only once (src/keyd/repeated-requests.ts),
 * so they are repeated too.
 *
 * Never repeated: createTenantKey (its caller repeats it and takes "exists" as done), unseal and
 * seal (they are about one instance), and the admin's rotateRootKey, retireRootKeyVersion,
 * resetCheckpointTree and backupKeyd — an operator, told keyd could not be reached, checks the
 * ops log and runs them again if they did not happen.
 */
export const ONCE_OPERATIONS: ReadonlySet<KeydOperationName> = new Set([
  'rotateTenantKey',
  'retireTenantKeyVersion',
  'destroyTenantKey',
]);

/** A fresh request id: 128 random bits (base64url, 22 characters). */
function newRequestId(): string {
  return randomBytes(16).toString('base64url');
}

const DEFAULTS = { timeoutMs: 5_000, retries: 3, poolSize: 2, baseMs: 50, maxMs: 2_000 };
const MAX_POOL_SIZE = 16;
/** keyd instances one client may list. */
const MAX_TARGETS = 8;

/** A failure of the channel, not an answer from keyd. `sent`: the request may have reached keyd. */
class TransportFailure extends Error {
  /** Retrying cannot help (e.g. keyd's certificate is not trusted): report at once. */
  readonly permanent: boolean;
  /** The message tells an operator what to fix, so the final error carries it. */
  readonly explains: boolean;

  constructor(
    message: string,
    readonly sent: boolean,
    options: { permanent?: boolean; explains?: boolean } = {},
  ) {
    super(message);
    this.name = 'TransportFailure';
    this.permanent = options.permanent ?? false;
    this.explains = options.explains ?? this.permanent;
  }
}

export function createKeydClient(options: KeydClientOptions): KeydClient {
  const settings = checkOptions(options);
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((done) => setTimeout(done, ms)));
  const targets = settings.targets;
  const pools: (ClientConnection | undefined)[][] = targets.map(() =>
    new Array(settings.poolSize).fill(undefined),
  );
  const calls = new Set<Promise<unknown>>();
  let turn = 0;
  /** The target requests go to; moved on by a transport failure. */
  let preferred = 0;
  let closed = false;

  async function acquire(target: number): Promise<ClientConnection> {
    const pool = pools[target] as (ClientConnection | undefined)[];
    const slot = turn % pool.length;
    turn = (turn + 1) % settings.poolSize;
    let connection = pool[slot];
    if (connection === undefined || !connection.usable) {
      connection = new ClientConnection(
        targets[target] as KeydConnectTarget,
        options.clientName,
        settings.timeoutMs,
      );
      pool[slot] = connection;
    }
    await connection.ready;
    return connection;
  }

  async function attempt(target: number, op: KeydOperationName, args: unknown): Promise<unknown> {
    const connection = await acquire(target);
    return connection.request(op, args, settings.timeoutMs);
  }

  async function callWithRetries(op: KeydOperationName, args: unknown): Promise<unknown> {
    const attempts = (settings.retries + 1) * targets.length;
    let target = preferred;
    for (let n = 0; ; n++) {
      if (closed) throw new KeydError('TRESOR_ERR_KEYD_UNAVAILABLE', 'keyd client is closed');
      try {
        return await attempt(target, op, args);
      } catch (error) {
        if (!(error instanceof TransportFailure)) throw error;
        const repeatable = !error.sent || RETRYABLE_OPERATIONS.has(op) || ONCE_OPERATIONS.has(op);
        if (error.permanent || !repeatable || n + 1 >= attempts || closed) throw unavailable(error);
        // Fail over: this request and the ones after it go to the next instance.
        const next = (target + 1) % targets.length;
        if (preferred === target) preferred = next;
        target = next;
        // A round over every instance failed: back off before the next.
        if ((n + 1) % targets.length === 0)
          await sleep(backoffDelay(Math.floor(n / targets.length), settings.baseMs, settings.maxMs));
      }
    }
  }

  return {
    call<K extends KeydOperationName>(op: K, args: OpArgs<K>): Promise<OpResult<K>> {
      const once =
        ONCE_OPERATIONS.has(op) && (args as { requestId?: string }).requestId === undefined
          ? { ...args, requestId: newRequestId() }
          : args;
      const pending = callWithRetries(op, once);
      calls.add(pending);
      void pending.then(
        () => calls.delete(pending),
        () => calls.delete(pending),
      );
      return pending as Promise<OpResult<K>>;
    },

    async close() {
      closed = true;
      await Promise.allSettled([...calls]);
      for (const pool of pools) {
        for (const connection of pool) connection?.destroy();
        pool.fill(undefined);
      }
    },
  };
}

/** Exponential backoff with "equal jitter": never zero, never above the cap, and callers spread out. */
export function backoffDelay(retry: number, baseMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** retry);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function unavailable(failure: TransportFailure): KeydError {
  const message = failure.explains ? `keyd cannot be reached: ${failure.message}` : 'keyd cannot be reached';
  const error = new KeydError('TRESOR_ERR_KEYD_UNAVAILABLE', message);
  error.cause = failure;
  return error;
}

/**
 * keyd's answer as a KeydError. A code this client does not know (a newer or foreign keyd) is not
 * passed on as an untyped string: it becomes TRESOR_ERR_INTERNAL, as any unexpected failure.
 */
function keydErrorOf(error: WireError): KeydError {
  if (isKeydErrorCode(error.code)) return new KeydError(error.code, error.message);
  return new KeydError(
    'TRESOR_ERR_INTERNAL',
    `keyd answered with an error code this client does not know (${JSON.stringify(error.code.slice(0, 64))})`,
  );
}

interface PendingRequest {
  resolve(result: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** One socket to keyd with any number of requests in flight, matched to answers by id. */
class ClientConnection {
  readonly ready: Promise<void>;
  readonly #socket: Socket;
  readonly #decoder = new FrameDecoder();
  readonly #pending = new Map<number, PendingRequest>();
  readonly #clientName: string;
  readonly #timeoutMs: number;
  #nextId = 1;
  #failure: Error | undefined;
  #greeted = false;
  #onReady!: { resolve(): void; reject(error: Error): void };

  constructor(target: KeydConnectTarget, clientName: string, timeoutMs: number) {
    this.#clientName = clientName;
    this.#timeoutMs = timeoutMs;
    this.ready = new Promise<void>((resolve, reject) => {
      this.#onReady = { resolve, reject };
    });
    // Nobody may be awaiting `ready` when the connection fails: do not report that as unhandled.
    this.ready.catch(() => {});
    this.#socket =
      target.kind === 'unix'
        ? netConnect(target.path)
        : tlsConnect({
            host: target.host,
            port: target.port,
            cert: target.cert,
            key: target.key,
            ca: target.ca,
            servername: target.servername ?? (isIP(target.host) === 0 ? target.host : undefined),
            minVersion: 'TLSv1.3',
          });
    const setupTimer = setTimeout(
      () => this.#fail(new TransportFailure('timed out connecting to keyd', false)),
      timeoutMs,
    );
    void this.ready.then(
      () => {
        clearTimeout(setupTimer);
        this.#idle();
      },
      () => clearTimeout(setupTimer),
    );
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('error', (error: NodeJS.ErrnoException) => this.#fail(classify(error, this.#greeted)));
    let handshaken = false;
    this.#socket.once('secureConnect', () => {
      handshaken = true;
    });
    this.#socket.on('close', () => {
      // keyd checks the client certificate's chain after the TLS 1.3 handshake and, when it fails,
      // hangs up without an alert: the only sign is a close before the greeting.
      const refusedAfterHandshake = handshaken && !this.#greeted;
      this.#fail(
        refusedAfterHandshake
          ? new TransportFailure(
              "keyd hung up after the TLS handshake; is this client's certificate issued by the CA keyd trusts?",
              false,
              { explains: true },
            )
          : new TransportFailure('keyd closed the connection', true),
      );
    });
  }

  /** False once the connection failed or closed: the pool replaces it. */
  get usable(): boolean {
    return this.#failure === undefined;
  }

  request(op: WireOperationName, args: unknown, timeoutMs: number): Promise<unknown> {
    if (this.#failure !== undefined) return Promise.reject(this.#unsent());
    if (!this.#socket.writable) {
      this.#fail(new TransportFailure('keyd closed the connection', true));
      return Promise.reject(this.#unsent());
    }
    const id = this.#nextId++;
    // Throws TRESOR_ERR_REQUEST_INVALID (e.g. over 1 MiB) before anything is sent: not retried.
    const frame = encodeFrame({ v: PROTOCOL_VERSION, id, op, args });
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new TransportFailure(`keyd did not answer ${op} within ${timeoutMs} ms`, true));
        // A connection that lets a request time out is not trusted with the next one.
        this.#fail(new TransportFailure('keyd connection timed out', true));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#socket.ref();
      this.#socket.write(frame, () => frame.fill(0));
    });
  }

  destroy(): void {
    this.#fail(new TransportFailure('keyd client closed the connection', true));
  }

  #onData(chunk: Buffer): void {
    let payloads: Buffer[];
    try {
      payloads = this.#decoder.push(chunk);
    } catch {
      this.#fail(new TransportFailure('keyd sent a frame over the 1 MiB limit', true));
      return;
    }
    for (const payload of payloads) {
      try {
        this.#onResponse(decodeResponse(parsePayload(payload)));
      } catch {
        this.#fail(new TransportFailure('keyd sent a malformed frame', true));
        return;
      } finally {
        payload.fill(0);
      }
    }
  }

  #onResponse(response: ReturnType<typeof decodeResponse>): void {
    if (response.id === null) {
      // About the connection itself: the greeting, or a refusal such as the mTLS allowlist.
      if (!response.ok) {
        this.#fail(keydErrorOf(response.error));
      } else if (!this.#greeted) {
        this.#greeted = true;
        this.#hello();
      }
      return;
    }
    const pending = this.#pending.get(response.id);
    if (pending === undefined) {
      // Its request timed out; any key in the late answer is dropped.
      if (response.ok) wipeBuffers(response.result);
      return;
    }
    this.#pending.delete(response.id);
    clearTimeout(pending.timer);
    if (response.ok) pending.resolve(response.result);
    else pending.reject(keydErrorOf(response.error));
    if (this.#pending.size === 0) this.#idle();
  }

  #hello(): void {
    this.request('hello', { client: this.#clientName }, this.#timeoutMs).then(
      () => this.#onReady.resolve(),
      // keyd refused hello (or the connection died): this connection is of no use.
      (error: Error) => this.#fail(error),
    );
  }

  /** An idle pooled connection does not keep the process alive. */
  #idle(): void {
    if (this.#pending.size === 0) this.#socket.unref();
  }

  #fail(reason: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = reason;
    // Requests wait for `ready` before they are written: none of them reached keyd.
    this.#onReady.reject(asUnsent(reason));
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(reason);
    }
    this.#decoder.clear();
    this.#socket.destroy();
  }

  #unsent(): Error {
    return asUnsent(this.#failure ?? new TransportFailure('keyd connection is closed', false));
  }
}

/** Before a request is written, a transport failure means nothing reached keyd. */
function asUnsent(reason: Error): Error {
  return reason instanceof TransportFailure && reason.sent
    ? new TransportFailure(reason.message, false, reason)
    : reason;
}

/** Client certificate refused by keyd during the TLS handshake (alerts of RFC 8446 §6.2). */
const REFUSED_CERTIFICATE =
  /ALERT_(CERTIFICATE_REQUIRED|UNKNOWN_CA|BAD_CERTIFICATE|UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|CERTIFICATE_UNKNOWN|ACCESS_DENIED)$/;

/** keyd's own certificate failed our verification (OpenSSL verify codes as Node reports them). */
const UNTRUSTED_SERVER = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_PURPOSE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function classify(error: NodeJS.ErrnoException, greeted: boolean): Error {
  const code = error.code ?? '';
  const refused = REFUSED_CERTIFICATE.exec(code);
  if (refused) {
    return new KeydError(
      'TRESOR_ERR_FORBIDDEN',
      `keyd refused this client's certificate (${(refused[1] ?? '').toLowerCase().replaceAll('_', ' ')})`,
    );
  }
  if (UNTRUSTED_SERVER.has(code)) {
    return new TransportFailure(`its certificate is not trusted (${code})`, false, { permanent: true });
  }
  if (code.startsWith('ERR_SSL_')) {
    return new TransportFailure(`the TLS handshake failed (${code})`, false, { permanent: true });
  }
  return new TransportFailure(`keyd connection failed (${code || error.name})`, greeted);
}

/** Zeroes every Buffer in a decoded value (late answers we will not hand to anyone). */
function wipeBuffers(value: unknown): void {
  if (Buffer.isBuffer(value)) value.fill(0);
  else if (Array.isArray(value)) for (const item of value) wipeBuffers(item);
  else if (value !== null && typeof value === 'object')
    for (const item of Object.values(value)) wipeBuffers(item);
}

function checkOptions(options: KeydClientOptions): {
  targets: readonly KeydConnectTarget[];
  timeoutMs: number;
  retries: number;
  poolSize: number;
  baseMs: number;
  maxMs: number;
} {
  const invalid = (message: string) => new KeydError('TRESOR_ERR_CONFIG_INVALID', message);
  const targets = (Array.isArray(options.connect) ? options.connect : [options.connect]) as readonly (
    | KeydConnectTarget
    | undefined
  )[];
  if (targets.length === 0 || targets.length > MAX_TARGETS)
    throw invalid(`keyd client needs 1-${MAX_TARGETS} keyd targets`);
  for (const target of targets as readonly ({ kind?: unknown } | undefined)[]) {
    if (target?.kind !== 'unix' && target?.kind !== 'tls') {
      throw invalid('keyd client connects only over a Unix socket or mutual TLS');
    }
  }
  if (typeof options.clientName !== 'string' || !CLIENT_NAME_PATTERN.test(options.clientName)) {
    throw invalid('clientName must be 1-64 characters of [A-Za-z0-9._-]');
  }
  const settings = {
    targets: targets as readonly KeydConnectTarget[],
    timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
    retries: options.retries ?? DEFAULTS.retries,
    poolSize: options.poolSize ?? DEFAULTS.poolSize,
    baseMs: options.backoff?.baseMs ?? DEFAULTS.baseMs,
    maxMs: options.backoff?.maxMs ?? DEFAULTS.maxMs,
  };
  if (!(settings.timeoutMs > 0)) throw invalid('timeoutMs must be positive');
  if (!Number.isInteger(settings.retries) || settings.retries < 0)
    throw invalid('retries must be a non-negative integer');
  if (!Number.isInteger(settings.poolSize) || settings.poolSize < 1 || settings.poolSize > MAX_POOL_SIZE) {
    throw invalid(`poolSize must be 1-${MAX_POOL_SIZE}`);
  }
  if (!(settings.baseMs > 0) || !(settings.maxMs >= settings.baseMs))
    throw invalid('backoff needs 0 < baseMs ≤ maxMs');
  return settings;
}
