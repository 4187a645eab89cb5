/**
 * Connection-level limits of the HTTPS server over real sockets on 127.0.0.1: a connection that
 * never finishes its TLS handshake, or finishes it and never sends a request, is closed by the
 * server; connections past the server's cap, or past the per-address cap, are refused while the
 * earlier ones keep working.
 *
 * No assertion is on elapsed time: each test waits for the server to close the socket ('close'),
 * bounded only by the test's own time limit, with every other timer that could close it set far
 * beyond that limit, so a close can only come from the limit under test.
 */
// @peculiar/x509 needs the Reflect metadata polyfill loaded first (see src/tls/dev-ca.ts).
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { ensureDevTls } from '../../src/config/dev-tls.ts';
import { resolveServerConfig } from '../../src/config/server-config.ts';
import { TresorError } from '../../src/errors.ts';
import { createHttpServer, type HttpServer } from '../../src/http/server.ts';
import { createFakeAudit } from './fixtures/harness.ts';

/** The test's own limit: every wait below is bounded by it, never by a timer of ours. */
const TEST_LIMIT = { timeout: 60_000 };
/** Far beyond TEST_LIMIT: a timer set to this cannot be what closed a connection. */
const NEVER = '120000';

let dir: string;
let ca: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tresor-transport-'));
  ca = readFileSync((await ensureDevTls(dir)).caFile, 'utf8');
});

after(() => rmSync(dir, { recursive: true, force: true }));

interface Running {
  server: HttpServer;
  port: number;
  /** The server's side of every TCP connection it accepted. */
  accepted: Socket[];
}

async function start(env: Record<string, string>): Promise<Running> {
  const config = resolveServerConfig({ dataDir: dir, port: '0' }, env);
  const server = await createHttpServer({
    config,
    authenticate: async () => {
      throw new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'unknown');
    },
    audit: createFakeAudit(),
    readiness: [],
    routes: [],
    logger: pino({ level: 'silent' }),
  });
  const accepted: Socket[] = [];
  server.app.server.on('connection', (socket: Socket) => accepted.push(socket));
  const { url } = await server.listen();
  return { server, port: Number(new URL(url).port), accepted };
}

/** Every timeout long, then the ones a test names. */
function timeouts(overrides: Record<string, string>): Record<string, string> {
  return {
    TRESOR_TLS_HANDSHAKE_TIMEOUT_MS: NEVER,
    TRESOR_HEADERS_TIMEOUT_MS: NEVER,
    TRESOR_REQUEST_TIMEOUT_MS: NEVER,
    TRESOR_KEEP_ALIVE_TIMEOUT_MS: NEVER,
    TRESOR_IDLE_TIMEOUT_MS: NEVER,
    TRESOR_SHUTDOWN_GRACE_MS: '1000',
    ...overrides,
  };
}

/** A plain TCP connection that sends nothing, not even a ClientHello. */
async function silentTcp(port: number): Promise<Socket> {
  const socket = tcpConnect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** A TLS connection: resolves once the handshake is done, rejects if the server ends it first. */
function tls(port: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the handshake finished')));
  });
}

/**
 * A TLS connection whose client never closes its side: it reads the server's close but keeps its
 * own half open, as a client holding connections would. Resolves once the handshake is done.
 */
async function halfOpenTls(port: number): Promise<TLSSocket> {
  const tcp = tcpConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await once(tcp, 'connect');
  const socket = tlsConnect({ socket: tcp, ca, servername: 'localhost' });
  socket.on('error', () => {});
  tcp.on('error', () => {});
  await once(socket, 'secureConnect');
  return socket;
}

/** One keep-alive request on an open connection; resolves with the status line. */
function ask(socket: TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const onData = (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      const end = answer.indexOf('\r\n');
      if (end >= 0) {
        socket.off('data', onData);
        resolve(answer.slice(0, end));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
  });
}

