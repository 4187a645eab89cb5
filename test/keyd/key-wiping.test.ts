/**
 * Plaintext keys in keyd live in memory of their own (never a slice of Node's shared pool) and are
 * zeroed when they leave use: evicted from a cache, forgotten, sealed away, or handed to a caller
 * once the answer is written (the rule in src/crypto/index.ts). Each test keeps a reference to the
 * Buffer a component handed out, lets the component let go of it, and checks every byte is zero.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ownsItsMemory, readEnvelopeHeader } from '../../src/crypto/index.ts';
import { createKeydClient } from '../../src/keyd/client.ts';
import { KeydError } from '../../src/keyd/errors.ts';
import { OpRecorder } from '../../src/keyd/op-record.ts';
import type { KeyService } from '../../src/keyd/operations.ts';
import { fromWire } from '../../src/keyd/protocol.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import type { RootKeyring } from '../../src/keyd/root/types.ts';
import { rootVersionOf, TENANT_KEY_AAD, tenantKeyAad } from '../../src/keyd/root-wrapping.ts';
import { createKeydServer } from '../../src/keyd/server.ts';
import type { KeyStore, TenantKeyRecord } from '../../src/keyd/store.ts';
import { TenantKeyCache } from '../../src/keyd/tenant-key-cache.ts';

const isZero = (buf: Uint8Array) => buf.every((byte) => byte === 0);

function tenantKeyRow(keyring: RootKeyring, tenant: string, key: Buffer): TenantKeyRecord {
  const keyId = `tk.${tenant.slice(-8)}.v1`;
  const wrapped = keyring.wrap(key, TENANT_KEY_AAD, tenantKeyAad({ tenant, version: 1, keyId }));
  return {
    tenant,
    version: 1,
    keyId,
    state: 'active',
    rootVersion: rootVersionOf(wrapped),
    wrapped,
    createdAt: '2026-01-01T00:00:00.000Z',
    rotateAfter: null,
    encryptions: 0,
    reserved: 0,
  };
}

describe('keyd key buffers', () => {
  let dir: string;
  let provider: DevFileProvider;
  let keyring: RootKeyring;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-key-wiping-'));
    initDevFile(dir);
    provider = new DevFileProvider(dir);
    await provider.unseal('');
    const ring = provider.keyring();
    assert.ok(ring);
    keyring = ring;
  });

  after(() => {
    provider.seal();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the root keyring unwraps into memory of its own', () => {
    const key = Buffer.alloc(32, 0x5a);
    const wrapped = keyring.wrap(key, 'test-key', { n: 1 });
    assert.equal(readEnvelopeHeader(wrapped).keyId, 'root.v1');
    const opened = keyring.unwrap(wrapped, 'test-key', { n: 1 });
    assert.ok(ownsItsMemory(opened), 'byteOffset 0 and an ArrayBuffer of exactly 32 bytes');
    assert.deepEqual(opened, key);
  });

  test('the tenant-key cache lends keys of their own and zeroes them on forget and on clear', () => {
    const cache = new TenantKeyCache(() => keyring);
    const a = tenantKeyRow(keyring, 'ten_aaaaaaaa', Buffer.alloc(32, 1));
    const b = tenantKeyRow(keyring, 'ten_bbbbbbbb', Buffer.alloc(32, 2));
    let lentA: Buffer | undefined;
    let lentB: Buffer | undefined;
    cache.with(a, (key) => {
      lentA = key;
    });
    cache.with(b, (key) => {
      lentB = key;
    });
    assert.ok(lentA && lentB);
    assert.ok(ownsItsMemory(lentA) && ownsItsMemory(lentB), 'not slices of the shared pool');
    assert.deepEqual(lentA, Buffer.alloc(32, 1));
    cache.forget(a.keyId);
    assert.ok(isZero(lentA), 'forget zeroes the key');
    assert.deepEqual(lentB, Buffer.alloc(32, 2), 'and only that key');
    cache.clear();
    assert.ok(isZero(lentB), 'clear (seal, close) zeroes every key');
  });

  test('a key replaced in the tenant-key cache is zeroed', () => {
    const cache = new TenantKeyCache(() => keyring);
    const first = Buffer.alloc(32, 3);
    cache.add('tk.replaced.v1', first);
    cache.add('tk.replaced.v1', Buffer.alloc(32, 4));
    assert.ok(isZero(first));
    cache.clear();
  });

  test('a wire value decodes into memory of its own', () => {
    const key = Buffer.alloc(32, 0xc3);
    const decoded = fromWire({ result: { key: { $b64: key.toString('base64') } } }) as {
      result: { key: Buffer };
    };
    assert.ok(ownsItsMemory(decoded.result.key), 'not a slice of the shared pool');
    assert.deepEqual(decoded.result.key, key);
  });

  test('an operation that fails after making a key zeroes it', async () => {
    const store = { appendOps: async () => ({}) as Awaited<ReturnType<KeyStore['appendOps']>> };
    const recorder = new OpRecorder(store, () => new Date());
    const rec = recorder.record('generateDataKey', 'unix:test');
    const key = Buffer.alloc(32, 7);
    await assert.rejects(
      recorder.execute(rec, async () => {
        rec.secrets.push(key);
        throw new KeydError('TRESOR_ERR_INTERNAL', 'failed after the key was made');
      }),
      (err: unknown) => err instanceof KeydError,
    );
    assert.ok(isZero(key), 'the handler error path wipes the key');
  });

  test('a data key answered over the socket is zeroed in keyd once written, and arrives whole', async () => {
    const handedOut: Buffer[] = [];
    const service: KeyService = {
      call: (async (op: string) => {
        if (op !== 'unwrapDataKey') throw new KeydError('TRESOR_ERR_REQUEST_INVALID', 'not in this test');
        const key = Buffer.alloc(32, 0x42);
        handedOut.push(key);
        return { key };
      }) as KeyService['call'],
    };
    const path = join(dir, 'keyd.sock');
    const server = createKeydServer({ service, listen: { kind: 'unix', path } });
    await server.listen();
    const client = createKeydClient({
      connect: { kind: 'unix', path },
      clientName: 'wiping-test',
      retries: 0,
    });
    try {
      const { key } = await client.call('unwrapDataKey', {
        tenant: 'ten_a',
        purpose: 'data',
        keyId: 'dk_1',
        wrapped: Buffer.alloc(60),
      });
      assert.deepEqual(key, Buffer.alloc(32, 0x42), 'the caller gets the key');
      assert.ok(ownsItsMemory(key), 'in memory of its own, for the caller to wipe');
      assert.equal(handedOut.length, 1);
      assert.ok(isZero(handedOut[0] as Buffer), "keyd's copy is zeroed once the answer is written");
    } finally {
      await client.close();
      await server.close();
    }
  });
});
