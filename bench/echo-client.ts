/**
 * The client side of the transport baseline: fixed-size frames written to an echo server over a
 * few pooled connections, pipelined the way the keyd client pipelines requests. The echo keeps
 * byte order, so on each connection the n-th frame's worth of bytes back answers the n-th request.
 */
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { KeydConnectTarget } from '../src/keyd/client.ts';

export interface EchoClient {
  /** One round trip of one frame. */
  request(): Promise<void>;
  close(): void;
}

class EchoConnection {
  readonly #socket: Socket;
  readonly #frame: Buffer;
  readonly #waiting: { resolve(): void; reject(error: Error): void }[] = [];
  #received = 0;
  #failure: Error | undefined;

  constructor(socket: Socket, frame: Buffer) {
    this.#socket = socket;
    this.#frame = frame;
    socket.on('data', (chunk: Buffer) => {
      this.#received += chunk.length;
      while (this.#received >= frame.length) {
        this.#received -= frame.length;
        this.#waiting.shift()?.resolve();
      }
    });
    const fail = (error: Error) => {
      this.#failure ??= error;
      for (const waiter of this.#waiting.splice(0)) waiter.reject(error);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('echo server closed the connection')));
  }

  request(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#socket.write(this.#frame);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

async function open(target: KeydConnectTarget): Promise<Socket> {
  if (target.kind === 'unix') {
    const socket = netConnect(target.path);
    await once(socket, 'connect');
    return socket;
  }
  const socket = tlsConnect({
    host: target.host,
    port: target.port,
    cert: target.cert,
    key: target.key,
    ca: target.ca,
    minVersion: 'TLSv1.3',
  });
  await once(socket, 'secureConnect');
  return socket;
}

/** Opens `connections` connections to the echo server; requests go round-robin across them. */
export async function connectEcho(
  target: KeydConnectTarget,
  connections: number,
  frameBytes: number,
): Promise<EchoClient> {
  const frame = Buffer.alloc(frameBytes, 0x61);
  frame.writeUInt32BE(frameBytes - 4, 0); // shaped like a keyd frame, though the echo never reads it
  const pool: EchoConnection[] = [];
  try {
    for (let i = 0; i < connections; i++) pool.push(new EchoConnection(await open(target), frame));
  } catch (error) {
    for (const connection of pool) connection.close();
    throw error;
  }
  let turn = 0;
  return {
    request() {
      const connection = pool[turn] as EchoConnection;
      turn = (turn + 1) % pool.length;
      return connection.request();
    },
    close() {
      for (const connection of pool) connection.close();
    },
  };
}
