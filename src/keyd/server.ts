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
 * This file binds the channel, admits callers and drains on close. The listen config is checked in
 * listen-config.ts, the socket file made in unix-socket.ts, and each admitted connection served by
 * served-connection.ts (which also says how errors are answered).
 */
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { normaliseFingerprint } from '../tls/fingerprint.ts';
import { type KeydLogger, SILENT_LOGGER } from './keyd-logger.ts';
import { allowlistByFingerprint, checkListen, configInvalid, type KeydListen } from './listen-config.ts';
import type { Caller, KeyService } from './operations.ts';
import { LINGER_MS, refuse, ServedConnection } from './served-connection.ts';
import { bindUnixSocket, removeOwnSocket } from './unix-socket.ts';

export type { KeydLogger } from './keyd-logger.ts';
export { isLoopback, type KeydAllowlistEntry, type KeydListen } from './listen-config.ts';

export type KeydAddress = { kind: 'unix'; path: string } | { kind: 'tls'; host: string; port: number };

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

const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Validates the listen config (throws TRESOR_ERR_CONFIG_INVALID) and returns a server that has not bound yet. */
export function createKeydServer(options: KeydServerOptions): KeydServer {
  const listen = checkListen(options.listen);
  const { service } = options;
  const logger = options.logger ?? SILENT_LOGGER;
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
    socketIno = await bindUnixSocket(listener, path);
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
