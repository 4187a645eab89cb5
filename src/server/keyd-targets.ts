/** How the server's keyd client connects, from its configuration (tresor server, tresor doctor). */
import { readFileSync } from 'node:fs';
import type { ServerConfig } from '../config/server-config.ts';
import type { KeydConnectTarget } from '../keyd/client.ts';

/** Every keyd instance the config names, the preferred first (the client fails over in order). */
export function keydTargets(config: Pick<ServerConfig, 'keyd'>): KeydConnectTarget[] {
  const keyd = config.keyd;
  if (keyd.kind === 'unix') {
    return [keyd.socketPath, ...(keyd.moreSocketPaths ?? [])].map((path) => ({ kind: 'unix', path }));
  }
  const tls = {
    cert: readFileSync(keyd.certFile),
    key: readFileSync(keyd.keyFile),
    ca: readFileSync(keyd.caFile),
    ...(keyd.servername ? { servername: keyd.servername } : {}),
  };
  return [{ host: keyd.host, port: keyd.port }, ...(keyd.moreAddresses ?? [])].map(({ host, port }) => ({
    kind: 'tls',
    host,
    port,
    ...tls,
  }));
}
