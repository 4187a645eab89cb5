/**
 * c. The API server's key path under a realistic mixed load: createDataKeyring with the real keyd
 * client, the production data-key store (each tenant's SQLite tenant store) and createKeyCache, driven by
 *   - T tenants with Zipf-like popularity (tenant of rank r drawn with weight 1/r^s),
 *   - K data keys per tenant: one active, K−1 decrypt-only from earlier rotations, so the keys
 *     outnumber the cache's entries and the cache has to choose,
 *   - 80 % reads: a 1 KiB value sealed under a random one of the tenant's keys is decrypted
 *     (withDecryptionKey + openEnvelope); 20 % writes: withEncryptionKey + sealEnvelope of 1 KiB.
 * A warm-up phase fills the cache; the figures are measured after it, as deltas.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { openEnvelope, sealEnvelope, wipe } from '../src/crypto/index.ts';
import { createKeydClient, type KeydConnectTarget } from '../src/keyd/client.ts';
import { createKeyCache, type KeyCacheStats } from '../src/keyd/key-cache.ts';
import type { DataKeyPurpose, KeydOperationName, KeyService, OpArgs } from '../src/keyd/operations.ts';
import { openSqliteStore } from '../src/store/sqlite/store.ts';
import type { Store } from '../src/store/types.ts';
import { createTenantDataKeyStore } from '../src/vault/data-key-store.ts';
import { createDataKeyring, RESERVATION_BLOCK } from '../src/vault/data-keys.ts';
import { type TenantDB, tenantStoreMigrations } from '../src/vault/tenant-store-schema.ts';
import { FIELD_AAD, fieldContext, VALUE_BYTES } from './in-process.ts';
import { runAsync } from './measure.ts';
import { figure, type Section } from './report.ts';

export interface MixedLoadOptions {
  keyd: KeydConnectTarget;
  /** Folder for the tenant stores that hold the wrapped data keys (SQLite). */
  dataDir: string;
  seconds: number;
  tenants: number;
  keysPerTenant: number;
  /** Zipf exponent s. */
  zipf: number;
  readShare: number;
  concurrency: number;
  poolSize: number;
  cache: { ttlMs: number; maxUses: number; maxEntries: number };
  seed: number;
}

const PURPOSE: DataKeyPurpose = 'data';

interface StoredValue {
  keyId: string;
  envelope: Buffer;
  context: ReturnType<typeof fieldContext>;
}

