/**
 * TEST-ONLY. A TCP proxy on loopback in front of a real server (s3rver), to make a destination slow,
 * stalled or held without touching the server or the code under test:
 *
 *   pass   bytes go through as they come
 *   slow   every piece of data, either way, is forwarded `delayMs` later (order kept): slow but done
 *   stall  nothing is forwarded either way and nothing answers: a server that stopped answering
 *   hold   data from the client is kept until release(), then forwarded: the test decides when the
 *          request goes on (an event, not a time)
 *
 * Changing the mode closes the connections open so far (a keep-alive socket must not carry a request
 * into the old mode). `seen` is every piece of client data that reached the proxy, as text, so a
 * test can wait for "a PUT of a chunk has begun" and assert that no PUT of a manifest ever came.
 */
import { createServer, type Server, Socket } from 'node:net';

export type ProxyMode = 'pass' | 'slow' | 'stall' | 'hold';

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: what the destination's endpoint is set to. */
  readonly endpoint: string;
  mode: ProxyMode;
  setMode(mode: ProxyMode): void;
  /** Client data seen so far (request lines and headers among it). */
  seen(): string;
  /** Called whenever client data arrives (for waits on an event). */
  onData(listener: () => void): () => void;
  /** Forwards what `hold` kept, and passes from now on. */
  release(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(upstreamPort: number, delayMs = 100): Promise<FaultProxy> {
  const sockets = new Set<Socket>();
  const held: (() => void)[] = [];
  const listeners = new Set<() => void>();
  let seen = '';
  let mode: ProxyMode = 'pass';

  const forward = (to: Socket, data: Buffer, from: 'client' | 'server') => {
    if (mode === 'stall') return;
    if (mode === 'hold' && from === 'client') {
      held.push(() => to.write(data));
      return;
    }
    if (mode !== 'slow') {
      to.write(data);
      return;
    }
    setTimeout(() => {
      if (!to.destroyed) to.write(data);
    }, delayMs);
  };

  const server: Server = createServer((client) => {
    sockets.add(client);
    const upstream = new Socket();
    sockets.add(upstream);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    client.on('data', (data: Buffer) => {
      seen += data.toString('latin1');
      for (const l of listeners) l();
      forward(upstream, data, 'client');
    });
    upstream.on('data', (data: Buffer) => forward(client, data, 'server'));
    upstream.connect(upstreamPort, '127.0.0.1');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');

  const proxy: FaultProxy = {
    endpoint: `http://127.0.0.1:${address.port}`,
    get mode() {
      return mode;
    },
    set mode(m: ProxyMode) {
      proxy.setMode(m);
    },
    setMode(m) {
      if (m === mode) return;
      mode = m;
      held.length = 0;
      for (const s of [...sockets]) s.destroy();
      sockets.clear();
    },
    seen: () => seen,
    onData(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    release() {
      mode = 'pass';
      for (const send of held.splice(0)) send();
    },
    async close() {
      for (const s of [...sockets]) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
