/**
 * The optional plain-HTTP listener. It serves nothing: every request gets `301 Moved Permanently`
 * to the same path on HTTPS, with no body, and the connection is closed. No HSTS here — RFC 6797
 * §7.2: an HSTS header over plain HTTP must be ignored, so it would only mislead; HTTPS answers carry it.
 *
 * The target host is the configured public URL or, without one, the request's Host header — only
 * when it is a plain host name or IP literal; anything else is 400. The path is kept only when it is
 * an origin-form path of visible ASCII; otherwise the redirect goes to `/`. So nothing a client sends
 * reaches the Location header unchecked (header injection, absolute-form request targets).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ServerTimeouts } from '../config/server-config.ts';

const HOST = /^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::\d{1,5})?$/;
const PATH = /^\/[\x21-\x7e]{0,2047}$/;

export function redirectLocation(
  req: Pick<IncomingMessage, 'url' | 'headers'>,
  httpsPort: number,
  publicUrl?: string,
): string | undefined {
  const path = typeof req.url === 'string' && PATH.test(req.url) ? req.url : '/';
  if (publicUrl) return `${publicUrl}${path}`;
  const host = HOST.exec(req.headers.host ?? '')?.[1];
  if (!host) return undefined;
  return `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${path}`;
}

export function createRedirectServer(options: {
  httpsPort: () => number;
  publicUrl?: string;
  timeouts: ServerTimeouts;
}): Server {
  const server = createServer(
    {
      headersTimeout: options.timeouts.headersMs,
      requestTimeout: options.timeouts.headersMs,
      keepAliveTimeout: 1000,
      connectionsCheckingInterval: 1000,
      maxHeaderSize: 8 * 1024,
    },
    (req: IncomingMessage, res: ServerResponse) => {
      const location = redirectLocation(req, options.httpsPort(), options.publicUrl);
      const headers: Record<string, string> = { 'content-length': '0', connection: 'close' };
      if (location) headers.location = location;
      res.writeHead(location ? 301 : 400, headers);
      res.end();
    },
  );
  server.setTimeout(options.timeouts.idleMs);
  return server;
}
