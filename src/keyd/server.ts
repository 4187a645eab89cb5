/**
 * keyd's listener: carries protocol.ts frames between a private channel and a KeyService. It
 * proves who is calling and nothing more; sealed and role rules are the service's.
 *
 * Two channels only, because keyd guards the key hierarchy:
 *   - a Unix socket (dev, single host): created under umask 0177 inside a folder that must be
 *     private (0700, ours), then chmod 0600 — the file mode is the access control, so every
 *     caller is `unix:<hello name>` with role admin;
 *   - TLS 1.3 with client certificates (production): the certificate must chain to the configured
 *     CA *and* its SHA-256 fingerprint must be on the allowlist, which names the caller and its
 *     role. A chaining certificate missing from the allowlist gets one TRESOR_ERR_FORBIDDEN frame
 *     and the connection is closed, so the client can say why.
 * Plain TCP is not offered; a TLS config without a CA or allowlist is refused when the server is
 * created, whatever the address (RFC 8446 for the TLS version; mTLS as RFC 5246 §7.4.6 "client
 * certificate").
 *
 * Errors: KeydError and CryptoError codes and messages pass through (they are written to be shown);
 * anything else becomes TRESOR_ERR_INTERNAL with a fixed message, and only the log sees more.
 * Arguments and results are never logged.
 */
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import {
  createServer as createNetServer,
  isIPv4,
  connect as netConnect,
  type Server,
  type Socket,
} from 'node:net';
import { dirname, resolve } from 'node:path';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { CryptoError } from '../crypto/index.ts';
import { normaliseFingerprint } from '../tls/fingerprint.ts';
import { KeydError } from './errors.ts';
import type { Caller, KeydOperationName, KeyService } from './operations.ts';
import {
  CLIENT_NAME_PATTERN,
  decodeRequest,
  encodeFrame,
  errorResponse,
  FrameDecoder,
  type Greeting,
  okResponse,
  PROTOCOL_VERSION,
  parsePayload,
  type ResponseFrame,
  type WireError,
} from './protocol.ts';

export interface KeydAllowlistEntry {
  /** The client certificate's SHA-256 fingerprint, as Node's `fingerprint256` or plain hex (any case). */
  fingerprint256: string;
  name: string;
  role: 'admin' | 'server';
}

export type KeydListen =
  | { kind: 'unix'; path: string }
  | {
      kind: 'tls';
      host: string;
      port: number;
      cert: string | Buffer;
      key: string | Buffer;
      ca: string | Buffer;
      allowlist: KeydAllowlistEntry[];
    };

export type KeydAddress = { kind: 'unix'; path: string } | { kind: 'tls'; host: string; port: number };

/** What the server logs through; a pino logger fits. */
export interface KeydLogger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export interface KeydServerOptions {
  service: KeyService;
  listen: KeydListen;
  logger?: KeydLogger;
  /** How long close() lets in-flight requests finish before cutting connections (default 10 s). */
  drainTimeoutMs?: number;
}

export interface KeydServer {
  /** Binds the channel; rejects with TRESOR_ERR_CONFIG_INVALID when it cannot be bound safely. */
  listen(): Promise<KeydAddress>;
  address(): KeydAddress | undefined;
  /** Stops accepting, lets in-flight requests finish, closes connections, removes the socket file. */
  close(): Promise<void>;
}

/** Requests one connection may have in flight before the server stops reading from it. */
const MAX_IN_FLIGHT_PER_CONNECTION = 64;
/** How long a refused or closing peer gets to read our last frame before the socket is destroyed. */
const LINGER_MS = 2_000;
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
const SOCKET_FILE_MODE = 0o600;
const SOCKET_DIR_MODE = 0o700;

