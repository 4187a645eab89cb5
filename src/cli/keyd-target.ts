/** How a server's keyd client connects, from its configuration (tresor server, tresor doctor). */
import { readFileSync } from 'node:fs';
import type { ServerConfig } from '../config/server-config.ts';
import type { KeydConnectTarget } from '../keyd/client.ts';

export function keydTarget(config: ServerConfig): KeydConnectTarget {
  const k = config.keyd;
  if (k.kind === 'unix') return { kind: 'unix', path: k.socketPath };
  return {
    kind: 'tls',
    host: k.host,
    port: k.port,
    cert: readFileSync(k.certFile),
    key: readFileSync(k.keyFile),
    ca: readFileSync(k.caFile),
    ...(k.servername ? { servername: k.servername } : {}),
  };
}
