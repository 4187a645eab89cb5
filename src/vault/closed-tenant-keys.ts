/**
 * A closed tenant's data keys leave every process's memory within a bound, not only on a notice.
 *
 * The process that closes a tenant forgets its keys at once (tenant-close.ts) and tells the other
 * processes on the database (the `tresor_cache` NOTIFY). A notice is a wake-up, never a promise:
 * while a process's listening connection is down it is lost. So every process also checks, each
 * `intervalMs`, the state of the tenants whose keys it may hold (DataKeyring.heldTenants) in the
 * control store, and forgets those that are closing, closed or gone — one indexed read per period,
 * none while it holds no tenant's keys. A closed tenant's keys are therefore gone from every
 * process at most `intervalMs` (plus that read) after the close commits.
 */
import type { Kysely } from 'kysely';
import type { DataKeyring } from './data-keys.ts';
import type { VaultControlDB } from './vault-control-schema.ts';

export interface ClosedTenantKeysDeps {
  control: { readonly db: Kysely<VaultControlDB> };
  keyring: Pick<DataKeyring, 'heldTenants' | 'forgetTenant'>;
  intervalMs: number;
  /** A check that failed (the database unreachable): it runs again next period. */
  warn(obj: object, msg: string): void;
}

export interface ClosedTenantKeys {
  /** One check now: resolves with the tenants whose keys were forgotten. */
  checkOnce(): Promise<string[]>;
  close(): Promise<void>;
}

/** Ids per query: far below both backends' limits on bound parameters. */
const IDS_PER_QUERY = 500;

export function watchClosedTenantKeys(deps: ClosedTenantKeysDeps): ClosedTenantKeys {
  if (!(deps.intervalMs > 0)) throw new RangeError('intervalMs must be positive');
  let running: Promise<string[]> | undefined;
  let closed = false;

  async function check(): Promise<string[]> {
    const held = deps.keyring.heldTenants();
    const forgotten: string[] = [];
    for (let i = 0; i < held.length; i += IDS_PER_QUERY) {
      const ids = held.slice(i, i + IDS_PER_QUERY);
      const rows = await deps.control.db
        .selectFrom('tenants')
        .select(['id', 'state'])
        .where('id', 'in', ids)
        .execute();
      const live = new Set(
        rows.filter((r) => r.state === 'active' || r.state === 'provisioning').map((r) => r.id),
      );
      for (const id of ids) {
        if (live.has(id)) continue;
        deps.keyring.forgetTenant(id);
        forgotten.push(id);
      }
    }
    return forgotten;
  }

  const checkOnce = (): Promise<string[]> => {
    running ??= check().finally(() => {
      running = undefined;
    });
    return running;
  };

  const timer = setInterval(() => {
    if (closed) return;
    checkOnce().catch((error: unknown) =>
      deps.warn(
        { code: (error as { code?: string }).code },
        'closed tenants’ data keys: the check failed (it runs again)',
      ),
    );
  }, deps.intervalMs);
  timer.unref();

  return {
    checkOnce,
    async close() {
      closed = true;
      clearInterval(timer);
      await running?.catch(() => undefined);
    },
  };
}
