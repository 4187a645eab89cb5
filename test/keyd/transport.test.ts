/**
 * The keyd transport: framing, the Unix socket and mTLS listeners, and what travels between a
 * client and a KeyService. The service here is the in-memory fake (test/helpers); the real
 * service's behaviour is tested end to end elsewhere.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, lstatSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { createKeydClient, type KeydClient } from '../../src/keyd/client.ts';
import { KeydError } from '../../src/keyd/errors.ts';
import type { DataKey } from '../../src/keyd/operations.ts';
import {
  decodeRequest,
  decodeResponse,
  encodeFrame,
  FrameDecoder,
  fromWire,
  MAX_FRAME_BYTES,
  parsePayload,
  type ResponseFrame,
  toWire,
} from '../../src/keyd/protocol.ts';
import {
  createKeydServer,
  isLoopback,
  type KeydListen,
  type KeydLogger,
  type KeydServer,
} from '../../src/keyd/server.ts';
import {
  type CertificateAndKey,
  createDevCa,
  fingerprint256,
  issueCertificate,
} from '../../src/tls/dev-ca.ts';
import { createFakeKeyService, type FakeKeyService } from '../helpers/fake-key-service.ts';

// ---------------------------------------------------------------------------------------------
// helpers

const created: string[] = [];
after(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/** A fresh 0700 folder (mkdtemp's mode), removed when the file's tests end. */
function privateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-keyd-'));
  created.push(dir);
  return dir;
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function frameOf(length: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(length, 0);
  return Buffer.concat([header, body]);
}

function payloadFrame(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  return frameOf(body.length, body);
}

/** A bare protocol speaker for what the real client never sends. */
async function rawConnection(path: string) {
  const socket = netConnect(path);
  await once(socket, 'connect');
  const decoder = new FrameDecoder();
  const queue: ResponseFrame[] = [];
  const waiting: ((frame: ResponseFrame) => void)[] = [];
  socket.on('data', (chunk: Buffer) => {
    for (const payload of decoder.push(chunk)) {
      const frame = decodeResponse(parsePayload(payload));
      const waiter = waiting.shift();
      if (waiter) waiter(frame);
      else queue.push(frame);
    }
  });
  const closed = once(socket, 'close');
  const next = (): Promise<ResponseFrame> => {
    const frame = queue.shift();
    return frame ? Promise.resolve(frame) : new Promise((r) => waiting.push(r));
  };
  const greeting = await next();
  return {
    socket,
    greeting,
    next,
    closed,
    send: (bytes: Buffer) => socket.write(bytes),
    request: (id: number, op: string, args: object) => socket.write(encodeFrame({ v: 1, id, op, args })),
  };
}

