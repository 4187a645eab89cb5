/**
 * A vault over real pieces: the in-process key service (dev root key file), the real key cache and
 * data keyring, and real SQLite tenant stores in a temporary folder. The keyring is wrapped only to
 * count decryption-key loans, so tests can prove that a search decrypts nothing but its matches.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AuditEvent, auditEventsMigration, type WithAuditEvents } from '../../src/audit/event.ts';
import { createReadOutbox } from '../../src/audit/read-outbox.ts';
import { TresorError } from '../../src/errors.ts';
import { createKeyCache, type KeyCache } from '../../src/keyd/key-cache.ts';
import type { DataKeyPurpose, KeyService } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { createVault, type Vault } from '../../src/vault/collections.ts';
import { createTenantDataKeyStore } from '../../src/vault/data-key-store.ts';
import { createDataKeyring, type DataKeyLimits, type DataKeyring } from '../../src/vault/data-keys.ts';
import type { VaultLimits } from '../../src/vault/schema.ts';
import { type TenantDB, tenantStoreMigrations } from '../../src/vault/tenant-store-schema.ts';
import type { AuditOrigin } from '../../src/vault/vault-audit.ts';

const ADMIN = { id: 'test', role: 'admin' } as const;
const SERVER = { id: 'unix:tresor-server', role: 'server' } as const;

export const TENANTS = ['acme', 'globex'] as const;

export interface VaultRig {
  dir: string;
  vault: Vault;
  keyring: DataKeyring;
  cache: KeyCache;
  service: KeydService;
  /** Decryption-key loans by purpose since the last reset. */
  loans: Record<DataKeyPurpose, number>;
  resetLoans(): void;
  store(tenant?: string): Promise<Store<TenantDB>>;
  storeFile(tenant?: string): string;
  /** Bytes of the store file and its WAL. */
  storeBytes(tenant?: string): Buffer;
  /** Sets the vault's clock. */
  setNow(date: Date): void;
  /** The events in the tenant's own outbox (its changes). */
  auditEvents(tenant?: string): Promise<AuditEvent[]>;
  /** The control store's outbox, where the vault's reads record their events (read-outbox.ts). */
  control: Store<WithAuditEvents>;
  /** The events of the tenant's reads, in the control store's outbox. */
  readEvents(tenant?: string): Promise<AuditEvent[]>;
  close(): Promise<void>;
}

export function caller(overrides: Partial<AuditOrigin> = {}): AuditOrigin {
  return {
    actor: { kind: 'api-key', id: 'key_test' },
    requestId: 'req-test',
    sourceAddress: '192.0.2.1',
    userAgent: 'vault-tests',
    ...overrides,
  };
}

export async function vaultRig(
  options: { limits?: Partial<VaultLimits>; keyLimits?: Partial<DataKeyLimits> } = {},
): Promise<VaultRig> {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-vault-'));
  const keydDir = join(dir, 'keyd');
  mkdirSync(keydDir, { mode: 0o700 });
  initDevFile(keydDir);
  const service = createKeyService({
    dir: keydDir,
    provider: new DevFileProvider(keydDir),
    config: { maintenanceIntervalSeconds: 0 },
  });
  await service.call('unseal', { secret: '' }, ADMIN);
  for (const tenant of TENANTS) await service.call('createTenantKey', { tenant }, ADMIN);

  const opened = new Map<string, Promise<Store<TenantDB>>>();
  const storeFile = (tenant = 'acme') => join(dir, `${tenant}.sqlite`);
  const stores = (tenant: string) => {
    let s = opened.get(tenant);
    if (!s) {
      s = openSqliteStore<TenantDB>(storeFile(tenant), tenantStoreMigrations);
      opened.set(tenant, s);
    }
    return s;
  };
  const cache = createKeyCache({ maxEntries: 100, ttlMs: 60_000, maxUses: 1_000_000, sweepIntervalMs: 0 });
  const keys = { call: ((op, args) => service.call(op, args, SERVER)) as KeyService['call'] };
  const inner = createDataKeyring({
    keys,
    store: createTenantDataKeyStore(stores),
    cache,
    limits: options.keyLimits,
  });
  const loans: Record<DataKeyPurpose, number> = { data: 0, 'blind-index': 0, 'audit-hmac': 0, backup: 0 };
  const keyring: DataKeyring = {
    ...inner,
    withDecryptionKey(tenant, purpose, keyId, fn) {
      loans[purpose]++;
      return inner.withDecryptionKey(tenant, purpose, keyId, fn);
    },
  };
  let now = new Date('2025-01-01T00:00:00.000Z');
  const control = await openSqliteStore<WithAuditEvents>(join(dir, 'control.sqlite'), {
    '0001_audit_events': auditEventsMigration,
  });
  const vault = createVault({
    stores,
    keys: keyring,
    readOutbox: createReadOutbox(control),
    clock: () => now,
    limits: options.limits,
  });

  const rig: VaultRig = {
    dir,
    vault,
    keyring,
    cache,
    service,
    loans,
    resetLoans() {
      for (const k of Object.keys(loans) as DataKeyPurpose[]) loans[k] = 0;
    },
    store: (tenant = 'acme') => stores(tenant),
    storeFile,
    storeBytes(tenant = 'acme') {
      const parts = [readFileSync(storeFile(tenant))];
      try {
        parts.push(readFileSync(`${storeFile(tenant)}-wal`));
      } catch {
        // no WAL right now
      }
      return Buffer.concat(parts);
    },
    setNow(date) {
      now = date;
    },
    async auditEvents(tenant = 'acme') {
      const store = await stores(tenant);
      const rows = await store.db.selectFrom('audit_events').select('event').orderBy('seq').execute();
      return rows.map((r) => JSON.parse(r.event) as AuditEvent);
    },
    control,
    async readEvents(tenant = 'acme') {
      const rows = await control.db
        .selectFrom('audit_events')
        .select('event')
        .where('tenant', '=', tenant)
        .orderBy('seq')
        .execute();
      return rows.map((r) => JSON.parse(r.event) as AuditEvent);
    },
    async close() {
      for (const s of opened.values()) await (await s).close();
      await control.close();
      cache.close();
      await service.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return rig;
}

/** Resolves to the TresorError a promise rejected with (fails if it resolved or threw something else). */
export async function tresorError(p: Promise<unknown>): Promise<TresorError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof TresorError) return err;
    throw err;
  }
  throw new Error('expected a TresorError, but the call succeeded');
}

export const PEOPLE = {
  fields: {
    email: { type: 'string', classification: 'personal', required: true, searchable: true },
    name: { type: 'string', classification: 'personal' },
    // Searchable low-cardinality fields: their leakage is acknowledged (docs/security/blind-index.md).
    age: { type: 'number', classification: 'personal', searchable: true, acknowledgeLeakage: true },
    vip: { type: 'boolean', classification: 'internal', searchable: true, acknowledgeLeakage: true },
    born: { type: 'date', classification: 'personal', searchable: true, acknowledgeLeakage: true },
    profile: { type: 'object', classification: 'confidential' },
  },
} as const;