const SILENT: KeydLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** Validates the listen config (throws TRESOR_ERR_CONFIG_INVALID) and returns a server that has not bound yet. */
export function createKeydServer(options: KeydServerOptions): KeydServer {
  const listen = checkListen(options.listen);
  const { service } = options;
  const logger = options.logger ?? SILENT;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  const allowlist = listen.kind === 'tls' ? allowlistByFingerprint(listen.allowlist) : new Map();

  const connections = new Set<Socket>();
  const served = new Set<ServedConnection>();
  const inFlight = new Set<Promise<void>>();
  let server: Server | undefined;
  let bound: KeydAddress | undefined;
  let socketIno: number | undefined;
  let closing: Promise<void> | undefined;

  function track(socket: Socket): void {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      logger.debug({ code: error.code }, 'keyd connection error'),
    );
  }

  function serve(socket: Socket, caller: Caller, nameable: boolean): void {
    const connection = new ServedConnection(socket, caller, nameable, {
      service,
      logger,
      isClosing: () => closing !== undefined,
      track: (promise) => {
        inFlight.add(promise);
        void promise.finally(() => inFlight.delete(promise));
      },
    });
    served.add(connection);
    socket.once('close', () => served.delete(connection));
    connection.greet();
  }

  function onTlsConnection(socket: TLSSocket): void {
    socket.on('error', (error: NodeJS.ErrnoException) =>
      logger.debug({ code: error.code }, 'keyd connection error'),
    );
    const fingerprint = normaliseFingerprint(socket.getPeerCertificate().fingerprint256 ?? '');
    // rejectUnauthorized already ended connections whose chain fails; `authorized` is checked again
    // so the allowlist can never admit a certificate the CA did not issue.
    const entry = socket.authorized && fingerprint !== undefined ? allowlist.get(fingerprint) : undefined;
    if (entry === undefined || fingerprint === undefined) {
      logger.warn(
        { fingerprint: fingerprint?.slice(0, 16) ?? null },
        'keyd refused a client certificate not on the allowlist',
      );
      refuse(socket, { code: 'TRESOR_ERR_FORBIDDEN', message: 'client certificate is not on the allowlist' });
      return;
    }
    const caller: Caller = { id: `mtls:${entry.name}#${fingerprint.slice(0, 16)}`, role: entry.role };
    logger.info({ caller: caller.id }, 'keyd connection accepted');
    serve(socket, caller, false);
  }

  function createListener(): Server {
    if (listen.kind === 'unix') {
      return createNetServer((socket) => {
        track(socket);
        serve(socket, { id: 'unix:anonymous', role: 'admin' }, true);
      });
    }
    const tlsServer = createTlsServer(
      {
        cert: listen.cert,
        key: listen.key,
        ca: listen.ca,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
        handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
      },
      onTlsConnection,
    );
    tlsServer.on('connection', track);
    tlsServer.on('tlsClientError', (error: NodeJS.ErrnoException) => {
      logger.warn({ code: error.code ?? null }, 'keyd TLS handshake refused');
    });
    return tlsServer;
  }

  async function bindUnix(listener: Server, path: string): Promise<KeydAddress> {
    prepareSocketPath(path);
    await listenWithUmask(listener, path);
    chmodSync(path, SOCKET_FILE_MODE);
    const stat = lstatSync(path);
    if (!stat.isSocket() || (stat.mode & 0o777) !== SOCKET_FILE_MODE) {
      throw configInvalid(`keyd socket ${path} could not be made mode 0600`);
    }
    socketIno = stat.ino;
    logger.info({ path }, 'keyd listening on a Unix socket');
    return { kind: 'unix', path };
  }

  async function bindTls(listener: Server, host: string, port: number): Promise<KeydAddress> {
    await new Promise<void>((resolveListen, reject) => {
      listener.once('error', (error: NodeJS.ErrnoException) =>
        reject(configInvalid(`cannot listen on ${host}:${port} (${error.code ?? 'error'})`)),
      );
      listener.listen(port, host, () => resolveListen());
    });
    const address = listener.address();
    const boundPort = typeof address === 'object' && address !== null ? address.port : port;
    logger.info({ host, port: boundPort }, 'keyd listening with mutual TLS');
    return { kind: 'tls', host, port: boundPort };
  }

  return {
    async listen() {
      if (server !== undefined || closing !== undefined)
        throw configInvalid('keyd server is already listening');
      const listener = createListener();
      server = listener;
      try {
        bound =
          listen.kind === 'unix'
            ? await bindUnix(listener, listen.path)
            : await bindTls(listener, listen.host, listen.port);
      } catch (error) {
        listener.close();
        server = undefined;
        throw error;
      }
      // Once bound, listener errors (e.g. EMFILE on accept) are logged rather than thrown at the process.
      listener.on('error', (error: NodeJS.ErrnoException) =>
        logger.error({ code: error.code ?? null }, 'keyd listener error'),
      );
      return bound;
    },

    address: () => bound,

    close() {
      closing ??= (async () => {
        const listener = server;
        if (listener === undefined) return;
        const stopped = new Promise<void>((done) => listener.close(() => done()));
        await settleWithin([...inFlight], drainTimeoutMs);
        for (const connection of served) connection.finish();
        await settleWithin([stopped], LINGER_MS);
        for (const socket of connections) socket.destroy();
        await stopped;
        if (listen.kind === 'unix') removeOwnSocket(listen.path, socketIno);
        logger.info({}, 'keyd listener closed');
      })();
      return closing;
    },
  };
}