function memoryLogger(): KeydLogger & { lines: string[] } {
  const lines: string[] = [];
  const log = (level: string) => (fields: Record<string, unknown>, message: string) => {
    lines.push(JSON.stringify({ level, message, ...fields }));
  };
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

async function startUnix(service: FakeKeyService, options: { logger?: KeydLogger } = {}) {
  const dir = privateDir();
  const path = join(dir, 'keyd.sock');
  const server = createKeydServer({ service, listen: { kind: 'unix', path }, ...options });
  await server.listen();
  return { dir, path, server };
}

function assertKeydError(code: string, message?: RegExp | string) {
  return (error: unknown) => {
    assert.ok(error instanceof KeydError, `expected KeydError, got ${String(error)}`);
    assert.equal(error.code, code);
    if (typeof message === 'string') assert.equal(error.message, message);
    else if (message) assert.match(error.message, message);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------

describe('framing', () => {
  test('reassembles a frame delivered one byte at a time', () => {
    const frame = encodeFrame({ v: 1, id: 1, op: 'status', args: {} });
    const decoder = new FrameDecoder();
    const payloads: Buffer[] = [];
    for (const byte of frame) payloads.push(...decoder.push(Buffer.from([byte])));
    assert.equal(payloads.length, 1);
    assert.deepEqual(parsePayload(payloads[0] as Buffer), { v: 1, id: 1, op: 'status', args: {} });
    assert.equal(decoder.buffered, 0);
  });

  test('returns every frame when one chunk holds several, keeping a trailing partial frame', () => {
    const frames = [1, 2, 3].map((id) => encodeFrame({ v: 1, id, op: 'health', args: {} }));
    const third = frames[2] as Buffer;
    const decoder = new FrameDecoder();
    const first = decoder.push(
      Buffer.concat([frames[0] as Buffer, frames[1] as Buffer, third.subarray(0, 5)]),
    );
    assert.deepEqual(
      first.map((p) => (parsePayload(p) as { id: number }).id),
      [1, 2],
    );
    assert.equal(decoder.buffered, 5);
    const rest = decoder.push(third.subarray(5));
    assert.deepEqual(
      rest.map((p) => (parsePayload(p) as { id: number }).id),
      [3],
    );
  });

  test('accepts a payload of exactly 1 MiB', () => {
    const overhead = JSON.stringify({ v: 1, id: 1, ok: true, result: '' }).length;
    const frame = encodeFrame({ v: 1, id: 1, ok: true, result: 'x'.repeat(MAX_FRAME_BYTES - overhead) });
    assert.equal(frame.length, 4 + MAX_FRAME_BYTES);
    assert.equal(new FrameDecoder().push(frame).length, 1);
  });

  test('refuses a length prefix over 1 MiB, and every chunk after it', () => {
    const decoder = new FrameDecoder();
    assert.throws(
      () => decoder.push(frameOf(MAX_FRAME_BYTES + 1)),
      assertKeydError('TRESOR_ERR_REQUEST_INVALID', /1 MiB/),
    );
    assert.throws(() => decoder.push(encodeFrame({ v: 1 })), assertKeydError('TRESOR_ERR_REQUEST_INVALID'));
  });

  test('refuses to encode a message over 1 MiB', () => {
    assert.throws(
      () => encodeFrame({ v: 1, id: 1, op: 'sign', args: { message: Buffer.alloc(MAX_FRAME_BYTES) } }),
      assertKeydError('TRESOR_ERR_REQUEST_INVALID', /1 MiB/),
    );
  });

  test('round-trips Buffers at any depth as {"$b64": …}', () => {
    const message = {
      a: Buffer.from([0, 1, 255]),
      list: [{ b: Buffer.alloc(0) }, 'text', 3],
      nested: { c: null },
    };
    const wire = JSON.parse(JSON.stringify(toWire(message)));
    assert.deepEqual(wire.a, { $b64: 'AAH/' });
    const back = fromWire(wire) as typeof message;
    assert.ok(Buffer.isBuffer(back.a));
    assert.deepEqual(back, message);
    const decoded = new FrameDecoder().push(encodeFrame({ v: 1, id: 9, ok: true, result: message }));
    assert.deepEqual(decodeResponse(parsePayload(decoded[0] as Buffer)), {
      v: 1,
      id: 9,
      ok: true,
      result: message,
    });
  });

  test('refuses malformed $b64 values', () => {
    for (const bad of [{ $b64: 'not base64!' }, { $b64: 'AAH/', extra: 1 }, { $b64: 42 }, { $b64: 'AAH' }]) {
      assert.throws(
        () => fromWire({ wrapped: bad }),
        assertKeydError('TRESOR_ERR_REQUEST_INVALID'),
        JSON.stringify(bad),
      );
    }
  });

  test('a "__proto__" key in a payload cannot reach an object prototype', () => {
    const value = fromWire(JSON.parse('{"__proto__": {"polluted": true}}')) as Record<string, unknown>;
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(value), Object.prototype);
  });
});

describe('request decoding', () => {
  const wrapped = { $b64: Buffer.alloc(8).toString('base64') };

  test('accepts a well-formed request and turns $b64 into Buffers', () => {
    const decoded = decodeRequest({
      v: 1,
      id: 5,
      op: 'unwrapDataKey',
      args: { tenant: 't1', purpose: 'data', keyId: 'dk_1', wrapped },
    });
    assert.equal(decoded.ok, true);
    assert.ok(decoded.ok && Buffer.isBuffer(decoded.args.wrapped));
  });

  const refusals: [string, unknown, number | null][] = [
    ['not an object', [1, 2], null],
    ['missing id', { v: 1, op: 'status', args: {} }, null],
    ['a fractional id', { v: 1, id: 1.5, op: 'status', args: {} }, null],
    ['another protocol version', { v: 2, id: 3, op: 'status', args: {} }, 3],
    ['an unknown operation', { v: 1, id: 4, op: 'exportRootKey', args: {} }, 4],
    ['args that are not an object', { v: 1, id: 5, op: 'status', args: 'all' }, 5],
    ['args that are an array', { v: 1, id: 6, op: 'status', args: [] }, 6],
    [
      'a string where a number belongs',
      { v: 1, id: 7, op: 'retireRootKeyVersion', args: { version: '1' } },
      7,
    ],
    ['a number where a string belongs', { v: 1, id: 8, op: 'createTenantKey', args: { tenant: 1 } }, 8],
    ['a missing argument', { v: 1, id: 9, op: 'createTenantKey', args: {} }, 9],
    ['an unknown argument', { v: 1, id: 10, op: 'status', args: { verbose: true } }, 10],
    [
      'a purpose outside the contract',
      { v: 1, id: 11, op: 'generateDataKey', args: { tenant: 't', purpose: 'signing' } },
      11,
    ],
    [
      'a string where binary belongs',
      { v: 1, id: 12, op: 'sign', args: { purpose: 'audit-checkpoint', message: 'x' } },
      12,
    ],
    [
      'a malformed $b64',
      { v: 1, id: 13, op: 'sign', args: { purpose: 'audit-checkpoint', message: { $b64: '%' } } },
      13,
    ],
    ['an unknown envelope field', { v: 1, id: 14, op: 'status', args: {}, caller: 'admin' }, 14],
    ['a negative count', { v: 1, id: 15, op: 'opsLog', args: { limit: -1 } }, 15],
  ];
  for (const [what, message, id] of refusals) {
    test(`refuses ${what} with TRESOR_ERR_REQUEST_INVALID, answering id ${id}`, () => {
      const decoded = decodeRequest(message);
      assert.equal(decoded.ok, false);
      assert.ok(!decoded.ok);
      assert.equal(decoded.id, id);
      assert.equal(decoded.error.code, 'TRESOR_ERR_REQUEST_INVALID');
    });
  }

  test('accepts optional arguments when they are absent', () => {
    assert.equal(decodeRequest({ v: 1, id: 1, op: 'opsLog', args: {} }).ok, true);
    assert.equal(
      decodeRequest({ v: 1, id: 2, op: 'destroyTenantKey', args: { tenant: 't', mode: 'now' } }).ok,
      true,
    );
  });
});

describe('Unix socket listener', () => {
  test('creates the socket with mode 0600 inside a private folder', async () => {
    const dir = privateDir();
    const path = join(dir, 'run', 'keyd.sock');
    const server = createKeydServer({ service: createFakeKeyService(), listen: { kind: 'unix', path } });
    assert.deepEqual(await server.listen(), { kind: 'unix', path });
    try {
      assert.ok(lstatSync(path).isSocket());
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, 'run')).mode & 0o777, 0o700);
    } finally {
      await server.close();
    }
  });

  test('refuses a socket folder that other users can enter', async () => {
    const dir = privateDir();
    chmodSync(dir, 0o755);
    const server = createKeydServer({
      service: createFakeKeyService(),
      listen: { kind: 'unix', path: join(dir, 'k.sock') },
    });
    await assert.rejects(server.listen(), assertKeydError('TRESOR_ERR_CONFIG_INVALID', /must be private/));
  });

  test('replaces a stale socket file left by a crashed keyd', async () => {
    const dir = privateDir();
    const path = join(dir, 'keyd.sock');
    // A listener killed with SIGKILL leaves its socket file behind, with nobody accepting on it.
    const crashed = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`,
    ]);
    await once(crashed.stdout, 'data');
    crashed.kill('SIGKILL');
    await once(crashed, 'exit');
    assert.ok(lstatSync(path).isSocket());
    const probe = netConnect(path);
    assert.equal(((await once(probe, 'error')) as [NodeJS.ErrnoException])[0].code, 'ECONNREFUSED');
    const server = createKeydServer({ service: createFakeKeyService(), listen: { kind: 'unix', path } });
    await server.listen();
    const client = createKeydClient({ connect: { kind: 'unix', path }, clientName: 'test', retries: 0 });
    try {
      assert.equal((await client.call('status', {})).sealed, false);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('refuses to take over a socket another process is listening on', async () => {
    const first = await startUnix(createFakeKeyService());
    try {
      const second = createKeydServer({
        service: createFakeKeyService(),
        listen: { kind: 'unix', path: first.path },
      });
      await assert.rejects(second.listen(), assertKeydError('TRESOR_ERR_CONFIG_INVALID', /already listens/));
      assert.ok(lstatSync(first.path).isSocket());
    } finally {
      await first.server.close();
    }
  });

  test('refuses to replace a file that is not a socket', async () => {
    const dir = privateDir();
    const path = join(dir, 'keyd.sock');
    writeFileSync(path, 'precious');
    const server = createKeydServer({ service: createFakeKeyService(), listen: { kind: 'unix', path } });
    await assert.rejects(server.listen(), assertKeydError('TRESOR_ERR_CONFIG_INVALID', /not a socket/));
    assert.ok(lstatSync(path).isFile());
  });

  test('round-trips data keys through the socket as Buffers, naming the caller from hello', async () => {
    const service = createFakeKeyService();
    const { path, server } = await startUnix(service);
    const client = createKeydClient({ connect: { kind: 'unix', path }, clientName: 'api-1' });
    try {
      const generated: DataKey = await client.call('generateDataKey', { tenant: 't1', purpose: 'data' });
      assert.ok(Buffer.isBuffer(generated.key) && generated.key.length === 32);
      assert.ok(Buffer.isBuffer(generated.wrapped));
      const unwrapped = await client.call('unwrapDataKey', {
        tenant: 't1',
        purpose: 'data',
        keyId: generated.keyId,
        wrapped: generated.wrapped,
      });
      assert.deepEqual(unwrapped.key, generated.key);
      assert.deepEqual(
        service.calls.map((c) => c.caller),
        [
          { id: 'unix:api-1', role: 'admin' },
          { id: 'unix:api-1', role: 'admin' },
        ],
      );
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('calls a client that never says hello unix:anonymous', async () => {
    const service = createFakeKeyService();
    const { path, server } = await startUnix(service);
    const raw = await rawConnection(path);
    try {
      assert.deepEqual(raw.greeting, { v: 1, id: null, ok: true, result: { server: 'keyd', v: 1 } });
      raw.request(1, 'status', {});
      assert.equal((await raw.next()).ok, true);
      assert.equal(service.calls[0]?.caller?.id, 'unix:anonymous');
    } finally {
      raw.socket.destroy();
      await server.close();
    }
  });

  test('accepts hello only as the first request, with a log-safe name', async () => {
    const { path, server } = await startUnix(createFakeKeyService());
    const raw = await rawConnection(path);
    const bad = await rawConnection(path);
    try {
      raw.request(1, 'hello', { client: 'cli' });
      assert.deepEqual(await raw.next(), { v: 1, id: 1, ok: true, result: { caller: 'unix:cli' } });
      raw.request(2, 'hello', { client: 'other' });
      const second = await raw.next();
      assert.ok(!second.ok && second.error.code === 'TRESOR_ERR_REQUEST_INVALID' && second.id === 2);
      bad.request(1, 'hello', { client: 'evil\nop=seal' });
      const refused = await bad.next();
      assert.ok(!refused.ok && refused.error.code === 'TRESOR_ERR_REQUEST_INVALID');
    } finally {
      raw.socket.destroy();
      bad.socket.destroy();
      await server.close();
    }
  });

  test('answers garbage with TRESOR_ERR_REQUEST_INVALID and keeps the connection usable', async () => {
    const service = createFakeKeyService();
    const { path, server } = await startUnix(service);
    const raw = await rawConnection(path);
    try {
      raw.send(payloadFrame('this is not json'));
      const notJson = await raw.next();
      assert.ok(!notJson.ok && notJson.id === null && notJson.error.code === 'TRESOR_ERR_REQUEST_INVALID');
      raw.request(7, 'exportRootKey', {});
      const unknownOp = await raw.next();
      assert.ok(!unknownOp.ok && unknownOp.id === 7 && unknownOp.error.code === 'TRESOR_ERR_REQUEST_INVALID');
      raw.request(8, 'createTenantKey', { tenant: 42 });
      const wrongType = await raw.next();
      assert.ok(!wrongType.ok && wrongType.id === 8 && /tenant/.test(wrongType.error.message));
      raw.request(9, 'status', {});
      assert.deepEqual(await raw.next(), {
        v: 1,
        id: 9,
        ok: true,
        result: { provider: 'dev-file', initialised: true, sealed: false },
      });
      assert.deepEqual(
        service.calls.map((c) => c.op),
        ['status'],
        'nothing malformed reached the service',
      );
    } finally {
      raw.socket.destroy();
      await server.close();
    }
  });

  test('closes the connection after an oversize frame, saying why in one error frame', async () => {
    const service = createFakeKeyService();
    const { path, server } = await startUnix(service);
    const raw = await rawConnection(path);
    try {
      raw.send(frameOf(MAX_FRAME_BYTES + 1, Buffer.alloc(64)));
      const refusal = await raw.next();
      assert.ok(!refusal.ok && refusal.id === null && refusal.error.code === 'TRESOR_ERR_REQUEST_INVALID');
      assert.match(refusal.error.message, /1 MiB/);
      await raw.closed;
      assert.equal(service.calls.length, 0);
    } finally {
      await server.close();
    }
  });

  test('answers pipelined requests by id, in completion order', async () => {
    const service = createFakeKeyService();
    const slow = deferred();
    service.before = (op) => (op === 'status' ? slow.promise : undefined);
    const { path, server } = await startUnix(service);
    const raw = await rawConnection(path);
    try {
      raw.request(1, 'status', {});
      raw.request(2, 'health', {});
      const first = await raw.next();
      assert.equal(first.id, 2);
      slow.resolve();
      const second = await raw.next();
      assert.equal(second.id, 1);
    } finally {
      raw.socket.destroy();
      await server.close();
    }
  });

  test('keeps many requests from one client in flight at once', async () => {
    const service = createFakeKeyService();
    const all = deferred();
    let waiting = 0;
    service.before = () => {
      waiting += 1;
      if (waiting === 40) all.resolve();
      return all.promise; // no call finishes until all 40 have reached the service
    };
    const { path, server } = await startUnix(service);
    const client = createKeydClient({ connect: { kind: 'unix', path }, clientName: 'api', poolSize: 2 });
    try {
      const results = await Promise.all(
        Array.from({ length: 40 }, () => client.call('generateDataKey', { tenant: 't', purpose: 'data' })),
      );
      assert.equal(new Set(results.map((r) => r.keyId)).size, 40);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test("passes keyd's refusals through with their code and message (a sealed keyd)", async () => {
    const { path, server } = await startUnix(createFakeKeyService({ sealed: true }));
    const client = createKeydClient({ connect: { kind: 'unix', path }, clientName: 'api' });
    try {
      await assert.rejects(
        client.call('generateDataKey', { tenant: 't', purpose: 'data' }),
        assertKeydError('TRESOR_ERR_KEYD_SEALED', 'keyd is sealed'),
      );
      assert.equal((await client.call('status', {})).sealed, true);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('turns unexpected service errors into TRESOR_ERR_INTERNAL without details', async () => {
    const service = createFakeKeyService();
    service.before = () => {
      throw new Error('ENOSPC writing /var/lib/keyd/secret-store.db');
    };
    const logger = memoryLogger();
    const { path, server } = await startUnix(service, { logger });
    const client = createKeydClient({ connect: { kind: 'unix', path }, clientName: 'api' });
    try {
      await assert.rejects(
        client.call('status', {}),
        assertKeydError('TRESOR_ERR_INTERNAL', 'internal keyd error'),
      );
      const errors = logger.lines.filter((l) => l.includes('"level":"error"'));
      assert.equal(errors.length, 1);
      assert.doesNotMatch(errors[0] as string, /secret-store/);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('logs through pino and never writes key bytes to the log', async () => {
    const service = createFakeKeyService();
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
    const { path, server } = await startUnix(service, { logger });
    const client = createKeydClient({ connect: { kind: 'unix', path }, clientName: 'api' });
    let key: DataKey;
    try {
      key = await client.call('generateDataKey', { tenant: 't', purpose: 'data' });
      await client.call('unwrapDataKey', {
        tenant: 't',
        purpose: 'data',
        keyId: key.keyId,
        wrapped: key.wrapped,
      });
    } finally {
      await client.close();
      await server.close();
    }
    const log = lines.join('');
    assert.match(log, /keyd listening on a Unix socket/);
    for (const encoding of ['base64', 'hex'] as const) {
      assert.ok(!log.includes(key.key.toString(encoding)), `key bytes (${encoding}) in the log`);
      assert.ok(!log.includes(key.wrapped.toString(encoding)), `wrapped key (${encoding}) in the log`);
    }
  });

  test('close lets in-flight requests finish, then removes the socket file', async () => {
    const service = createFakeKeyService();
    const release = deferred();
    const reached = deferred();
    service.before = () => {
      reached.resolve();
      return release.promise;
    };
    const { path, server } = await startUnix(service);
    const client = createKeydClient({ connect: { kind: 'unix', path }, clientName: 'api', retries: 0 });
    const inFlight = client.call('health', {});
    await reached.promise;
    const closing = server.close();
    release.resolve();
    assert.equal((await inFlight).status, 'ok');
    await closing;
    assert.throws(() => lstatSync(path), { code: 'ENOENT' });
    await client.close();
  });
});

describe('mutual TLS listener', () => {
  let ca: CertificateAndKey;
  let serverCert: CertificateAndKey;
  let allowed: CertificateAndKey;
  let unlisted: CertificateAndKey;
  let foreign: CertificateAndKey;
  let service: FakeKeyService;
  let server: KeydServer;
  let port: number;
  const logger = memoryLogger();

  before(async () => {
    ca = await createDevCa({ commonName: 'keyd test CA' });
    const otherCa = await createDevCa({ commonName: 'another CA' });
    serverCert = await issueCertificate(ca, {
      commonName: 'keyd',
      sans: { dns: ['localhost'], ip: ['127.0.0.1'] },
      usage: 'server',
      days: 1,
    });
    allowed = await issueCertificate(ca, { commonName: 'api-1', usage: 'client', days: 1 });
    unlisted = await issueCertificate(ca, { commonName: 'api-2', usage: 'client', days: 1 });
    foreign = await issueCertificate(otherCa, { commonName: 'api-1', usage: 'client', days: 1 });
    service = createFakeKeyService();
    server = createKeydServer({
      service,
      logger,
      listen: {
        kind: 'tls',
        host: '127.0.0.1',
        port: 0,
        cert: serverCert.certPem,
        key: serverCert.keyPem,
        ca: ca.certPem,
        // Plain lower-case hex here; Node's colon form is accepted too (see the next test).
        allowlist: [
          {
            fingerprint256: fingerprint256(allowed.certPem).replaceAll(':', '').toLowerCase(),
            name: 'api-1',
            role: 'server',
          },
        ],
      },
    });
    const address = await server.listen();
    assert.equal(address.kind, 'tls');
    port = address.kind === 'tls' ? address.port : 0;
  });

  after(() => server.close());

  function clientWith(identity: CertificateAndKey, extra: { servername?: string } = {}): KeydClient {
    return createKeydClient({
      connect: {
        kind: 'tls',
        host: '127.0.0.1',
        port,
        cert: identity.certPem,
        key: identity.keyPem,
        ca: ca.certPem,
        ...extra,
      },
      clientName: 'api',
      retries: 2,
      sleep: async () => {},
    });
  }

  test('serves a client whose certificate is on the allowlist, with the role the allowlist gives it', async () => {
    const client = clientWith(allowed);
    try {
      service.calls.length = 0;
      const key = await client.call('generateDataKey', { tenant: 't', purpose: 'data' });
      assert.equal(key.key.length, 32);
      const expectedId = `mtls:api-1#${fingerprint256(allowed.certPem).replaceAll(':', '').toLowerCase().slice(0, 16)}`;
      assert.deepEqual(service.calls[0]?.caller, { id: expectedId, role: 'server' });
      // The service, not the transport, enforces roles: its refusal travels back unchanged.
      await assert.rejects(client.call('opsLog', {}), assertKeydError('TRESOR_ERR_FORBIDDEN'));
    } finally {
      await client.close();
    }
  });

  test('refuses a certificate from the same CA that is not on the allowlist with TRESOR_ERR_FORBIDDEN', async () => {
    const client = clientWith(unlisted);
    const before = service.calls.length;
    try {
      await assert.rejects(
        client.call('status', {}),
        assertKeydError('TRESOR_ERR_FORBIDDEN', 'client certificate is not on the allowlist'),
      );
      assert.equal(service.calls.length, before);
      assert.ok(logger.lines.some((l) => l.includes('not on the allowlist')));
    } finally {
      await client.close();
    }
  });

  test('refuses a certificate from another CA, and the client says which certificate to check', async () => {
    // Node rejects a chain that does not verify by hanging up after the handshake, without an
    // alert; a keyd restart looks the same, so the client retries before it gives up.
    const client = clientWith(foreign);
    const before = service.calls.length;
    try {
      await assert.rejects(
        client.call('status', {}),
        assertKeydError('TRESOR_ERR_KEYD_UNAVAILABLE', /certificate issued by the CA keyd trusts/),
      );
      assert.equal(service.calls.length, before);
    } finally {
      await client.close();
    }
  });

  test('refuses a client without a certificate during the handshake', async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, minVersion: 'TLSv1.3' });
    const data: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => data.push(chunk));
    const [error] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    assert.equal(error.code, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    assert.equal(data.length, 0, 'no greeting before the certificate is checked');
    const client = createKeydClient({
      connect: { kind: 'tls', host: '127.0.0.1', port, cert: '', key: '', ca: ca.certPem },
      clientName: 'api',
      retries: 0,
    });
    await assert.rejects(
      client.call('status', {}),
      assertKeydError('TRESOR_ERR_FORBIDDEN', /certificate required/),
    );
    await client.close();
  });

  test("reports keyd's certificate as untrusted when it does not chain to the client's CA", async () => {
    const otherCa = await createDevCa({ commonName: 'unrelated CA' });
    const client = createKeydClient({
      connect: {
        kind: 'tls',
        host: '127.0.0.1',
        port,
        cert: allowed.certPem,
        key: allowed.keyPem,
        ca: otherCa.certPem,
      },
      clientName: 'api',
      retries: 3,
      sleep: () => assert.fail('an untrusted keyd certificate is not retried'),
    });
    await assert.rejects(
      client.call('status', {}),
      assertKeydError('TRESOR_ERR_KEYD_UNAVAILABLE', /not trusted/),
    );
    await client.close();
  });

  test('speaks TLS 1.3 only', async () => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca: ca.certPem,
      cert: allowed.certPem,
      key: allowed.keyPem,
      maxVersion: 'TLSv1.2',
    });
    const [error] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    assert.match(error.code ?? '', /ERR_SSL_.*(PROTOCOL_VERSION|VERSION)/);
  });
});

