/**
 * An in-memory KeyService for the keyd TRANSPORT tests only (protocol, server, client). It answers
 * with the contract's shapes, applies the sealed and admin rules the way keyd does, and records
 * every call with the caller the transport proved, so tests can count attempts and check
 * identities. It does no real cryptography ("wrapped" keys are random handles remembered in a
 * Map) and must never stand in for src/keyd/service.ts: end-to-end tests use the real service.
 */
import { randomBytes } from 'node:crypto';
import { KeydError } from '../../src/keyd/errors.ts';
import {
  ADMIN_OPERATIONS,
  type Caller,
  type KeydOperationName,
  type KeyService,
  type OpArgs,
  type OpResult,
  SEALED_OPERATIONS,
} from '../../src/keyd/operations.ts';

export interface RecordedCall {
  op: KeydOperationName;
  args: unknown;
  caller: Caller | undefined;
}

export interface FakeKeyService extends KeyService {
  readonly calls: RecordedCall[];
  sealed: boolean;
  /** Runs before each operation (after it is recorded): tests make it wait or throw. */
  before: ((op: KeydOperationName, args: unknown) => Promise<void> | void) | undefined;
}

export function createFakeKeyService(options: { sealed?: boolean } = {}): FakeKeyService {
  const dataKeys = new Map<string, Buffer>(); // wrapped (hex) → key
  const signingKey = randomBytes(32);

  const fake: FakeKeyService = {
    calls: [],
    sealed: options.sealed ?? false,
    before: undefined,

    async call<K extends KeydOperationName>(op: K, args: OpArgs<K>, caller?: Caller): Promise<OpResult<K>> {
      fake.calls.push({ op, args, caller });
      await fake.before?.(op, args);
      if (fake.sealed && !SEALED_OPERATIONS.has(op)) throw new KeydError('TRESOR_ERR_KEYD_SEALED');
      if (ADMIN_OPERATIONS.has(op) && caller?.role !== 'admin') throw new KeydError('TRESOR_ERR_FORBIDDEN');
      return answer(op, args as Record<string, unknown>) as OpResult<K>;
    },
  };

  function seal() {
    return { provider: 'dev-file' as const, initialised: true, sealed: fake.sealed };
  }

  function answer(op: KeydOperationName, args: Record<string, unknown>): unknown {
    switch (op) {
      case 'status':
        return seal();
      case 'health':
        return {
          status: fake.sealed ? 'sealed' : 'ok',
          seal: seal(),
          rootVersion: 1,
          store: 'ok',
          uptimeSeconds: 1,
        };
      case 'unseal':
        fake.sealed = false;
        return seal();
      case 'seal':
        fake.sealed = true;
        return seal();
      case 'generateDataKey': {
        const key = randomBytes(32);
        const wrapped = randomBytes(60);
        dataKeys.set(wrapped.toString('hex'), Buffer.from(key));
        return {
          keyId: `dk_${randomBytes(12).toString('hex')}`,
          purpose: args.purpose,
          tenant: args.tenant,
          key,
          wrapped,
        };
      }
      case 'unwrapDataKey': {
        const key = dataKeys.get((args.wrapped as Buffer).toString('hex'));
        if (key === undefined) throw new KeydError('TRESOR_ERR_KEY_ID_UNKNOWN');
        return { key: Buffer.from(key) };
      }
      case 'sign':
        return {
          signature: Buffer.concat([signingKey.subarray(0, 4), args.message as Buffer]),
          keyName: 'tresor.keyd/audit',
        };
      case 'publicKey':
        return {
          name: 'tresor.keyd/audit',
          publicKey: Buffer.alloc(32, 7),
          verifierKey: 'tresor.keyd/audit+00000000+AQ==',
        };
      case 'createTenantKey':
      case 'rotateTenantKey':
        return {
          tenant: args.tenant,
          keyId: `tk.${String(args.tenant)}.v1`,
          version: 1,
          state: 'active',
          rootVersion: 1,
          createdAt: '2026-01-01T00:00:00.000Z',
          rotateAfter: null,
          encryptions: 0,
        };
      case 'tenantKeyStatus':
        return { tenant: args.tenant, state: 'active', destroyAfter: null, destroyedAt: null, versions: [] };
      case 'opsLog':
        return { entries: [] };
      default:
        throw new KeydError('TRESOR_ERR_INTERNAL', `the fake key service does not implement ${op}`);
    }
  }

  return fake;
}