interface ServeContext {
  service: KeyService;
  logger: KeydLogger;
  isClosing(): boolean;
  track(promise: Promise<void>): void;
}

/** One accepted connection: decodes frames, answers hello, dispatches everything else concurrently. */
class ServedConnection {
  readonly #socket: Socket;
  #caller: Caller;
  readonly #ctx: ServeContext;
  readonly #decoder = new FrameDecoder();
  /** Only the first request may be hello, and only on the Unix socket does it name the caller. */
  #helloAllowed: boolean;
  readonly #nameable: boolean;
  #inFlight = 0;
  #paused = false;

  constructor(socket: Socket, caller: Caller, nameable: boolean, ctx: ServeContext) {
    this.#socket = socket;
    this.#caller = caller;
    this.#nameable = nameable;
    this.#helloAllowed = true;
    this.#ctx = ctx;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.once('close', () => this.#decoder.clear());
  }

  greet(): void {
    const greeting: Greeting = { server: 'keyd', v: PROTOCOL_VERSION };
    this.#send(okResponse(null, greeting));
  }

  /** Graceful end once in-flight answers are written: flushes, then destroys. */
  finish(): void {
    if (this.#socket.destroyed) return;
    this.#socket.end(() => this.#socket.destroy());
  }

  #onData(chunk: Buffer): void {
    if (this.#ctx.isClosing()) {
      chunk.fill(0);
      return;
    }
    let payloads: Buffer[];
    try {
      payloads = this.#decoder.push(chunk);
    } catch (error) {
      // Broken framing: the stream cannot be re-synchronised, so say why and hang up.
      this.#socket.removeAllListeners('data');
      refuse(this.#socket, wireError(error));
      return;
    }
    for (const payload of payloads) this.#onPayload(payload);
  }

  #onPayload(payload: Buffer): void {
    let message: unknown;
    try {
      message = parsePayload(payload);
    } catch (error) {
      this.#send(errorResponse(null, wireError(error)));
      return;
    } finally {
      payload.fill(0);
    }
    const request = decodeRequest(message);
    if (!request.ok) {
      this.#send(errorResponse(request.id, wireError(request.error)));
      return;
    }
    const helloAllowed = this.#helloAllowed;
    this.#helloAllowed = false;
    if (request.op === 'hello') {
      this.#send(this.#hello(request.id, request.args.client as string, helloAllowed));
      return;
    }
    this.#dispatch(request.id, request.op, request.args);
  }

