/**
 * The keyd client's failure model: retries only where a repeat is harmless, backoff between
 * attempts, fail closed with TRESOR_ERR_KEYD_UNAVAILABLE, lazy reconnection. The sleep hook
 * stands in for the backoff timer, so tests act at the moment of a retry instead of waiting.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CryptoError } from '../../src/crypto/errors.ts';
import { backoffDelay, createKeydClient, type KeydClientOptions } from '../../src/keyd/client.ts';
import { KeydError } from '../../src/keyd/errors.ts';
import { MAX_FRAME_BYTES } from '../../src/keyd/protocol.ts';
import { createKeydServer } from '../../src/keyd/server.ts';
import { createFakeKeyService } from '../helpers/fake-key-service.ts';

const created: string[] = [];
after(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

function socketPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-keyd-client-'));
  created.push(dir);
  return join(dir, 'keyd.sock');
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function unixClient(path: string, options: Partial<KeydClientOptions> & { sleeps?: number[] } = {}) {
  const sleeps = options.sleeps ?? [];
  return createKeydClient({
    connect: { kind: 'unix', path },
    clientName: 'api-test',
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...options,
  });
}

function isKeydError(code: string, message?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof KeydError, `expected KeydError, got ${String(error)}`);
    assert.equal(error.code, code);
    if (message) assert.match(error.message, message);
    return true;
  };
}

describe('keyd client', () => {
  test('retries with backoff until a keyd that starts late is listening', async () => {
    const path = socketPath();
    const service = createFakeKeyService();
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    const sleeps: number[] = [];
    const client = unixClient(path, {
      retries: 5,
      backoff: { baseMs: 100, maxMs: 1000 },
      // The first attempt found nothing; keyd comes up while the client backs off.
      sleep: async (ms) => {
        sleeps.push(ms);
        if (sleeps.length === 1) await server.listen();
      },
    });
    try {
      assert.equal((await client.call('status', {})).sealed, false);
      assert.equal(sleeps.length, 1);
      assert.ok((sleeps[0] as number) >= 50 && (sleeps[0] as number) <= 100, `first backoff ${sleeps[0]} ms`);
      assert.equal(service.calls.length, 1);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('fails closed with TRESOR_ERR_KEYD_UNAVAILABLE when nothing listens, after its retries', async () => {
    const sleeps: number[] = [];
    const client = unixClient(socketPath(), { retries: 3, sleeps, backoff: { baseMs: 100, maxMs: 300 } });
    await assert.rejects(
      client.call('health', {}),
      isKeydError('TRESOR_ERR_KEYD_UNAVAILABLE', /^keyd cannot be reached$/),
    );
    assert.equal(sleeps.length, 3);
    const [first, second, third] = sleeps as [number, number, number];
    assert.ok(first >= 50 && first <= 100, `retry 1 waited ${first}`);
    assert.ok(second >= 100 && second <= 200, `retry 2 waited ${second}`);
    assert.ok(third >= 150 && third <= 300, `retry 3 waited ${third} (capped at maxMs)`);
    await client.close();
  });

  test('backs off exponentially with jitter, within [d/2, d] and never above the cap', () => {
    for (let retry = 0; retry < 12; retry++) {
      const ceiling = Math.min(2000, 50 * 2 ** retry);
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(retry, 50, 2000);
        assert.ok(delay >= ceiling / 2 && delay <= ceiling, `retry ${retry}: ${delay}`);
      }
    }
  });

  test('retries a state-changing operation when the connection was refused, since nothing was sent', async () => {
    const path = socketPath();
    const service = createFakeKeyService();
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    const client = unixClient(path, {
      retries: 2,
      sleep: () => server.listen().then(() => undefined),
    });
    try {
      const info = await client.call('rotateTenantKey', { tenant: 't1' });
      assert.equal(info.tenant, 't1');
      assert.deepEqual(
        service.calls.map((c) => c.op),
        ['rotateTenantKey'],
      );
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('gives up with TRESOR_ERR_KEYD_UNAVAILABLE when keyd does not answer in time, retrying a read', async () => {
    const path = socketPath();
    const service = createFakeKeyService();
    const hang = deferred();
    service.before = () => hang.promise;
    const server = createKeydServer({ service, listen: { kind: 'unix', path }, drainTimeoutMs: 10 });
    await server.listen();
    const sleeps: number[] = [];
    const client = unixClient(path, { timeoutMs: 100, retries: 1, sleeps });
    try {
      await assert.rejects(client.call('status', {}), isKeydError('TRESOR_ERR_KEYD_UNAVAILABLE'));
      assert.equal(service.calls.length, 2, 'the read was sent twice');
      assert.equal(sleeps.length, 1);
    } finally {
      hang.resolve();
      await client.close();
      await server.close();
    }
  });

  test('does not repeat a state-changing operation that may have reached keyd', async () => {
    const path = socketPath();
    const service = createFakeKeyService();
    const hang = deferred();
    service.before = () => hang.promise;
    const server = createKeydServer({ service, listen: { kind: 'unix', path }, drainTimeoutMs: 10 });
    await server.listen();
    const sleeps: number[] = [];
    const client = unixClient(path, { timeoutMs: 100, retries: 3, sleeps });
    try {
      await assert.rejects(
        client.call('createTenantKey', { tenant: 't1' }),
        isKeydError('TRESOR_ERR_KEYD_UNAVAILABLE'),
      );
      assert.equal(service.calls.length, 1);
      assert.equal(sleeps.length, 0);
    } finally {
      hang.resolve();
      await client.close();
      await server.close();
    }
  });

  test('fails over to the next keyd instance at once, and keeps preferring the one that answered', async () => {
    const dead = socketPath();
    const path = socketPath();
    const service = createFakeKeyService();
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    await server.listen();
    const sleeps: number[] = [];
    const client = unixClient(dead, {
      connect: [
        { kind: 'unix', path: dead },
        { kind: 'unix', path },
      ],
      retries: 1,
      sleeps,
    });
    try {
      // Nothing was sent to the dead instance: even a state-changing operation goes on to the next.
      await client.call('rotateTenantKey', { tenant: 't1' });
      await client.call('status', {});
      assert.equal(service.calls.length, 2);
      assert.equal(sleeps.length, 0, 'no backoff while another instance is left to try');
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('repeats on another instance only what is safe to repeat, once the first may have it', async () => {
    const hungPath = socketPath();
    const path = socketPath();
    const hung = createFakeKeyService();
    const hang = deferred();
    hung.before = () => hang.promise;
    const hungServer = createKeydServer({
      service: hung,
      listen: { kind: 'unix', path: hungPath },
      drainTimeoutMs: 10,
    });
    const service = createFakeKeyService();
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    await hungServer.listen();
    await server.listen();
    const connect = [
      { kind: 'unix', path: hungPath },
      { kind: 'unix', path },
    ] as const;
    const rotating = unixClient(hungPath, { connect: [...connect], timeoutMs: 100, retries: 2 });
    const generating = unixClient(hungPath, { connect: [...connect], timeoutMs: 100, retries: 2 });
    try {
      // Sent, then no answer: a create may have happened on the first, so it is not repeated.
      await assert.rejects(
        rotating.call('createTenantKey', { tenant: 't1' }),
        isKeydError('TRESOR_ERR_KEYD_UNAVAILABLE'),
      );
      assert.equal(service.calls.length, 0);
      // A data key may be generated twice (the unused one is harmless): it is, on the other instance.
      await generating.call('generateDataKey', { tenant: 't1', purpose: 'data' });
      assert.equal(service.calls.length, 1);
      // A rotation carries a request id keyd does only once: it is repeated, with the same id.
      // (A deadline of its own: the hung instance costs one, the other must answer within one.)
      const once = unixClient(hungPath, { connect: [...connect], timeoutMs: 1000, retries: 2 });
      await once.call('rotateTenantKey', { tenant: 't1' }).finally(() => once.close());
      const first = hung.calls.find((c) => c.op === 'rotateTenantKey')?.args as { requestId?: string };
      const repeat = service.calls.find((c) => c.op === 'rotateTenantKey')?.args as { requestId?: string };
      assert.match(first.requestId ?? '', /^[A-Za-z0-9_-]{22}$/);
      assert.equal(repeat.requestId, first.requestId, 'the repeat names the same request');
    } finally {
      hang.resolve();
      await rotating.close();
      await generating.close();
      await hungServer.close();
      await server.close();
    }
  });

  test("does not retry keyd's own error answers", async () => {
    const path = socketPath();
    const service = createFakeKeyService({ sealed: true });
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    await server.listen();
    const sleeps: number[] = [];
    const client = unixClient(path, { retries: 3, sleeps });
    try {
      await assert.rejects(
        client.call('unwrapDataKey', {
          tenant: 't',
          purpose: 'data',
          keyId: 'dk_1',
          wrapped: Buffer.alloc(60),
        }),
        isKeydError('TRESOR_ERR_KEYD_SEALED'),
      );
      assert.equal(service.calls.length, 1);
      assert.equal(sleeps.length, 0);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test("passes on keyd's and crypto's codes, and answers a code it does not know as TRESOR_ERR_INTERNAL", async () => {
    const path = socketPath();
    const service = createFakeKeyService();
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    await server.listen();
    const client = unixClient(path, { retries: 0 });
    try {
      service.before = () => {
        throw new CryptoError('TRESOR_ERR_DECRYPT_FAILED', 'ciphertext does not authenticate');
      };
      await assert.rejects(
        client.call('status', {}),
        isKeydError('TRESOR_ERR_DECRYPT_FAILED', /^ciphertext does not authenticate$/),
      );
      service.before = () => {
        // A newer keyd's code: the wire carries whatever string keyd sends.
        throw Object.assign(new KeydError('TRESOR_ERR_INTERNAL', 'from the future'), {
          code: 'TRESOR_ERR_FROM_THE_FUTURE',
        });
      };
      await assert.rejects(
        client.call('status', {}),
        isKeydError('TRESOR_ERR_INTERNAL', /unknown|does not know/),
      );
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('reconnects after keyd restarts', async () => {
    const path = socketPath();
    const first = createKeydServer({ service: createFakeKeyService(), listen: { kind: 'unix', path } });
    await first.listen();
    const client = unixClient(path, { retries: 2 });
    try {
      assert.equal((await client.call('health', {})).status, 'ok');
      await first.close();
      const restarted = createFakeKeyService();
      const second = createKeydServer({ service: restarted, listen: { kind: 'unix', path } });
      await second.listen();
      try {
        assert.equal((await client.call('health', {})).status, 'ok');
        assert.equal(restarted.calls.length, 1);
      } finally {
        await second.close();
      }
    } finally {
      await client.close();
    }
  });

  test('refuses to send a request over 1 MiB, without retrying', async () => {
    const path = socketPath();
    const service = createFakeKeyService();
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    await server.listen();
    const sleeps: number[] = [];
    const client = unixClient(path, { sleeps });
    try {
      await assert.rejects(
        client.call('sign', { purpose: 'audit-checkpoint', message: Buffer.alloc(MAX_FRAME_BYTES) }),
        isKeydError('TRESOR_ERR_REQUEST_INVALID', /1 MiB/),
      );
      assert.equal(service.calls.length, 0);
      assert.equal(sleeps.length, 0);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('lets in-flight calls finish on close, then refuses new ones', async () => {
    const path = socketPath();
    const service = createFakeKeyService();
    const release = deferred();
    const reached = deferred();
    service.before = () => {
      reached.resolve();
      return release.promise;
    };
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    await server.listen();
    const client = unixClient(path);
    try {
      const inFlight = client.call('status', {});
      await reached.promise;
      const closing = client.close();
      await assert.rejects(client.call('status', {}), isKeydError('TRESOR_ERR_KEYD_UNAVAILABLE', /closed/));
      release.resolve();
      assert.equal((await inFlight).sealed, false);
      await closing;
    } finally {
      await server.close();
    }
  });

  test('refuses options it cannot honour', () => {
    const base: KeydClientOptions = {
      connect: { kind: 'unix', path: '/nonexistent/keyd.sock' },
      clientName: 'api',
    };
    const bad: [string, KeydClientOptions][] = [
      ['a client name with spaces', { ...base, clientName: 'my api' }],
      ['an empty pool', { ...base, poolSize: 0 }],
      ['a negative retry count', { ...base, retries: -1 }],
      ['a zero timeout', { ...base, timeoutMs: 0 }],
      [
        'plain TCP',
        {
          ...base,
          connect: { kind: 'tcp', host: '10.0.0.1', port: 1 } as unknown as KeydClientOptions['connect'],
        },
      ],
    ];
    for (const [what, options] of bad) {
      assert.throws(() => createKeydClient(options), isKeydError('TRESOR_ERR_CONFIG_INVALID'), what);
    }
  });
});
