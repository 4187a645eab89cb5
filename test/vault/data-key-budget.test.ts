/**
 * A data key's encryption budget (NIST SP 800-38D §8.3) holds across processes: several keyrings,
 * each with its own handle on one tenant store file (SQLite WAL, separate connections: what several
 * nodes over one store look like), encrypt concurrently. Blocks are claimed with one conditional
 * update each, so the encryptions of all of them together never exceed the hard limit, and the store
 * records exactly the sum of the blocks they claimed. A key one keyring rotates out stops being used
 * by the others at their next claim: at most one block later.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createKeyCache, type KeyCache } from '../../src/keyd/key-cache.ts';
import type { KeyService } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { createTenantDataKeyStore } from '../../src/vault/data-key-store.ts';
import { createDataKeyring, type DataKeyLimits, type DataKeyring } from '../../src/vault/data-keys.ts';
import { type TenantDB, tenantStoreMigrations } from '../../src/vault/tenant-store-schema.ts';

const ADMIN = { id: 'test', role: 'admin' } as const;
const SERVER = { id: 'unix:tresor-server', role: 'server' } as const;
const KEYRINGS = 4;

/** One "node": its own store handle on the shared file, its own key cache, its own keyring. */
interface Node {
  store: Store<TenantDB>;
  cache: KeyCache;
  ring: DataKeyring;
}

