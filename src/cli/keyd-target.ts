/** How a server's keyd client connects, from its configuration (tresor server, tresor doctor). */
import type { ServerConfig } from '../config/server-config.ts';
import type { KeydConnectTarget } from '../keyd/client.ts';
import { keydTargets } from '../server/keyd-targets.ts';

/** Every keyd instance the server's config names (keyd.sockets / keyd.addresses), the preferred first. */
export function keydTarget(config: ServerConfig): KeydConnectTarget[] {
  return keydTargets(config);
}
