/**
 * The HTTPS server: the application (app.ts) behind TLS (tls.ts), with limits that keep slow or
 * greedy clients from exhausting it, certificate reload without dropping connections, the optional
 * plain-HTTP redirect listener, and graceful shutdown.
 *
 * Slow clients (slowloris and its TLS variant) are cut off by: the TLS handshake timeout; the
 * header timeout (all headers within `headersMs`, also for a connection that sends nothing after
 * its handshake); the request timeout (whole request within `requestMs`); the idle-socket timeout;
 * a short keep-alive; header size (16 KiB) and count (100) limits; and a connection check every
 * second, so these deadlines hold to the second instead of Node's default 30-second sweep. Held
 * connections are capped in all and per client address (connection-limits.ts).
 *
 * reloadCertificates() (the CLI calls it on SIGHUP) reads the certificate files again and swaps the
 * server's secure context: new connections get the new certificate, open ones keep theirs — nothing
 * is dropped. A file that does not load leaves the old certificate in place and throws.
 *
 * close() stops accepting connections, lets in-flight requests finish, closes idle keep-alive
 * connections, and resolves when all are done; connections still busy after `shutdownGraceMs` are
 * closed so shutdown cannot hang on one stuck client.
 */
import type { Server } from 'node:http';
import type { Server as HttpsServer, ServerOptions } from 'node:https';
import { type AddressInfo, isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { ServerConfig } from '../config/server-config.ts';
import { buildApp, type HttpDeps } from './app.ts';
import { limitConnections } from './connection-limits.ts';
import { createRedirectServer } from './redirect.ts';
import { certificateFiles, secureContextOptions } from './tls.ts';

export interface HttpServerDeps extends Omit<HttpDeps, 'config'> {
  config: ServerConfig;
}

export interface HttpServer {
  app: FastifyInstance;
  /** Starts listening; the URLs carry the bound ports (port 0 picks one). */
  listen(): Promise<{ url: string; redirectUrl?: string }>;
  close(): Promise<void>;
  reloadCertificates(): void;
}

const MAX_HEADER_BYTES = 16 * 1024;
const MAX_HEADERS = 100;

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * The origins this server serves its console from, which a cookie-authenticated change must come
 * from (layers/authentication.ts): the public URL, the console's configured origins, and where it
 * listens — with `localhost` beside a listening address, as the console's WebAuthn default has it.
 * A server listening on a wildcard address (0.0.0.0, ::) names its origin with `publicUrl`.
 */
export function ownOrigins(config: ServerConfig, port: number): string[] {
  const at = (host: string) => new URL(`https://${urlHost(host)}:${port}`).origin;
  const origins = new Set<string>(config.console.origins);
  if (config.publicUrl !== undefined) origins.add(config.publicUrl);
  origins.add(at(config.host));
  if (isIP(config.host) !== 0) origins.add(at('localhost'));
  return [...origins];
}

export async function createHttpServer(deps: HttpServerDeps): Promise<HttpServer> {
  const { config } = deps;
  const files = await certificateFiles(config.tls, config.dataDir);
  const https: ServerOptions = {
    ...secureContextOptions(files),
    handshakeTimeout: config.timeouts.handshakeMs,
    headersTimeout: config.timeouts.headersMs,
    requestTimeout: config.timeouts.requestMs,
    keepAliveTimeout: config.timeouts.keepAliveMs,
    connectionsCheckingInterval: 1000,
    maxHeaderSize: MAX_HEADER_BYTES,
  };
  // Known once listening (port 0 picks one); until then, the configured port.
  let origins = ownOrigins(config, config.port);
  let boundPort = config.port;
  const app = await buildApp({ ...deps, ownOrigins: () => origins }, https);
  const server = app.server as unknown as HttpsServer;
  server.maxHeadersCount = MAX_HEADERS;
  limitConnections(server, { ...config.connections, trusted: config.trustProxy });

  let redirect: Server | undefined;

  return {
    app,

    async listen() {
      await app.listen({ host: config.host, port: config.port });
      boundPort = (server.address() as AddressInfo).port;
      origins = ownOrigins(config, boundPort);
      const url = `https://${urlHost(config.host)}:${boundPort}`;
      if (config.redirectPort === undefined) return { url };
      redirect = createRedirectServer({
        httpsPort: () => boundPort,
        publicUrl: config.publicUrl,
        timeouts: config.timeouts,
      });
      const listening = redirect;
      await new Promise<void>((resolve, reject) => {
        listening.once('error', reject);
        listening.listen(config.redirectPort, config.host, () => {
          listening.off('error', reject);
          resolve();
        });
      });
      const redirectPort = (redirect.address() as AddressInfo).port;
      return { url, redirectUrl: `http://${urlHost(config.host)}:${redirectPort}` };
    },

    async close() {
      const grace = setTimeout(() => {
        server.closeAllConnections();
        redirect?.closeAllConnections();
      }, config.timeouts.shutdownGraceMs);
      grace.unref();
      try {
        const closingRedirect = redirect?.listening
          ? new Promise<void>((resolve) => {
              redirect?.close(() => resolve());
              redirect?.closeIdleConnections();
            })
          : Promise.resolve();
        await Promise.all([app.close(), closingRedirect]);
      } finally {
        clearTimeout(grace);
      }
    },

    reloadCertificates() {
      server.setSecureContext(secureContextOptions(files));
      app.log.info('TLS certificates reloaded');
    },
  };
}
