/**
 * The transport baseline for `npm run bench`: a server that sends every byte straight back, on a
 * Unix socket or with the same mutual TLS 1.3 setup as keyd, in its own process like keyd. It does
 * no framing, parsing or work, so a keyd round trip divided by an echo round trip is what keyd's
 * protocol, checks, crypto and ops log cost on top of the channel.
 *
 * argv[2] is JSON: {kind: 'unix', path} or {kind: 'tls', host, certFile, keyFile, caFile}. Prints
 * its bound address as one JSON line; exits on SIGTERM or when its stdin ends.
 */
import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { EchoChildConfig } from './children.ts';

const config = JSON.parse(process.argv[2] ?? '{}') as EchoChildConfig;

function echo(socket: Socket): void {
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
}

const server: Server =
  config.kind === 'unix'
    ? createNetServer(echo)
    : createTlsServer(
        {
          cert: readFileSync(config.certFile),
          key: readFileSync(config.keyFile),
          ca: readFileSync(config.caFile),
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: 'TLSv1.3',
        },
        echo,
      );

await new Promise<void>((listening, failed) => {
  server.once('error', failed);
  if (config.kind === 'unix') server.listen(config.path, listening);
  else server.listen(0, config.host, listening);
});
const bound = server.address();
const address =
  config.kind === 'unix'
    ? { kind: 'unix', path: config.path }
    : { kind: 'tls', host: config.host, port: typeof bound === 'object' && bound !== null ? bound.port : 0 };
process.stdout.write(`${JSON.stringify(address)}\n`);

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
