/**
 * The HTTPS server over real sockets on 127.0.0.1 with the development CA: the TLS policy
 * (RFC 9325), HSTS, certificate reload without dropping connections, the plain-HTTP redirect,
 * slow-client timeouts and graceful shutdown.
 */
// @peculiar/x509 needs the Reflect metadata polyfill loaded first (see src/tls/dev-ca.ts).
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ConnectionOptions, connect, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { ensureDevTls } from '../../src/config/dev-tls.ts';
import { resolveServerConfig, type ServerConfig } from '../../src/config/server-config.ts';
import { TresorError } from '../../src/errors.ts';
import { SECURITY_HEADERS } from '../../src/http/security-headers.ts';
import { createHttpServer, type HttpServer } from '../../src/http/server.ts';
import { issueCertificate } from '../../src/tls/dev-ca.ts';
import { createFakeAudit, PRINCIPALS, TOKENS } from './fixtures/harness.ts';
import { type TestWorld, testRoutes } from './fixtures/test-routes.ts';

interface Running {
  server: HttpServer;
  url: URL;
  redirectUrl: URL | undefined;
  world: TestWorld;
}

let dir: string;
let ca: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tresor-https-'));
  const dev = await ensureDevTls(dir);
  ca = readFileSync(dev.caFile, 'utf8');
  copyFileSync(dev.certFile, join(dir, 'cert.pem'));
  copyFileSync(dev.keyFile, join(dir, 'key.pem'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

async function start(overrides: Record<string, string> = {}): Promise<Running> {
  const config: ServerConfig = resolveServerConfig(
    { dataDir: dir, port: '0', tlsCert: join(dir, 'cert.pem'), tlsKey: join(dir, 'key.pem') },
    { TRESOR_HEADERS_TIMEOUT_MS: '1000', TRESOR_SHUTDOWN_GRACE_MS: '5000', ...overrides },
  );
  const world: TestWorld = { log: [], things: new Map(), slow: undefined };
  const server = await createHttpServer({
    config,
    authenticate: async (token) => {
      if (token === TOKENS.tenantA) return PRINCIPALS.tenantA;
      throw new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'unknown');
    },
    audit: createFakeAudit(),
    readiness: [],
    routes: [testRoutes(world)],
    logger: pino({ level: 'silent' }),
  });
  const { url, redirectUrl } = await server.listen();
  return { server, url: new URL(url), redirectUrl: redirectUrl ? new URL(redirectUrl) : undefined, world };
}

function handshake(url: URL, options: ConnectionOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: url.hostname,
      port: Number(url.port),
      ca,
      servername: 'localhost',
      ...options,
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function get(
  url: URL,
  path: string,
  options: { agent?: Agent; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string; serial: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: url.hostname,
        port: url.port,
        path,
        ca,
        servername: 'localhost',
        agent: options.agent,
        headers: options.headers,
      },
      (res) => {
        const serial = (res.socket as TLSSocket).getPeerCertificate?.()?.serialNumber;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, serial }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('TLS policy', () => {
  let running: Running;
  before(async () => {
    running = await start();
  });
  after(() => running.server.close());

  it('negotiates TLS 1.3 by default and serves with HSTS', async () => {
    const socket = await handshake(running.url, {});
    assert.equal(socket.getProtocol(), 'TLSv1.3');
    socket.destroy();
    const res = await get(running.url, '/healthz');
    assert.equal(res.status, 200);
    assert.equal(res.headers['strict-transport-security'], 'max-age=63072000; includeSubDomains');
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  it('accepts TLS 1.2 only with forward-secret AEAD suites, in the server’s order', async () => {
    const socket = await handshake(running.url, { maxVersion: 'TLSv1.2' });
    assert.equal(socket.getProtocol(), 'TLSv1.2');
    assert.equal(socket.getCipher().standardName, 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384');
    socket.destroy();
  });

  it('refuses TLS 1.1', async () => {
    await assert.rejects(
      handshake(running.url, { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
      /alert protocol version|unsupported protocol|wrong version/i,
    );
  });

  it('refuses TLS 1.2 suites without AEAD or without forward secrecy', async () => {
    for (const ciphers of [
      'ECDHE-ECDSA-AES128-SHA256',
      'ECDHE-ECDSA-AES256-SHA',
      'AES128-GCM-SHA256',
      'AES256-SHA256',
    ]) {
      await assert.rejects(
        handshake(running.url, { maxVersion: 'TLSv1.2', ciphers }),
        /handshake failure|no shared cipher|alert/i,
        ciphers,
      );
    }
  });

  it('answers oversized headers with a 431 problem+json, not a bare error', async () => {
    const res = await get(running.url, `/v1/${'a'.repeat(20_000)}`);
    assert.equal(res.status, 431);
    assert.equal(res.headers['content-type'], 'application/problem+json');
    assert.equal(JSON.parse(res.body).code, 'TRESOR_ERR_HEADERS_TOO_LARGE');
    // Answered below fastify, yet with the same security headers as every other answer.
    for (const [name, value] of SECURITY_HEADERS) assert.equal(res.headers[name.toLowerCase()], value, name);
  });

  it('keeps dot segments literal: /v1/test/../healthz is not /healthz', async () => {
    const res = await get(running.url, '/v1/test/../../healthz');
    assert.equal(res.status, 404);
  });
});

describe('certificate reload', () => {
  it('serves a new certificate to new connections while an open keep-alive connection keeps working', async () => {
    const running = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca });
    try {
      const first = await get(running.url, '/healthz', { agent });
      const caPair = {
        certPem: readFileSync(join(dir, 'tls', 'ca.pem'), 'utf8'),
        keyPem: readFileSync(join(dir, 'tls', 'ca-key.pem'), 'utf8'),
      };
      const next = await issueCertificate(caPair, {
        commonName: 'localhost',
        sans: { dns: ['localhost'], ip: ['127.0.0.1'] },
        usage: 'server',
        days: 30,
      });
      writeFileSync(join(dir, 'cert.pem'), next.certPem);
      writeFileSync(join(dir, 'key.pem'), next.keyPem);
      running.server.reloadCertificates();

      const fresh = await get(running.url, '/healthz');
      assert.notEqual(fresh.serial, first.serial, 'a new connection gets the new certificate');
      const again = await get(running.url, '/healthz', { agent });
      assert.equal(again.status, 200);
      assert.equal(again.serial, first.serial, 'the open connection was kept, with its certificate');
    } finally {
      agent.destroy();
      await running.server.close();
    }
  });

  it('keeps the old certificate when the new files do not load', async () => {
    const running = await start();
    try {
      const good = readFileSync(join(dir, 'key.pem'));
      writeFileSync(join(dir, 'key.pem'), 'not a key');
      assert.throws(() => running.server.reloadCertificates());
      writeFileSync(join(dir, 'key.pem'), good);
      assert.equal((await get(running.url, '/healthz')).status, 200);
    } finally {
      await running.server.close();
    }
  });
});

describe('plain-HTTP redirect port', () => {
  interface Answer {
    status: number;
    headers: Record<string, unknown>;
    body: string;
  }
  const answer = (redirect: URL, host: string, path: string, method = 'GET', body?: string) =>
    new Promise<Answer>((resolve, reject) => {
      const req = httpRequest(
        { host: redirect.hostname, port: redirect.port, path, method, headers: { host } },
        (res) => {
          let text = '';
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  it('redirects a browser page with 301 to the same path on HTTPS, without a body, and 400 for a bad Host', async () => {
    const running = await start({ TRESOR_REDIRECT_PORT: '0' });
    try {
      const redirect = running.redirectUrl as URL;
      const host = `localhost:${redirect.port}`;
      for (const path of ['/signin?next=%2Fconsole', '/signin/app.js', '/docs', '/trust', '/']) {
        const moved = await answer(redirect, host, path);
        assert.equal(moved.status, 301, path);
        assert.equal(moved.headers.location, `https://localhost:${running.url.port}${path}`);
        assert.equal(moved.body, '');
        assert.equal(moved.headers['strict-transport-security'], undefined);
      }
      const bad = await answer(redirect, 'evil.example\\@x', '/signin');
      assert.equal(bad.status, 400);
      assert.equal(bad.headers.location, undefined);
    } finally {
      await running.server.close();
    }
  });

  it('refuses API and machine paths with 403 TRESOR_ERR_HTTPS_REQUIRED, never a redirect (ASVS 4.1.2)', async () => {
    const running = await start({ TRESOR_REDIRECT_PORT: '0' });
    try {
      const redirect = running.redirectUrl as URL;
      const host = `localhost:${redirect.port}`;
      const refused: [string, string][] = [
        ['GET', '/v1/test/things?limit=5'],
        ['GET', '/v1/openapi.json'],
        ['DELETE', '/v1/test/things/1'],
        ['GET', '/healthz'],
        ['GET', '/readyz'],
        ['GET', '/metrics'],
        ['GET', '/trust.json'],
        ['POST', '/signin'],
        ['GET', '/no-such-page'],
      ];
      for (const [method, path] of refused) {
        const got = await answer(redirect, host, path, method);
        assert.equal(got.status, 403, `${method} ${path}`);
        assert.equal(got.headers.location, undefined, `${method} ${path}`);
        assert.equal(got.headers['content-type'], 'application/problem+json');
        const problem = JSON.parse(got.body) as { code: string; status: number };
        assert.equal(problem.code, 'TRESOR_ERR_HTTPS_REQUIRED');
        assert.equal(problem.status, 403);
      }
      // A body sent in clear is neither echoed nor needed for the answer.
      const marker = 'plain-http-secret-7f3a';
      const posted = await answer(
        redirect,
        host,
        '/v1/test/things',
        'POST',
        JSON.stringify({ value: marker }),
      );
      assert.equal(posted.status, 403);
      assert.equal(posted.headers.location, undefined);
      assert.ok(!posted.body.includes(marker));
      assert.ok(!JSON.stringify(posted.headers).includes(marker));
    } finally {
      await running.server.close();
    }
  });

  it('answers an API request without reading its body (the answer comes before the body is sent)', async () => {
    const running = await start({ TRESOR_REDIRECT_PORT: '0' });
    try {
      const redirect = running.redirectUrl as URL;
      const socket = netConnect({ host: redirect.hostname, port: Number(redirect.port) });
      await once(socket, 'connect');
      // Headers announce a 1 MB body; none of it is ever sent. A server that read the body before
      // answering would wait for it until its request timeout.
      socket.write(
        `POST /v1/test/things HTTP/1.1\r\nHost: localhost:${redirect.port}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"value":`,
      );
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString();
      });
      await once(socket, 'close');
      assert.ok(text.startsWith('HTTP/1.1 403'), text);
      assert.ok(text.includes('TRESOR_ERR_HTTPS_REQUIRED'));
      assert.ok(!/\r\nlocation:/i.test(text));
    } finally {
      await running.server.close();
    }
  });
});

describe('slow clients', () => {
  it('closes a connection that does not finish its headers in time', async () => {
    // Every other timer that could close the connection is set to 10 minutes, far beyond the
    // test's own limit: if the connection closes, the headers timeout (1 s) closed it.
    const running = await start({
      TRESOR_REQUEST_TIMEOUT_MS: '600000',
      TRESOR_IDLE_TIMEOUT_MS: '600000',
      TRESOR_KEEP_ALIVE_TIMEOUT_MS: '600000',
    });
    try {
      const socket = await handshake(running.url, {});
      socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ');
      let answer = '';
      socket.on('data', (chunk: Buffer) => {
        answer += chunk.toString();
      });
      await once(socket, 'close');
      assert.ok(answer === '' || answer.startsWith('HTTP/1.1 408'), answer);
    } finally {
      await running.server.close();
    }
  });
});

describe('a body the answer does not need', () => {
  // RFC 9112 §9.6: a server that closes a connection with request bytes unread or still arriving
  // resets it, and the client may lose the answer it had not yet read. So an answer that needs no
  // body (GET, a refusal before parsing) still waits for the body the client is sending.
  let running: Running;
  before(async () => {
    running = await start({ TRESOR_REQUEST_TIMEOUT_MS: '1500' });
  });
  after(() => running.server.close());

  /** Sends the head and the first part, pauses, sends the rest: what came back in each phase. */
  async function inTwoParts(head: string, body: string, pauseMs = 300) {
    const socket = await handshake(running.url, {});
    let text = '';
    let reset = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    socket.on('error', (err) => {
      reset = err.message;
    });
    socket.write(`${head}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`);
    socket.write(body.slice(0, 100));
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
    const beforeRest = text;
    if (!socket.destroyed) socket.end(body.slice(100));
    // Bounded: a socket the server reset may never report its close to this side.
    await Promise.race([once(socket, 'close'), new Promise((resolve) => setTimeout(resolve, 5000))]);
    socket.destroy();
    return { beforeRest, answer: text, reset };
  }

  const deep = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;

  /** Sends a request whose body never ends; what came back once the server closed the connection. */
  async function answerToUnfinished(request: string): Promise<string> {
    const socket = await handshake(running.url, {});
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    socket.on('error', () => {});
    socket.write(request);
    await once(socket, 'close');
    return text;
  }

  it('a GET with a body is answered once the body has arrived, and the connection ends cleanly', async () => {
    const got = await inTwoParts(
      'GET /v1/openapi.json HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n',
      deep,
    );
    assert.ok(got.beforeRest === '', 'answered while the body was still arriving');
    assert.ok(got.answer.startsWith('HTTP/1.1 200'), got.answer.slice(0, 80));
    assert.equal(got.reset, '');
  });

  it('a request refused before its body is parsed (401, 404) waits for the body too', async () => {
    for (const [head, status] of [
      ['POST /v1/test/things HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n', '401'],
      ['POST /v1/nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n', '404'],
    ] as const) {
      const got = await inTwoParts(head, JSON.stringify({ value: 'x'.repeat(60_000) }));
      assert.ok(got.beforeRest === '', `${status}: answered while the body was still arriving`);
      assert.ok(got.answer.startsWith(`HTTP/1.1 ${status}`), got.answer.slice(0, 80));
      assert.equal(got.reset, '');
    }
  });

  it('a body declared above the body limit is refused at once (413), not waited for', async () => {
    const text = await answerToUnfinished(
      'POST /v1/test/things HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ' +
        `${TOKENS.tenantA}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{`,
    );
    assert.ok(text.startsWith('HTTP/1.1 413'), text.slice(0, 80));
  });

  it('a body that stops arriving does not hold the connection past the request timeout', async () => {
    const text = await answerToUnfinished(
      'GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
    );
    assert.ok(text === '' || /^HTTP\/1\.1 (408|200)/.test(text), text.slice(0, 80));
  });
});

describe('graceful shutdown', () => {
  it('finishes an in-flight request, refuses new connections, then resolves', async () => {
    const running = await start();
    let release: () => void = () => {};
    running.world.slow = new Promise((resolve) => {
      release = resolve;
    });
    const started = new Promise<void>((resolve) => {
      running.world.slowStarted = resolve;
    });
    const inFlight = get(running.url, '/v1/test/slow', {
      headers: { authorization: `Bearer ${TOKENS.tenantA}` },
    });
    await started;

    let closed = false;
    const closing = running.server.close().then(() => {
      closed = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed, false, 'close waits for the in-flight request');
    await assert.rejects(handshake(running.url, {}), /ECONNREFUSED|ECONNRESET|socket hang up/);

    release();
    const res = await inFlight;
    assert.equal(res.status, 200);
    assert.equal(res.headers.connection, 'close');
    assert.deepEqual(JSON.parse(res.body), { done: true });
    await closing;
    assert.equal(closed, true);
  });
});