describe('data-key budget across keyrings sharing one store', () => {
  let dir: string;
  let service: KeydService;
  let path: string;
  let nodes: Node[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'guarantees-budget-'));
    const keydDir = join(dir, 'keyd');
    mkdirSync(keydDir, { mode: 0o700 });
    initDevFile(keydDir);
    service = createKeyService({
      dir: keydDir,
      provider: new DevFileProvider(keydDir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    await service.call('unseal', { secret: '' }, ADMIN);
    path = join(dir, 'acme.sqlite');
  });

  after(async () => {
    await closeNodes();
    await service.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startNodes(tenant: string, limits: (i: number) => Partial<DataKeyLimits>): Promise<Node[]> {
    await service.call('createTenantKey', { tenant }, ADMIN);
    const keys = { call: ((op, args) => service.call(op, args, SERVER)) as KeyService['call'] };
    const started: Node[] = [];
    for (let i = 0; i < KEYRINGS; i++) {
      const store = await openSqliteStore<TenantDB>(path, tenantStoreMigrations);
      const cache = createKeyCache({
        maxEntries: 100,
        ttlMs: 60_000,
        maxUses: 1_000_000,
        sweepIntervalMs: 0,
      });
      const ring = createDataKeyring({
        keys,
        store: createTenantDataKeyStore(async () => store),
        cache,
        limits: limits(i),
      });
      started.push({ store, cache, ring });
    }
    nodes.push(...started);
    return started;
  }

  async function closeNodes(): Promise<void> {
    for (const n of nodes) {
      n.cache.close();
      await n.store.close();
    }
    nodes = [];
  }

  async function storedKey(keyId: string) {
    const [first] = nodes;
    assert.ok(first);
    return first.store.db
      .selectFrom('data_keys')
      .select(['reserved', 'state'])
      .where('key_id', '=', keyId)
      .executeTakeFirstOrThrow();
  }

  it(`never lets ${KEYRINGS} keyrings together exceed the hard limit, and the store records every claimed block`, async () => {
    const hardLimit = 2000;
    // No rotation, so the hard limit is what stops them: the case where keyd stays unreachable.
    const group = await startNodes('budget', () => ({
      rotateAt: 10 ** 9,
      refuseAt: hardLimit,
      reservationBlock: 37,
    }));
    const done = group.map(() => 0);
    const keyIds = new Set<string>();
    // Each keyring runs several concurrent writers until it is refused.
    await Promise.all(
      group.flatMap((node, i) =>
        Array.from({ length: 3 }, async () => {
          for (;;) {
            try {
              keyIds.add(await node.ring.withEncryptionKey('budget', 'data', 3, (_key, keyId) => keyId));
              done[i] = (done[i] ?? 0) + 3;
            } catch (err) {
              assert.equal((err as { code?: string }).code, 'TRESOR_ERR_KEY_EXHAUSTED');
              return;
            }
          }
        }),
      ),
    );
    assert.equal(keyIds.size, 1, 'one key throughout');
    const [keyId] = [...keyIds];
    assert.ok(keyId);
    const total = done.reduce((a, b) => a + b, 0);
    const row = await storedKey(keyId);
    const claimed = group.reduce((sum, n) => sum + (n.ring.usage('budget', 'data')?.claimed ?? 0), 0);
    assert.ok(total <= hardLimit, `${total} encryptions under a key whose hard limit is ${hardLimit}`);
    assert.equal(row.reserved, claimed, 'the store records the sum of the claimed blocks');
    assert.ok(row.reserved <= hardLimit, `the store recorded ${row.reserved}`);
    // Every keyring did its share, and the budget was nearly all used (one unused block rest per keyring at most).
    assert.ok(
      done.every((n) => n > 0),
      `encryptions per keyring: ${done.join(', ')}`,
    );
    assert.ok(total >= hardLimit - KEYRINGS * 37, `only ${total} of ${hardLimit} were used`);
    await closeNodes();
  });

  it('stops every keyring using a key one of them rotated out, at its next block claim', async () => {
    const block = 16;
    // Keyring 0 rotates after 200 encryptions; the others would never rotate on their own.
    const group = await startNodes('rotation', (i) => ({
      rotateAt: i === 0 ? 200 : 10 ** 9,
      reservationBlock: block,
    }));
    const enc = (node: Node) => node.ring.withEncryptionKey('rotation', 'data', 1, (_key, keyId) => keyId);
    const [rotator, ...others] = group;
    assert.ok(rotator);
    const first = await enc(rotator);
    for (const node of others) assert.equal(await enc(node), first, 'everyone starts on the first key');
    let second = first;
    while (second === first) second = await enc(rotator);
    assert.equal((await storedKey(first)).state, 'decrypt-only');
    for (const [i, node] of others.entries()) {
      let underOld = 0;
      let keyId = first;
      while (keyId === first) {
        keyId = await enc(node);
        if (keyId === first) underOld++;
      }
      assert.equal(keyId, second, `keyring ${i + 1} moved to the key that is active now`);
      assert.ok(
        underOld < block,
        `keyring ${i + 1} used the rotated-out key ${underOld} more times (block ${block})`,
      );
    }
    await closeNodes();
  });

  it('lets only one of several keyrings racing to rotate the same key win; the others adopt its key', async () => {
    const group = await startNodes('race', () => ({ rotateAt: 50, reservationBlock: 10 }));
    const enc = (node: Node) => node.ring.withEncryptionKey('race', 'data', 1, (_key, keyId) => keyId);
    const [head] = group;
    assert.ok(head);
    const first = await enc(head);
    // Everyone drives the key past its rotation point at once.
    const ids = await Promise.all(
      group.map(async (node) => {
        const seen = new Set<string>();
        for (let i = 0; i < 60; i++) seen.add(await enc(node));
        return seen;
      }),
    );
    const rows = await head.store.db
      .selectFrom('data_keys')
      .select(['key_id', 'state', 'reserved'])
      .where('tenant', '=', 'race')
      .execute();
    const active = rows.filter((r) => r.state === 'active');
    assert.equal(active.length, 1, 'one active key');
    assert.ok(rows.length >= 2 && active[0]?.key_id !== first, 'the first key was rotated');
    // A rotation that replaced a key another keyring had just made active would leave a key
    // rotated out long before its rotation point.
    for (const r of rows.filter((row) => row.state === 'decrypt-only')) {
      assert.ok(r.reserved >= 50, `key ${r.key_id} was rotated out after ${r.reserved} claimed encryptions`);
    }
    assert.ok(
      ids.every((seen) => seen.size >= 2),
      'every keyring moved on from the first key',
    );
    await closeNodes();
  });
});
