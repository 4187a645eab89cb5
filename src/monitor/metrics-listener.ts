/**
 * The metrics listener (config `metrics.port`, off unless set): plain HTTP on `metrics.host`
 * (127.0.0.1 by default) that answers `GET /metrics` and nothing else — no token, no TLS, no audit
 * entry, and outside the request pipeline, so it keeps answering while the audit log cannot record
 * or keyd is down, which is when an operator most needs the metrics. The exporter convention of a
 * Prometheus on the same host. Whoever can reach the port reads the metrics; they hold no customer
 * data or secret (label-values.ts), but they are the deployment's vital signs, so keep it on
 * loopback or a monitoring network.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Scrape } from './metrics.ts';

/** A scrape that takes longer is cut off (Prometheus's own default scrape timeout is 10 s). */
const REQUEST_TIMEOUT_MS = 10_000;

export interface MetricsListener {
  /** `http://host:port` as bound (port 0 picks one). */
  url: string;
  close(): Promise<void>;
}

export async function startMetricsListener(options: {
  host: string;
  port: number;
  scrape: () => Promise<Scrape>;
}): Promise<MetricsListener> {
  const server: Server = createServer({ requestTimeout: REQUEST_TIMEOUT_MS }, (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res
        .writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
        .end('only /metrics is served here\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end();
      return;
    }
    options.scrape().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics unavailable\n');
      },
    );
  });
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
