/**
 * Creating a tenant: the row 'provisioning' (audited), then the steps that make it active
 * (provision), which resume() in tenant-resume.ts also runs for a tenant left half-made.
 */
import { randomBytes } from 'node:crypto';
import type { AuditContext } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import {
  abandonIdempotent,
  beginIdempotent,
  completeIdempotentIn,
  DEFAULT_IDEMPOTENCY_TTL_MS,
  type IdempotentRequest,
} from './idempotency.ts';
import type { TenantContext } from './tenant-context.ts';
import { checkDate, checkText, errorCode, invalid, wrongState } from './tenant-rows.ts';

export interface CreateTenantInput {
  name: string;
  /** YYYY-MM-DD; default today (UTC). */
  contractStart?: string;
  /** YYYY-MM-DD, the contract's last day; absent: open-ended. */
  contractEnd?: string | null;
}

export interface CreatedTenant {
  id: string;
  name: string;
  state: 'active';
  contractStart: string;
  contractEnd: string | null;
  /** The first API key (admin, all collections): shown here once, stored only as a hash. */
  apiKey: string;
  apiKeyId: string;
}

/**
 * The answer to a retry with the same Idempotency-Key: the first create's tenant and its first
 * key's id, but no key — it went to the first answer only, and is stored only as a hash. A client
 * that lost that answer revokes `apiKeyId` and issues another.
 */
export interface ReplayedTenant extends Omit<CreatedTenant, 'apiKey'> {
  apiKey: null;
  replayed: true;
}

const MAX_NAME_CHARS = 200;

export interface TenantProvisioning {
  /**
   * Creates a tenant. With an idempotency key (src/vault/idempotency.ts, kept in the control store),
   * a retry of the same request returns the first create's tenant, its first key's id and no key,
   * and creates nothing; the key is marked done in the transaction that activates the tenant.
   */
  createTenant(input: CreateTenantInput, context: AuditContext): Promise<CreatedTenant>;
  createTenant(
    input: CreateTenantInput,
    context: AuditContext,
    idempotency: IdempotentRequest | undefined,
  ): Promise<CreatedTenant | ReplayedTenant>;
  /** Makes a 'provisioning' tenant active: tenant key, store, first API key; each step idempotent. */
  provision(
    id: string,
    context: AuditContext,
    idempotency?: IdempotentRequest,
  ): Promise<{ apiKey: string; apiKeyId: string }>;
}

