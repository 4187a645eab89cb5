/**
 * Connection-level limits of the HTTPS server, below HTTP: what a client that opens connections
 * and then sends nothing (or too little) can hold.
 *
 * - Caps: at most `max` open connections in all (Node's `server.maxConnections`: past it a new
 *   connection is closed as it is accepted) and at most `perAddress` from one client address.
 *   Addresses in `trustProxy` are not capped per address: a load balancer carries many clients,
 *   and the caps must not turn into a denial of service against everyone behind it.
 * - A TLS handshake that fails or runs past `handshakeTimeout` ('tlsClientError'): the connection
 *   is destroyed. Node's https server hands that error on to 'clientError', whose handler would
 *   otherwise try to write an HTTP answer into a TLS session that never began — a write that
 *   stays pending, so the connection stayed open for as long as the client liked.
 *
 * A connection that finished its handshake but sends no complete request headers is closed by
 * Node's `headersTimeout`, which it checks every `connectionsCheckingInterval` (server.ts sets 1 s)
 * for connections with no request yet too; the answer to that (app.ts) ends and destroys the socket.
 */
import type { Server as HttpsServer } from 'node:https';
import { BlockList, isIP, type Socket } from 'node:net';

export interface ConnectionLimits {
  max: number;
  /** 0: no per-address cap. */
  perAddress: number;
  /** Addresses or CIDR blocks exempt from the per-address cap (the config's `trustProxy`). */
  trusted: readonly string[];
}

/** IPv4-mapped IPv6 (`::ffff:a.b.c.d`, a dual-stack listener's view of IPv4) as plain IPv4. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function trustedList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', bits] = entry.split('/');
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

/** Installs the caps and the handshake-failure close on the server, before it listens. */
export function limitConnections(server: HttpsServer, limits: ConnectionLimits): void {
  server.maxConnections = limits.max;

  // A failed or timed-out handshake: nothing can be answered, so the connection simply goes.
  server.prependListener('tlsClientError', (_err: Error, socket: Socket) => {
    socket.destroy();
  });

  if (limits.perAddress === 0) return;
  const trusted = trustedList(limits.trusted);
  const open = new Map<string, number>();
  // Runs before the TLS layer wraps the socket: a refused connection costs no handshake.
  server.prependListener('connection', (socket: Socket) => {
    const address = plainAddress(socket.remoteAddress ?? '');
    if (address === '' || trusted.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')) return;
    const count = (open.get(address) ?? 0) + 1;
    if (count > limits.perAddress) {
      socket.destroy();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
  });
}
