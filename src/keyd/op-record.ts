/**
 * Every key service operation — refused ones too — appends an ops-log entry, and its result is
 * returned only once that entry is durable (fail closed: no log, no key). OpRecord is one entry in
 * the making; OpRecorder runs an operation and makes its entry durable.
 */
import { CryptoError, wipe } from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import type { Caller, KeydOperationName, OpArgs, OpResult } from './operations.ts';
import type { OpsLogDraft } from './ops-log.ts';
import type { EncryptionCount, KeyStore } from './store.ts';

/** keyd's own jobs (maintenance, automatic rotation) in the ops log. */
export const SYSTEM_CALLER: Caller = { id: 'system', role: 'admin' };

/** One operation's ops-log entry in the making. */
export class OpRecord {
  tenant: string | null = null;
  keyId: string | null = null;
  detail: string | null = null;
  /** Set while the operation may record its client's request id with its change (repeated-requests.ts). */
  requestId: string | null = null;
  encryptions: EncryptionCount | undefined;
  /** Set once the entry is queued (group commit) or committed with the operation's change. */
  durable: Promise<unknown> | undefined;
  /** Plaintext keys in the result: wiped if the operation fails or its entry cannot be made durable. */
  readonly secrets: Buffer[] = [];

  constructor(
    readonly op: string,
    readonly caller: string,
    readonly now: () => Date,
  ) {}

  draft(outcome: 'ok' | 'error', detail: string | null = this.detail): OpsLogDraft {
    return {
      at: this.now().toISOString(),
      caller: this.caller,
      op: this.op,
      tenant: this.tenant,
      keyId: this.keyId,
      outcome,
      detail,
      ...(outcome === 'ok' && this.requestId !== null ? { requestId: this.requestId } : {}),
    };
  }

  committed(): void {
    this.durable = Promise.resolve();
  }
}

/** What runs one operation once the caller, role, arguments and seal state were checked. */
export type OpHandlers = {
  [K in KeydOperationName]: (args: OpArgs<K>, rec: OpRecord, caller: Caller) => Promise<OpResult<K>>;
};

export function toKeydError(err: unknown): KeydError {
  if (err instanceof KeydError) return err;
  if (err instanceof CryptoError)
    return new KeydError('TRESOR_ERR_INTERNAL', `unexpected crypto failure (${err.code})`);
  return new KeydError('TRESOR_ERR_INTERNAL');
}

export class OpRecorder {
  readonly #store: Pick<KeyStore, 'appendOps'>;
  readonly #clock: () => Date;

  constructor(store: Pick<KeyStore, 'appendOps'>, clock: () => Date) {
    this.#store = store;
    this.#clock = clock;
  }

  /** A caller's operation; the caller id and operation name are the ones to log, already checked. */
  record(op: string, caller: string): OpRecord {
    return new OpRecord(op, caller, this.#clock);
  }

  /** An internal operation by keyd itself (maintenance, automatic rotation, signing key creation). */
  system(op: string, tenant: string | null): OpRecord {
    const rec = new OpRecord(op, SYSTEM_CALLER.id, this.#clock);
    rec.tenant = tenant;
    return rec;
  }

  /** Runs a handler and makes its ops-log entry durable before returning (or throwing). */
  async execute<T>(rec: OpRecord, handler: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await handler();
    } catch (err) {
      wipe(...rec.secrets);
      const e = toKeydError(err);
      if (rec.durable) {
        rec.durable.catch(() => undefined);
      } else {
        const context = rec.detail ? ` (${rec.detail})` : '';
        await this.#store.appendOps(rec.draft('error', `${e.code}: ${e.message}${context}`));
      }
      throw e;
    }
    try {
      rec.durable ??= this.#store.appendOps(rec.draft('ok'), rec.encryptions);
      await rec.durable;
    } catch (err) {
      wipe(...rec.secrets);
      throw toKeydError(err);
    }
    return result;
  }
}