/** mulberry32: a small seeded generator, so two runs draw the same sequence of operations. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Draws ranks 0…n−1 with probability ∝ 1/(rank+1)^s. */
function zipfSampler(n: number, s: number, random: () => number): () => number {
  const cdf: number[] = [];
  let total = 0;
  for (let rank = 1; rank <= n; rank++) {
    total += 1 / rank ** s;
    cdf.push(total);
  }
  return () => {
    const u = random() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** Counts the keyd calls that the keyring makes (the measure of how well the cache works). */
function countingKeyService(keys: KeyService, counts: Map<string, number>): KeyService {
  return {
    call<K extends KeydOperationName>(op: K, args: OpArgs<K>) {
      counts.set(op, (counts.get(op) ?? 0) + 1);
      return keys.call(op, args);
    },
  };
}

function total(counts: Map<string, number>): number {
  return [...counts.values()].reduce((a, b) => a + b, 0);
}

export async function benchMixedLoad(options: MixedLoadOptions): Promise<Section> {
  const client = createKeydClient({
    connect: options.keyd,
    clientName: 'tresor-bench-api',
    poolSize: options.poolSize,
    retries: 0,
  });
  const opened = new Map<string, Promise<Store<TenantDB>>>();
  const tenantStore = (tenant: string) => {
    let s = opened.get(tenant);
    if (!s) {
      s = openSqliteStore<TenantDB>(join(options.dataDir, `${tenant}.sqlite`), tenantStoreMigrations);
      opened.set(tenant, s);
    }
    return s;
  };
  const cache = createKeyCache(options.cache);
  try {
    const store = createTenantDataKeyStore(tenantStore);
    const tenants = Array.from({ length: options.tenants }, (_, i) => `mix-${String(i).padStart(3, '0')}`);
    const value = randomBytes(VALUE_BYTES);

    // Seed each tenant's key history and one sealed value per key (tenants in parallel, so the
    // stores' group commit batches what it can).
    const values: StoredValue[][] = await Promise.all(
      tenants.map(async (tenant, t) => {
        await client.call('createTenantKey', { tenant });
        const stored: StoredValue[] = [];
        for (let k = 0; k < options.keysPerTenant; k++) {
          const dk = await client.call('generateDataKey', { tenant, purpose: PURPOSE });
          await store.insertActive(
            {
              keyId: dk.keyId,
              tenant,
              purpose: PURPOSE,
              wrapped: dk.wrapped,
              state: 'active',
              createdAt: new Date().toISOString(),
              reserved: RESERVATION_BLOCK,
            },
            stored.at(-1)?.keyId,
          );
          const context = fieldContext(tenant, t * options.keysPerTenant + k);
          stored.push({
            keyId: dk.keyId,
            envelope: sealEnvelope(dk.key, dk.keyId, value, FIELD_AAD, context),
            context,
          });
          wipe(dk.key);
        }
        return stored;
      }),
    );

    const counts = new Map<string, number>();
    const keyring = createDataKeyring({ keys: countingKeyService(client, counts), store, cache });

    const random = seededRandom(options.seed);
    const nextTenant = zipfSampler(options.tenants, options.zipf, random);
    const operation = async (): Promise<void> => {
      const t = nextTenant();
      const tenant = tenants[t] as string;
      if (random() < options.readShare) {
        const held = values[t] as StoredValue[];
        const v = held[Math.floor(random() * held.length)] as StoredValue;
        const plain = await keyring.withDecryptionKey(tenant, PURPOSE, v.keyId, (key) =>
          openEnvelope(key, v.keyId, v.envelope, FIELD_AAD, v.context),
        );
        wipe(plain);
      } else {
        await keyring.withEncryptionKey(tenant, PURPOSE, 1, (key, keyId) =>
          sealEnvelope(key, keyId, value, FIELD_AAD, fieldContext(tenant, 0)),
        );
      }
    };

    const warmUpSeconds = options.seconds;
    const cold = await runAsync(operation, options.concurrency, warmUpSeconds);
    const coldStats = cache.stats();
    const coldCalls = total(counts);
    const before = { stats: coldStats, calls: new Map(counts) };

    const rate = await runAsync(operation, options.concurrency, options.seconds * 2);
    const stats = cache.stats();
    const delta = (name: keyof KeyCacheStats) => stats[name] - before.stats[name];
    const lookups = delta('hits') + delta('misses');
    const keydCalls = total(counts) - total(before.calls);
    const perThousand = (n: number) => (1000 * n) / rate.operations;
    const opDelta = (op: string) => (counts.get(op) ?? 0) - (before.calls.get(op) ?? 0);
    const keyCount = options.tenants * options.keysPerTenant;

    return {
      id: 'mixed-load',
      title: 'c. Mixed load: data keyring + key cache + real keyd (Unix socket)',
      groups: [
        {
          title:
            `${options.tenants} tenants (Zipf s=${options.zipf}), ${keyCount} data keys, ` +
            `${Math.round(options.readShare * 100)}% reads / ${Math.round((1 - options.readShare) * 100)}% writes, ` +
            `concurrency ${options.concurrency}`,
          figures: [figure('operations (1 KiB encrypt or decrypt each)', rate)],
        },
      ],
      facts: [
        { name: 'cache hit ratio', value: (100 * delta('hits')) / lookups, unit: '%' },
        { name: 'keyd calls per 1000 operations', value: perThousand(keydCalls), unit: '' },
        { name: '  of which unwrapDataKey', value: perThousand(opDelta('unwrapDataKey')), unit: '' },
        { name: '  of which generateDataKey', value: perThousand(opDelta('generateDataKey')), unit: '' },
        {
          name: 'cache evictions (maxEntries) per 1000 operations',
          value: perThousand(delta('evictions')),
          unit: '',
        },
        {
          name: 'cache expirations (TTL, maxUses) per 1000 operations',
          value: perThousand(delta('expirations')),
          unit: '',
        },
        { name: 'cold start (warm-up) operations/s', value: cold.opsPerSecond, unit: '/s' },
        {
          name: 'cold start (warm-up) cache hit ratio',
          value: (100 * coldStats.hits) / (coldStats.hits + coldStats.misses),
          unit: '%',
        },
        {
          name: 'cold start keyd calls per 1000 operations',
          value: (1000 * coldCalls) / cold.operations,
          unit: '',
        },
      ],
      notes: [
        `Cache: createKeyCache({ maxEntries: ${options.cache.maxEntries}, ttlMs: ${options.cache.ttlMs}, ` +
          `maxUses: ${options.cache.maxUses} }). Each tenant has ${options.keysPerTenant} data keys (1 active, ` +
          `${options.keysPerTenant - 1} decrypt-only); a read picks one of them uniformly. Warm-up ` +
          `${warmUpSeconds} s from an empty cache, then ${options.seconds * 2} s measured.`,
        'A write is withEncryptionKey (counted; it reserves encryptions durably in the tenant store ' +
          'once per 65,536) and goes through the same cache, so it counts as a lookup too.',
      ],
    };
  } finally {
    cache.close();
    for (const s of opened.values()) await (await s).close();
    await client.close();
  }
}