  #hello(id: number, client: string, allowed: boolean): ResponseFrame {
    if (!allowed)
      return errorResponse(id, {
        code: 'TRESOR_ERR_REQUEST_INVALID',
        message: 'hello must be the first request',
      });
    if (!CLIENT_NAME_PATTERN.test(client)) {
      return errorResponse(id, {
        code: 'TRESOR_ERR_REQUEST_INVALID',
        message: 'client name must be 1-64 characters of [A-Za-z0-9._-]',
      });
    }
    if (this.#nameable) this.#caller = { id: `unix:${client}`, role: this.#caller.role };
    this.#ctx.logger.debug({ caller: this.#caller.id }, 'keyd client said hello');
    return okResponse(id, { caller: this.#caller.id });
  }

  #dispatch(id: number, op: KeydOperationName, args: Record<string, unknown>): void {
    const caller: Caller = Object.freeze({ ...this.#caller });
    this.#inFlight += 1;
    if (this.#inFlight >= MAX_IN_FLIGHT_PER_CONNECTION && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
    const work = (async () => {
      let response: ResponseFrame;
      try {
        response = okResponse(id, await this.#ctx.service.call(op, args as never, caller));
      } catch (error) {
        response = errorResponse(id, this.#errorFor(op, error));
      }
      this.#send(response);
    })().finally(() => {
      this.#inFlight -= 1;
      if (this.#paused && this.#inFlight < MAX_IN_FLIGHT_PER_CONNECTION / 2) {
        this.#paused = false;
        this.#socket.resume();
      }
    });
    this.#ctx.track(work);
  }

  #errorFor(op: string, error: unknown): WireError {
    if (error instanceof KeydError || error instanceof CryptoError)
      return { code: error.code, message: error.message };
    // Name and stack frames only: a message may quote the data it choked on.
    const fields = {
      op,
      caller: this.#caller.id,
      error: error instanceof Error ? error.name : typeof error,
      stack: error instanceof Error ? error.stack?.split('\n').slice(1, 8).join('\n') : undefined,
    };
    this.#ctx.logger.error(fields, 'keyd operation failed unexpectedly');
    return { code: 'TRESOR_ERR_INTERNAL', message: 'internal keyd error' };
  }

  #send(response: ResponseFrame): void {
    let frame: Buffer;
    try {
      frame = encodeFrame(response);
    } catch (error) {
      frame = encodeFrame(errorResponse(response.id, wireError(error)));
    }
    write(this.#socket, frame);
  }
}

/** Writes a frame and wipes it once the socket has taken it (it may carry a data key). */
function write(socket: Socket, frame: Buffer): void {
  if (socket.destroyed || !socket.writable) {
    frame.fill(0);
    return;
  }
  socket.write(frame, () => frame.fill(0));
}

/** Sends one connection-level error frame and hangs up, reading (and dropping) whatever the peer still sends. */
function refuse(socket: Socket, error: WireError): void {
  write(socket, encodeFrame(errorResponse(null, error)));
  socket.on('data', (chunk: Buffer) => chunk.fill(0));
  socket.resume();
  socket.end();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

function wireError(error: unknown): WireError {
  if (error instanceof KeydError) return { code: error.code, message: error.message };
  return { code: 'TRESOR_ERR_INTERNAL', message: 'internal keyd error' };
}

// ---------------------------------------------------------------------------------------------
// Configuration checks

function checkListen(listen: KeydListen): KeydListen {
  const config = listen as unknown;
  if (typeof config !== 'object' || config === null) throw configInvalid('keyd needs a listen config');
  const kind = (config as { kind?: unknown }).kind;
  if (kind === 'unix') {
    const path = (config as { path?: unknown }).path;
    if (typeof path !== 'string' || path.length === 0) throw configInvalid('unix listen needs a socket path');
    return { kind: 'unix', path: resolve(path) };
  }
  if (kind !== 'tls') {
    throw configInvalid('keyd listens only on a Unix socket or with mutual TLS; plain TCP is not offered');
  }
  const tls = config as Partial<Extract<KeydListen, { kind: 'tls' }>>;
  const host = typeof tls.host === 'string' ? tls.host.replace(/^\[(.*)\]$/, '$1') : '';
  if (host.length === 0) throw configInvalid('tls listen needs a host');
  if (!Number.isInteger(tls.port) || (tls.port as number) < 0 || (tls.port as number) > 65_535) {
    throw configInvalid('tls listen needs a port 0-65535');
  }
  const mtlsComplete =
    present(tls.cert) &&
    present(tls.key) &&
    present(tls.ca) &&
    Array.isArray(tls.allowlist) &&
    tls.allowlist.length > 0;
  if (!mtlsComplete) {
    throw configInvalid(
      isLoopback(host)
        ? 'tls listen needs cert, key, ca and a non-empty client allowlist'
        : `refusing to listen on ${host} without mutual TLS (cert, key, ca and a non-empty client allowlist)`,
    );
  }
  return { ...(tls as Extract<KeydListen, { kind: 'tls' }>), host };
}

function allowlistByFingerprint(entries: KeydAllowlistEntry[]): Map<string, KeydAllowlistEntry> {
  const map = new Map<string, KeydAllowlistEntry>();
  for (const entry of entries) {
    const fingerprint = normaliseFingerprint(
      typeof entry?.fingerprint256 === 'string' ? entry.fingerprint256 : '',
    );
    if (fingerprint === undefined)
      throw configInvalid('allowlist fingerprint256 must be a SHA-256 fingerprint (64 hex digits)');
    if (typeof entry.name !== 'string' || !CLIENT_NAME_PATTERN.test(entry.name)) {
      throw configInvalid('allowlist name must be 1-64 characters of [A-Za-z0-9._-]');
    }
    if (entry.role !== 'admin' && entry.role !== 'server')
      throw configInvalid('allowlist role must be admin or server');
    if (map.has(fingerprint))
      throw configInvalid(`allowlist names fingerprint ${fingerprint.slice(0, 16)}… twice`);
    map.set(fingerprint, { fingerprint256: fingerprint, name: entry.name, role: entry.role });
  }
  return map;
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice('::ffff:'.length) : h;
  return isIPv4(v4) && v4.startsWith('127.');
}

function present(value: unknown): boolean {
  return (typeof value === 'string' || Buffer.isBuffer(value)) && value.length > 0;
}

// ---------------------------------------------------------------------------------------------
// Unix socket file

/** The socket's folder must be ours and private; a stale socket file is removed, anything else refused. */
function prepareSocketPath(path: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: SOCKET_DIR_MODE });
  const dirStat = statSync(dir);
  const uid = process.getuid?.();
  if (!dirStat.isDirectory() || (uid !== undefined && dirStat.uid !== uid) || (dirStat.mode & 0o077) !== 0) {
    throw configInvalid(
      `keyd socket folder ${dir} must be private: owned by this user, mode 0700 (is ${(dirStat.mode & 0o777).toString(8)})`,
    );
  }
  let stat: ReturnType<typeof lstatSync> | undefined;
  try {
    stat = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (stat !== undefined && !stat.isSocket())
    throw configInvalid(`refusing to replace ${path}: it is not a socket`);
}

async function listenWithUmask(server: Server, path: string): Promise<void> {
  if (lstatExists(path)) {
    if (await isListening(path)) throw configInvalid(`another process already listens on ${path}`);
    unlinkSync(path);
  }
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(configInvalid(`cannot listen on ${path} (${error.code ?? 'error'})`)),
    );
    // Node binds a pipe synchronously inside listen(), so the umask covers the socket's creation:
    // it is born 0600 and the chmod after it is a second lock, not the only one.
    const previous = setUmask(0o177);
    try {
      server.listen(path, () => resolveListen());
    } finally {
      if (previous !== undefined) setUmask(previous);
    }
  });
}

/** process.umask throws in worker threads; the private folder still protects the socket there. */
function setUmask(mask: number): number | undefined {
  try {
    return process.umask(mask);
  } catch {
    return undefined;
  }
}

function lstatExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** True when something accepts connections on the socket (a live keyd), false for a stale file. */
function isListening(path: string): Promise<boolean> {
  return new Promise((done) => {
    const probe = netConnect(path);
    probe.once('connect', () => {
      probe.destroy();
      done(true);
    });
    probe.once('error', () => done(false));
  });
}

/** Removes the socket file unless another server has replaced it since (different inode). */
function removeOwnSocket(path: string, ino: number | undefined): void {
  try {
    const stat = lstatSync(path);
    if (stat.isSocket() && stat.ino === ino) unlinkSync(path);
  } catch {
    // Already gone: Node unlinks a pipe when its server closes.
  }
}

function settleWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((done) => {
    timer = setTimeout(done, ms);
    timer.unref();
  });
  return Promise.race([Promise.allSettled(promises).then(() => undefined), timeout]).finally(() =>
    clearTimeout(timer),
  );
}

function configInvalid(message: string): KeydError {
  return new KeydError('TRESOR_ERR_CONFIG_INVALID', message);
}
