/**
 * Requests keyd does at most once, however often they arrive. When keyd dies after it committed a
 * change but before its answer reached the client, the client cannot tell whether the change was
 * made; it repeats the request — on the next keyd instance, over the same store — and that repeat
 * must not rotate a tenant key a second time, nor fail because the first one succeeded.
 *
 * The client gives such a request an id (`requestId`, random, the same on every attempt). keyd
 * records it with the change, in the change's own transaction, beside the ops-log entry that
 * records the change (table `requests`, request_id unique). So either the change and its id are
 * both committed or neither is. A request whose id is recorded is not done again: keyd answers
 * the outcome the first one left, read from its store, and logs the repeat as such
 * (repeated-request-detail.ts). Two attempts
 * running at once (on two instances) both miss the record; the store lets one commit, the other's
 * change rolls back with its taken id, and it too answers the first outcome.
 *
 * An id recorded for another operation, tenant or caller is refused (TRESOR_ERR_REQUEST_INVALID):
 * an id names one request of one caller.
 */
import { KeydError } from './errors.ts';
import type { OpHandlers, OpRecord } from './op-record.ts';
import type { DestroyResult, OpsLogEntry, TenantKeyInfo } from './operations.ts';
import { repeatedRequestDetail } from './repeated-request-detail.ts';
import type { KeyStore } from './store.ts';
import type { TenantKeys } from './tenant-keys.ts';

/** The operations a repeat would do twice: each takes a `requestId`. */
export type OnceOperation = 'rotateTenantKey' | 'retireTenantKeyVersion' | 'destroyTenantKey';

export interface RepeatedRequestDeps {
  store: Pick<KeyStore, 'findRequest' | 'getTenant'>;
  tenantKeys: TenantKeys;
}

/** The handlers of `handlers`, each done at most once per request id. */
export function answeredOnce(
  { store, tenantKeys }: RepeatedRequestDeps,
  handlers: Pick<OpHandlers, OnceOperation>,
): Pick<OpHandlers, OnceOperation> {
  /** Runs `run` unless the request id is recorded; then (or if it got recorded meanwhile) `again`. */
  async function once<T>(
    requestId: string | undefined,
    tenant: string,
    rec: OpRecord,
    run: () => Promise<T>,
    again: (earlier: OpsLogEntry) => Promise<T>,
  ): Promise<T> {
    if (requestId === undefined) return run();
    const answerAgain = (earlier: OpsLogEntry): Promise<T> => {
      if (earlier.op !== rec.op || earlier.caller !== rec.caller || earlier.tenant !== tenant) {
        throw new KeydError('TRESOR_ERR_REQUEST_INVALID', 'requestId: already used for another request');
      }
      rec.keyId = earlier.keyId;
      rec.detail = repeatedRequestDetail(earlier.seq);
      return again(earlier);
    };
    const earlier = await store.findRequest(requestId);
    if (earlier !== undefined) return answerAgain(earlier);
    rec.requestId = requestId;
    try {
      return await run();
    } catch (err) {
      rec.requestId = null;
      // Done meanwhile by another attempt (another instance): this one's change rolled back.
      // (A store that cannot be read now leaves the operation's own error to report.)
      const raced = await store.findRequest(requestId).catch(() => undefined);
      if (raced === undefined) throw err;
      return answerAgain(raced);
    } finally {
      rec.requestId = null;
    }
  }

  async function versionAgain(tenant: string, earlier: OpsLogEntry): Promise<TenantKeyInfo> {
    const row = (await store.getTenant(tenant))?.keys.find((k) => k.keyId === earlier.keyId);
    if (row === undefined) {
      throw new KeydError('TRESOR_ERR_INTERNAL', 'the recorded request names no key version of the tenant');
    }
    return tenantKeys.info(row);
  }

  async function destroyAgain(tenant: string): Promise<DestroyResult> {
    const view = await store.getTenant(tenant);
    if (view?.tenant.state === 'destroyed') {
      return {
        tenant,
        state: 'destroyed',
        destroyAfter: view.tenant.destroyAfter,
        destroyedAt: view.tenant.destroyedAt,
        keyIdsDestroyed: view.keys.map((k) => k.keyId),
      };
    }
    if (view?.tenant.state === 'pending-destroy') {
      return {
        tenant,
        state: 'pending-destroy',
        destroyAfter: view.tenant.destroyAfter,
        destroyedAt: null,
        keyIdsDestroyed: [],
      };
    }
    throw new KeydError(
      'TRESOR_ERR_REQUEST_INVALID',
      'requestId: the destruction it scheduled was cancelled since',
    );
  }

  return {
    rotateTenantKey: (args, rec, caller) =>
      once(
        args.requestId,
        args.tenant,
        rec,
        () => handlers.rotateTenantKey(args, rec, caller),
        (earlier) => versionAgain(args.tenant, earlier),
      ),
    retireTenantKeyVersion: (args, rec, caller) =>
      once(
        args.requestId,
        args.tenant,
        rec,
        () => handlers.retireTenantKeyVersion(args, rec, caller),
        (earlier) => versionAgain(args.tenant, earlier),
      ),
    destroyTenantKey: (args, rec, caller) =>
      once(
        args.requestId,
        args.tenant,
        rec,
        () => handlers.destroyTenantKey(args, rec, caller),
        () => destroyAgain(args.tenant),
      ),
  };
}
