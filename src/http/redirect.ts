/**
 * The optional plain-HTTP listener. It serves nothing. Only the pages a person opens in a browser
 * (USER_PAGES: GET or HEAD of the console's sign-in page and its assets, the API reference, the
 * trust page, `/`) get `301 Moved Permanently` to the same path on HTTPS, with no body. Every other
 * request — the API (`/v1/…`), the machine endpoints (`/healthz`, `/readyz`, `/metrics`,
 * `/trust.json`), any other method or path — is refused with 403 TRESOR_ERR_HTTPS_REQUIRED and no
 * Location (ASVS 5.0 4.1.2: API endpoints do not redirect transparently, so a client that follows
 * redirects does not learn to send its request in clear first). A request body is never read: the
 * answer goes out at once and the connection is closed. No HSTS here — RFC 6797
 * §7.2: an HSTS header over plain HTTP must be ignored, so it would only mislead; HTTPS answers carry it.
 *
 * The target host is the configured public URL or, without one, the request's Host header — only
 * when it is a plain host name or IP literal; anything else is 400. The path is kept only when it is
 * an origin-form path of visible ASCII; otherwise the redirect goes to `/`. So nothing a client sends
 * reaches the Location header unchecked (header injection, absolute-form request targets).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ServerTimeouts } from '../config/server-config.ts';
import { TresorError } from '../errors.ts';
import { PROBLEM_CONTENT_TYPE, toProblem } from './problem.ts';

const HOST = /^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::\d{1,5})?$/;
const PATH = /^\/[\x21-\x7e]{0,2047}$/;

/** The browser pages (path without its query) that the plain listener redirects; nothing else. */
const USER_PAGES = /^\/(?:|docs|trust|signin|signin\/[A-Za-z0-9._-]{1,64})$/;

/** Whether a plain-HTTP request is for a page a person opens in a browser (so it may be redirected). */
export function isUserPage(req: Pick<IncomingMessage, 'method' | 'url'>): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const path = typeof req.url === 'string' ? (req.url.split('?')[0] ?? '') : '';
  return USER_PAGES.test(path);
}

const HTTPS_REQUIRED = JSON.stringify(
  toProblem(
    new TresorError(
      'TRESOR_ERR_HTTPS_REQUIRED',
      'this endpoint is served over HTTPS only; send the request to the https:// address (nothing sent here was read)',
    ),
  ),
);

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
      if (!isUserPage(req)) {
        // No data listener is ever attached: the body, if any, is not read, and the socket closes.
        res.writeHead(403, {
          'content-type': PROBLEM_CONTENT_TYPE,
          'content-length': String(Buffer.byteLength(HTTPS_REQUIRED)),
          'cache-control': 'no-store',
          connection: 'close',
        });
        res.end(req.method === 'HEAD' ? undefined : HTTPS_REQUIRED);
        return;
      }
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
