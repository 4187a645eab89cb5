/**
 * Raw TLS and TCP clients for the probes node's HTTP client will not send: header bytes one at a
 * time (slowloris), a body trickled, CR/LF inside a header value. Every wait is bounded.
 */
import { connect as netConnect } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';

export interface RawOutcome {
  /** The server closed the connection (or reset it) before the client gave up. */
  closedByServer: boolean;
  /** What the server sent back, as text. */
  received: string;
  elapsedMs: number;
}

/**
 * Opens a TLS connection to `port`, writes `chunks` one every `everyMs` (then keeps writing `filler`
 * the same way), and waits at most `limitMs` for the server to close the connection.
 */
export function trickle(options: {
  port: number;
  ca: Buffer;
  chunks: string[];
  filler?: string;
  everyMs: number;
  limitMs: number;
}): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const started = Date.now();
    let received = '';
    let done = false;
    let i = 0;
    const socket: TLSSocket = tlsConnect({
      host: '127.0.0.1',
      port: options.port,
      ca: options.ca,
      servername: 'localhost',
    });
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(limit);
      socket.destroy();
      resolve({ closedByServer, received, elapsedMs: Date.now() - started });
    };
    const timer = setInterval(() => {
      if (!socket.writable) return;
      const next = i < options.chunks.length ? options.chunks[i] : options.filler;
      i += 1;
      if (next !== undefined) socket.write(next);
    }, options.everyMs);
    const limit = setTimeout(() => finish(false), options.limitMs);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      received += d;
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
  });
}

/** One request written as raw bytes over TLS; resolves with what came back before the close or the limit. */
export function rawRequest(port: number, ca: Buffer, bytes: string, limitMs = 10_000): Promise<string> {
  return trickle({ port, ca, chunks: [bytes], everyMs: 1, limitMs }).then((o) => o.received);
}

/** A raw plain-HTTP request (the redirect listener). */
export function plainRequest(port: number, bytes: string, limitMs = 10_000): Promise<string> {
  return new Promise((resolve) => {
    let received = '';
    const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write(bytes));
    const finish = () => {
      clearTimeout(limit);
      socket.destroy();
      resolve(received);
    };
    const limit = setTimeout(finish, limitMs);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      received += d;
    });
    socket.on('close', finish);
    socket.on('error', finish);
  });
}