describe('listen configuration', () => {
  const cert = 'cert';
  const key = 'key';
  const ca = 'ca';
  const allowlist = [{ fingerprint256: 'AB:'.repeat(31).concat('AB'), name: 'api', role: 'server' as const }];
  const service = createFakeKeyService();

  const refused: [string, unknown][] = [
    ['plain TCP on 0.0.0.0', { kind: 'tcp', host: '0.0.0.0', port: 7000 }],
    ['plain TCP on loopback', { kind: 'tcp', host: '127.0.0.1', port: 7000 }],
    ['TLS on 10.0.0.1 without a CA or allowlist', { kind: 'tls', host: '10.0.0.1', port: 7000, cert, key }],
    [
      'TLS on 0.0.0.0 with an empty allowlist',
      { kind: 'tls', host: '0.0.0.0', port: 7000, cert, key, ca, allowlist: [] },
    ],
    ['TLS on 10.0.0.1 without a CA', { kind: 'tls', host: '10.0.0.1', port: 7000, cert, key, allowlist }],
    ['TLS on loopback without an allowlist', { kind: 'tls', host: '127.0.0.1', port: 7000, cert, key, ca }],
    [
      'an allowlist entry that is not a SHA-256 fingerprint',
      {
        kind: 'tls',
        host: '127.0.0.1',
        port: 7000,
        cert,
        key,
        ca,
        allowlist: [{ fingerprint256: 'AB:CD', name: 'x', role: 'server' }],
      },
    ],
    [
      'an allowlist role that does not exist',
      {
        kind: 'tls',
        host: '127.0.0.1',
        port: 7000,
        cert,
        key,
        ca,
        allowlist: [{ ...allowlist[0], role: 'root' }],
      },
    ],
    ['a port out of range', { kind: 'tls', host: '127.0.0.1', port: 70000, cert, key, ca, allowlist }],
    ['a unix listener without a path', { kind: 'unix', path: '' }],
  ];
  for (const [what, listen] of refused) {
    test(`refuses ${what} when the server is created`, () => {
      assert.throws(
        () => createKeydServer({ service, listen: listen as KeydListen }),
        assertKeydError('TRESOR_ERR_CONFIG_INVALID'),
      );
    });
  }

  test('names the missing mTLS in the refusal of a non-loopback address', () => {
    assert.throws(
      () =>
        createKeydServer({
          service,
          listen: { kind: 'tls', host: '0.0.0.0', port: 7000, cert, key } as KeydListen,
        }),
      assertKeydError('TRESOR_ERR_CONFIG_INVALID', /refusing to listen on 0\.0\.0\.0 without mutual TLS/),
    );
  });

  test('accepts a complete mTLS config on any address (nothing is bound until listen)', () => {
    const server = createKeydServer({
      service,
      listen: { kind: 'tls', host: '0.0.0.0', port: 7000, cert, key, ca, allowlist },
    });
    assert.equal(server.address(), undefined);
  });

  test('knows the loopback addresses', () => {
    for (const host of ['127.0.0.1', '127.8.9.10', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) {
      assert.equal(isLoopback(host), true, host);
    }
    for (const host of ['0.0.0.0', '10.0.0.1', '::', '128.0.0.1', 'example.com', '::ffff:10.0.0.1']) {
      assert.equal(isLoopback(host), false, host);
    }
  });
});
