/**
 * TEST-ONLY. Deliberately weakened servers, each with one flaw a scanner of test:security must
 * catch (prove-tools.security.ts). They live here, in test code, and nothing under src/ imports
 * them: no production build can start one. Each listens on 127.0.0.1 at a port of the security
 * run's range with a certificate of the dev CA, like the real stack.
 *
 * - weakTlsServer: TLS 1.0 and a CBC/SHA-1 suite allowed (a custom TLS option, not Tresor's
 *   policy), and no HSTS header;
 * - sqlConcatServer: a Fastify route whose SQL is built by concatenating the request's value, and
 *   one that refuses every request (401), as when a scanner's credentials die;
 * - reflectingServer: a page that echoes a query parameter into HTML unescaped, with no security
 *   headers (reflected XSS);
 * - throwingApiServer: a small API with its own OpenAPI document whose handler throws on a hostile
 *   value (a 500);
 * - an extra listener: any of them started beside the intended port (nmap).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Fastify, { type FastifyInstance } from 'fastify';
import { ensureDevTls } from '../../src/config/dev-tls.ts';

/**
 * Every socket a server accepted, destroyed on close: a scanner leaves connections half-open (an
 * unfinished TLS handshake, a version probe), and server.close() would wait for them for ever.
 */
function trackSockets(server: {
  on(event: 'connection', listener: (s: import('node:net').Socket) => void): unknown;
}) {
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return () => {
    for (const socket of sockets) socket.destroy();
  };
}

export interface WeakServer {
  url: string;
  port: number;
  /** The dev CA that issued its certificate. */
  ca?: Buffer;
  close(): Promise<void>;
}

async function devCertificate(): Promise<{ cert: Buffer; key: Buffer; ca: Buffer; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'scanners-weak-'));
  const tls = await ensureDevTls(dir);
  return {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    ca: readFileSync(tls.caFile),
    dir,
  };
}

/** TLS 1.0 allowed with a CBC/SHA-1 suite (OpenSSL security level 0 permits it), no HSTS. */
export async function weakTlsServer(port: number): Promise<WeakServer> {
  const { cert, key, dir } = await devCertificate();
  const server: Server = createHttpsServer(
    {
      cert,
      key,
      minVersion: 'TLSv1',
      ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0',
    },
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('weak\n');
    },
  );
  const destroySockets = trackSockets(server);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      destroySockets();
      await closed;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A plain TCP listener: the extra port nmap must report. */
export async function extraListener(port: number): Promise<WeakServer> {
  const server: TcpServer = createTcpServer((socket) => socket.end('hello\r\n'));
  const destroySockets = trackSockets(server);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `tcp://127.0.0.1:${port}`,
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      destroySockets();
      await closed;
    },
  };
}

async function fastifyOverTls(port: number, routes: (app: FastifyInstance) => void): Promise<WeakServer> {
  const { cert, key, ca, dir } = await devCertificate();
  const app = Fastify({ https: { cert, key }, forceCloseConnections: true });
  routes(app);
  await app.listen({ host: '127.0.0.1', port });
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    ca,
    async close() {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A records table behind routes that build their SQL by concatenation — the flaw sqlmap must find.
 * The path and query forms both, as Tresor's routes take values both ways.
 */
export function sqlConcatServer(port: number): Promise<WeakServer> {
  const db = new Database(':memory:');
  db.exec(
    "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT); INSERT INTO people VALUES ('p1', 'ada'), ('p2', 'bob')",
  );
  const lookup = (id: string) => {
    try {
      return { rows: db.prepare(`SELECT id, name FROM people WHERE id = '${id}'`).all() };
    } catch {
      return { error: 'bad query' };
    }
  };
  return fastifyOverTls(port, (app) => {
    app.get<{ Params: { id: string } }>('/v1/weak/people/:id', async (req, reply) => {
      const found = lookup(req.params.id);
      if ('error' in found) return reply.code(400).send(found);
      if (found.rows.length === 0) return reply.code(404).send({ error: 'not found' });
      return found;
    });
    app.get<{ Querystring: { id?: string } }>('/v1/weak/people', async (req, reply) => {
      const found = lookup(req.query.id ?? '');
      return 'error' in found ? reply.code(400).send(found) : found;
    });
    // Every request refused, as a server answers a scanner whose credentials died: a scan of it
    // sees nothing, and must say so rather than pass.
    app.get('/v1/weak/locked', async (_req, reply) => reply.code(401).send({ error: 'unauthenticated' }));
    app.addHook('onClose', async () => db.close());
  });
}

/** A page that reflects `q` into HTML unescaped, without CSP or any other security header. */
export function reflectingServer(port: number): Promise<WeakServer> {
  return fastifyOverTls(port, (app) => {
    app.get('/', async (_req, reply) =>
      reply.type('text/html').send('<html><body><a href="/search?q=hello">search</a></body></html>'),
    );
    app.get<{ Querystring: { q?: string } }>('/search', async (req, reply) =>
      reply.type('text/html').send(`<html><body><p>You searched for ${req.query.q ?? ''}</p></body></html>`),
    );
  });
}

/** The OpenAPI document of throwingApiServer: one operation with a body and a query parameter. */
export const THROWING_API_DOCUMENT = {
  openapi: '3.1.0',
  info: { title: 'weak', version: '0' },
  paths: {
    '/v1/things': {
      post: {
        parameters: [{ in: 'query', name: 'tag', schema: { type: 'string' } }],
        requestBody: {
          content: {
            'application/json': {
              schema: { type: 'object', properties: { name: { type: 'string' }, size: { type: 'integer' } } },
            },
          },
        },
        security: [],
      },
    },
  },
};

/** An API whose handler trusts its input: a long or non-string name throws, and the answer is a 500. */
export function throwingApiServer(port: number): Promise<WeakServer> {
  return fastifyOverTls(port, (app) => {
    app.get('/v1/openapi.json', async () => THROWING_API_DOCUMENT);
    app.post<{ Body: { name?: unknown } }>('/v1/things', async (req) => {
      const name = (req.body as { name?: unknown } | null)?.name;
      // The flaw: no validation, and a value the code did not expect throws.
      if (typeof name !== 'string' || name.length > 1000) throw new Error('unexpected name');
      return { ok: true };
    });
  });
}