export function createTenantProvisioning(ctx: TenantContext): TenantProvisioning {
  const { control, apiKeys, tenantStores, keys, clock, locks, audit, row, transition } = ctx;

  async function ensureTenantKey(id: string): Promise<void> {
    // The keyd client never repeats a create that may have reached keyd (it is not idempotent in
    // general); here it is, by the EXISTS rule below, so one that was lost in a keyd instance's crash
    // is asked once more — of the next instance, where the client has moved its preference.
    for (let attempt = 0; ; attempt++) {
      try {
        await keys.call('createTenantKey', { tenant: id });
        return;
      } catch (error) {
        // Made by an earlier attempt whose answer was lost: tenant ids are random, so it is ours.
        if (errorCode(error) === 'TRESOR_ERR_TENANT_KEY_EXISTS') return;
        if (errorCode(error) !== 'TRESOR_ERR_KEYD_UNAVAILABLE' || attempt > 0) throw error;
      }
    }
  }

  async function ensureTenantStore(id: string): Promise<void> {
    if (await tenantStores.exists(id)) await tenantStores.open(id);
    else await tenantStores.create(id);
  }

  async function provision(
    id: string,
    context: AuditContext,
    idempotency?: IdempotentRequest,
  ): Promise<{ apiKey: string; apiKeyId: string }> {
    const current = await row(id);
    if (current.state !== 'provisioning') throw wrongState(current.state);
    await ensureTenantKey(id);
    await ensureTenantStore(id);
    const now = clock();
    const at = now.toISOString();
    return control.write(async (trx) => {
      await transition(trx, id, 'provisioning', { state: 'active', updated_at: at });
      const key = await apiKeys.issueFirstIn(trx, id, now);
      await audit(trx, context, id, 'tenant.activate', at, { apiKeyId: key.id });
      if (idempotency) await completeIdempotentIn(trx, idempotency, 201, { id, apiKeyId: key.id });
      return { apiKey: key.token, apiKeyId: key.id };
    });
  }

  async function createTenant(
    input: CreateTenantInput,
    context: AuditContext,
    idempotency?: IdempotentRequest,
  ): Promise<CreatedTenant | ReplayedTenant> {
    if (!idempotency) return createTenantOnce(input, context);
    const start = await beginIdempotent(control, idempotency, {
      now: clock().getTime(),
      ttlMs: DEFAULT_IDEMPOTENCY_TTL_MS,
    });
    if (start.kind === 'replay') {
      const first = start.response as { id: string; apiKeyId: string };
      const created = await row(first.id);
      return {
        id: first.id,
        name: created.name,
        state: 'active',
        contractStart: created.contract_start,
        contractEnd: created.contract_end,
        apiKey: null,
        apiKeyId: first.apiKeyId,
        replayed: true,
      };
    }
    try {
      return await createTenantOnce(input, context, idempotency);
    } catch (error) {
      await abandonIdempotent(control, idempotency).catch(() => undefined);
      throw error;
    }
  }

  async function createTenantOnce(
    input: CreateTenantInput,
    context: AuditContext,
    idempotency?: IdempotentRequest,
  ): Promise<CreatedTenant> {
    const name = checkText('name', input?.name, MAX_NAME_CHARS);
    const now = clock();
    const contractStart =
      input.contractStart === undefined
        ? now.toISOString().slice(0, 10)
        : checkDate('contractStart', input.contractStart);
    const contractEnd =
      input.contractEnd === undefined || input.contractEnd === null
        ? null
        : checkDate('contractEnd', input.contractEnd);
    if (contractEnd !== null && contractEnd < contractStart) {
      throw invalid('contractEnd', 'must not be before contractStart');
    }
    const at = now.toISOString();
    const id = await control
      .write(async (trx) => {
        const twin = await trx
          .selectFrom('tenants')
          .selectAll()
          .where('name', '=', name)
          .where('state', '<>', 'closed')
          .executeTakeFirst();
        if (twin) {
          const sameContract =
            (input.contractStart === undefined || twin.contract_start === contractStart) &&
            twin.contract_end === contractEnd;
          if (twin.state === 'provisioning' && sameContract) return twin.id;
          throw new TresorError('TRESOR_ERR_CONFLICT', 'a tenant with this name exists', { field: 'name' });
        }
        const newId = `ten_${randomBytes(12).toString('hex')}`;
        await trx
          .insertInto('tenants')
          .values({
            id: newId,
            name,
            state: 'provisioning',
            contract_start: contractStart,
            contract_end: contractEnd,
            created_at: at,
            updated_at: at,
            closed_at: null,
            close_reason: null,
            close_export_pending: 0,
            keys_destroyed_at: null,
            key_ids_destroyed: null,
            store_destroyed_at: null,
          })
          .execute();
        await audit(trx, context, newId, 'tenant.create', at, { name, contractStart, contractEnd });
        return newId;
      })
      .catch((error: unknown) => {
        // Two creates with one name at once: the unique index lets one through.
        if (/UNIQUE/i.test(String((error as Error)?.message))) {
          throw new TresorError('TRESOR_ERR_CONFLICT', 'a tenant with this name exists', { field: 'name' });
        }
        throw error;
      });
    const { apiKey, apiKeyId } = await locks.run(id, () => provision(id, context, idempotency));
    const created = await row(id);
    return {
      id,
      name: created.name,
      state: 'active',
      contractStart: created.contract_start,
      contractEnd: created.contract_end,
      apiKey,
      apiKeyId,
    };
  }

  return { createTenant: createTenant as TenantProvisioning['createTenant'], provision };
}