describe('connections that send nothing', () => {
  it(
    'closes TCP connections that never send a ClientHello, after the handshake timeout',
    TEST_LIMIT,
    async () => {
      const { server, port, accepted } = await start(timeouts({ TRESOR_TLS_HANDSHAKE_TIMEOUT_MS: '1000' }));
      try {
        const sockets = await Promise.all(Array.from({ length: 20 }, () => silentTcp(port)));
        // Both ends: the client sees its connection closed, and the server holds nothing.
        await Promise.all(sockets.map((s) => once(s, 'close')));
        assert.equal(accepted.length, 20);
        await Promise.all(accepted.map((s) => (s.destroyed ? undefined : once(s, 'close'))));
      } finally {
        await server.close();
      }
    },
  );

  it('closes TLS connections that never send a request, after the headers timeout', TEST_LIMIT, async () => {
    const { server, port, accepted } = await start(
      timeouts({ TRESOR_HEADERS_TIMEOUT_MS: '1000', TRESOR_REQUEST_TIMEOUT_MS: '2000' }),
    );
    try {
      const sockets = await Promise.all(Array.from({ length: 20 }, () => halfOpenTls(port)));
      const received: string[] = [];
      for (const s of sockets) s.on('data', (chunk: Buffer) => received.push(chunk.toString('latin1')));
      // The server's side closes even though no client ever closes its own.
      assert.equal(accepted.length, 20);
      await Promise.all(accepted.map((s) => (s.destroyed ? undefined : once(s, 'close'))));
      for (const s of sockets) s.destroy();
      // Nothing was asked, so nothing is answered (at most a 408 problem).
      for (const r of received) assert.match(r, /^HTTP\/1\.1 408 /);
    } finally {
      await server.close();
    }
  });

  it(
    'closes a kept-alive connection that asks nothing more, after the keep-alive timeout',
    TEST_LIMIT,
    async () => {
      const { server, port } = await start(timeouts({ TRESOR_KEEP_ALIVE_TIMEOUT_MS: '1000' }));
      try {
        const socket = await tls(port);
        assert.match(await ask(socket), /^HTTP\/1\.1 200 /);
        await once(socket, 'close');
      } finally {
        await server.close();
      }
    },
  );
});

describe('connection caps', () => {
  it('refuses connections past the server cap while the earlier ones keep working', TEST_LIMIT, async () => {
    const { server, port } = await start(
      timeouts({ TRESOR_MAX_CONNECTIONS: '5', TRESOR_MAX_CONNECTIONS_PER_ADDRESS: '0' }),
    );
    try {
      const open: TLSSocket[] = [];
      for (let i = 0; i < 5; i += 1) {
        const socket = await tls(port);
        assert.match(await ask(socket), /^HTTP\/1\.1 200 /);
        open.push(socket);
      }
      await assert.rejects(tls(port));
      await assert.rejects(tls(port));
      for (const socket of open) assert.match(await ask(socket), /^HTTP\/1\.1 200 /);
      for (const socket of open) socket.destroy();
    } finally {
      await server.close();
    }
  });

  it(
    'refuses connections past the per-address cap while the earlier ones keep working',
    TEST_LIMIT,
    async () => {
      const { server, port } = await start(
        timeouts({ TRESOR_MAX_CONNECTIONS: '100', TRESOR_MAX_CONNECTIONS_PER_ADDRESS: '3' }),
      );
      try {
        const open = [await tls(port), await tls(port), await tls(port)];
        await assert.rejects(tls(port));
        // Raw TCP counts too: a silent socket is closed at once rather than held until the handshake timeout.
        const silent = await silentTcp(port);
        await once(silent, 'close');
        for (const socket of open) assert.match(await ask(socket), /^HTTP\/1\.1 200 /);
        for (const socket of open) socket.destroy();
      } finally {
        await server.close();
      }
    },
  );

  it('does not apply the per-address cap to a trusted proxy', TEST_LIMIT, async () => {
    const { server, port } = await start(
      timeouts({
        TRESOR_MAX_CONNECTIONS: '100',
        TRESOR_MAX_CONNECTIONS_PER_ADDRESS: '2',
        TRESOR_TRUST_PROXY: '127.0.0.0/8',
      }),
    );
    try {
      const open = await Promise.all(Array.from({ length: 5 }, () => tls(port)));
      for (const socket of open) assert.match(await ask(socket), /^HTTP\/1\.1 200 /);
      for (const socket of open) socket.destroy();
    } finally {
      await server.close();
    }
  });
});
