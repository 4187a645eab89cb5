/**
 * The identity factor key: the 32-byte AES-256-GCM key that seals TOTP secrets (sealed-totp-secret.ts). It must
 * never sit unwrapped on any disk (docs/architecture.md, invariant 2), so it is a keyd data key like a tenant's:
 *
 * - keyd wraps it under the tenant key of a reserved keyd tenant id, SYSTEM_KEYD_TENANT (`sys_…`
 *   can never be a tenant's id, which are `ten_…`), made at first start if keyd has none;
 * - the control store keeps only the wrapped form (table system_keys), written once: when two
 *   nodes start together the first insert wins and the other unwraps that one;
 * - each start unwraps it through keyd into this process's memory only.
 *
 * So a copy of the control store alone opens no TOTP secret, and destroying the system tenant key
 * in keyd makes every sealed secret unreadable (everyone re-enrols their TOTP).
 *
 * The key is held for the life of the server and wiped when it closes (FactorKeySource.close), or at
 * once if keyd gives something that is not a 32-byte key.
 */
import { KEY_BYTES, wipe } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import type { IdentityDB } from './identity-store-schema.ts';

export const SYSTEM_KEYD_TENANT = 'sys_identity';
export const FACTOR_KEY_NAME = 'identity-factor-key';

/** What this needs of the keyd client. */
export interface FactorKeyKeyd {
  call(op: 'createTenantKey', args: { tenant: string }): Promise<unknown>;
  call(
    op: 'generateDataKey',
    args: { tenant: string; purpose: 'data' },
  ): Promise<{ keyId: string; key: Buffer; wrapped: Buffer }>;
  call(
    op: 'unwrapDataKey',
    args: { tenant: string; purpose: 'data'; keyId: string; wrapped: Buffer },
  ): Promise<{ key: Buffer }>;
}

export function checkFactorKey(key: Buffer): Buffer {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new TresorError('TRESOR_ERR_INTERNAL', `identity: the factor key must be ${KEY_BYTES} bytes`);
  }
  return key;
}

/** The factor key, unwrapped by keyd; generated (and stored wrapped) on first use. */
export async function obtainFactorKey(options: {
  control: Store<IdentityDB>;
  keyd: FactorKeyKeyd;
  now?: () => Date;
}): Promise<Buffer> {
  const { control, keyd } = options;
  const now = options.now ?? (() => new Date());
  const stored = async () =>
    control.db.selectFrom('system_keys').selectAll().where('name', '=', FACTOR_KEY_NAME).executeTakeFirst();
  let row = await stored();
  if (!row) {
    await keyd.call('createTenantKey', { tenant: SYSTEM_KEYD_TENANT }).catch((err: unknown) => {
      if ((err as { code?: unknown }).code !== 'TRESOR_ERR_TENANT_KEY_EXISTS') throw err;
    });
    const generated = await keyd.call('generateDataKey', { tenant: SYSTEM_KEYD_TENANT, purpose: 'data' });
    generated.key.fill(0); // the stored (wrapped) one is authoritative: unwrap it below like every start
    await control.write((trx) =>
      trx
        .insertInto('system_keys')
        .values({
          name: FACTOR_KEY_NAME,
          key_id: generated.keyId,
          keyd_tenant: SYSTEM_KEYD_TENANT,
          wrapped: generated.wrapped.toString('base64'),
          created_at: now().toISOString(),
        })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute(),
    );
    row = await stored();
    if (!row) throw new Error('identity: the factor key was not stored');
  }
  const { key } = await keyd.call('unwrapDataKey', {
    tenant: row.keyd_tenant,
    purpose: 'data',
    keyId: row.key_id,
    wrapped: Buffer.from(row.wrapped, 'base64'),
  });
  try {
    return checkFactorKey(key);
  } catch (err) {
    if (Buffer.isBuffer(key)) wipe(key);
    throw err;
  }
}

/** The factor key of a running server, asked of keyd when first needed. */
export interface FactorKeySource {
  /** The key; keyd's error (TRESOR_ERR_KEYD_UNAVAILABLE when unreachable) while keyd cannot give it. */
  get(): Promise<Buffer>;
  /** Wipes the key (the server is closing); a later get() asks keyd again. */
  close(): Promise<void>;
}

/**
 * The server starts while keyd is unreachable, so the key is obtained at first use, not at start. A
 * success is kept for the life of the process; a failure is not, so the next call asks keyd again
 * and identity works as soon as keyd answers, without a restart.
 */
export function createFactorKeySource(options: {
  control: Store<IdentityDB>;
  keyd: FactorKeyKeyd;
  now?: () => Date;
}): FactorKeySource {
  let pending: Promise<Buffer> | undefined;
  return {
    get() {
      pending ??= obtainFactorKey(options).catch((err: unknown) => {
        pending = undefined;
        throw err;
      });
      return pending;
    },
    async close() {
      const held = pending;
      pending = undefined;
      const key = await held?.catch(() => undefined);
      if (key) wipe(key);
    },
  };
}

type AsyncMethods<S> = { [K in keyof S]: (...args: never[]) => Promise<unknown> };

/**
 * `service` with every method waiting for the factor key first. Until keyd has given the key, people
 * and login answer every call alike with keyd's error (503), whether or not that call needs the key:
 * no half of an account's flow works while the other half cannot.
 */
export function afterFactorKey<S extends AsyncMethods<S>>(factorKey: () => Promise<Buffer>, service: S): S {
  const waiting: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service) as [string, (...args: unknown[]) => unknown][]) {
    waiting[name] = async (...args: unknown[]) => {
      await factorKey();
      return method(...args);
    };
  }
  return waiting as S;
}
