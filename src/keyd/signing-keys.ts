/**
 * keyd's stored signing keys, one Ed25519 key per purpose (signing.ts): created on first use,
 * stored wrapped by the root keyring, and held unwrapped — checked against the stored public key —
 * until keyd seals. Signing runs under the shared root lock, so root rotation never races it.
 */
import { constantTimeEqual, wipe } from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import { KeyedMutex, type RootLock } from './locks.ts';
import type { OpHandlers, OpRecord, OpRecorder } from './op-record.ts';
import type { RootKeyring } from './root/types.ts';
import { rootVersionOf, rowError, SIGNING_KEY_AAD, signingKeyAad } from './root-wrapping.ts';
import {
  ed25519PublicKey,
  generateEd25519,
  noteVerifierKey,
  type SigningPurpose,
  signEd25519,
  signingKeyName,
} from './signing.ts';
import type { KeyStore, SigningKeyRecord } from './store.ts';

/** A signature and the note name of the key that made it. */
export interface SignedBytes {
  signature: Buffer;
  keyName: string;
}

interface Signer {
  seed: Buffer;
  publicKey: Buffer;
  record: SigningKeyRecord;
}

export interface SigningKeysDeps {
  store: Pick<KeyStore, 'getSigningKey' | 'insertSigningKey'>;
  keyring: () => RootKeyring;
  recorder: OpRecorder;
  rootLock: RootLock;
  clock: () => Date;
}

export class SigningKeys {
  readonly #store: SigningKeysDeps['store'];
  readonly #keyring: () => RootKeyring;
  readonly #recorder: OpRecorder;
  readonly #rootLock: RootLock;
  readonly #clock: () => Date;
  /** One purpose's key is loaded or created once, however many callers ask at the same time. */
  readonly #locks = new KeyedMutex();
  /** Signing seeds by purpose, with the public key checked against the stored one. */
  readonly #signers = new Map<string, Signer>();

  constructor(deps: SigningKeysDeps) {
    this.#store = deps.store;
    this.#keyring = deps.keyring;
    this.#recorder = deps.recorder;
    this.#rootLock = deps.rootLock;
    this.#clock = deps.clock;
  }

  /**
   * Runs `fn` with the purpose's key loaded, under the shared root lock: `fn` checks what is to be
   * signed (and may record it) before it calls `sign`, so nothing unchecked is ever signed. Only the
   * signing-*.ts modules call this, each for its own purpose's documents.
   */
  withSigner<T>(
    purpose: SigningPurpose,
    rec: OpRecord,
    fn: (signer: { sign(message: Buffer): SignedBytes; publicKey: Buffer }) => Promise<T>,
  ): Promise<T> {
    return this.#rootLock.shared(async () => {
      const signer = await this.#signer(purpose);
      rec.keyId = signer.record.keyId;
      const keyName = signingKeyName(purpose);
      return fn({
        sign: (message) => ({ signature: signEd25519(signer.seed, message), keyName }),
        publicKey: Buffer.from(signer.publicKey),
      });
    });
  }

  operations(): Pick<OpHandlers, 'publicKey'> {
    return {
      publicKey: ({ purpose }, rec) =>
        this.#rootLock.shared(async () => {
          const signer = await this.#signer(purpose);
          rec.keyId = signer.record.keyId;
          const name = signingKeyName(purpose);
          return {
            name,
            publicKey: Buffer.from(signer.publicKey),
            verifierKey: noteVerifierKey(name, signer.publicKey),
          };
        }),
    };
  }

  /** Wipes every unwrapped seed from memory (seal, close). */
  clear(): void {
    for (const signer of this.#signers.values()) wipe(signer.seed);
    this.#signers.clear();
  }

  async #signer(purpose: SigningPurpose): Promise<Signer> {
    return this.#locks.run(purpose, async () => {
      const cached = this.#signers.get(purpose);
      if (cached) return cached;
      const keyring = this.#keyring();
      const record =
        (await this.#store.getSigningKey(purpose)) ??
        // Another keyd instance on a shared store may make it first: then its key is the one.
        (await this.#create(keyring, purpose).catch(async (err: unknown): Promise<SigningKeyRecord> => {
          const made = await this.#store.getSigningKey(purpose);
          if (made === undefined) throw err;
          return made;
        }));
      const where = `signing_keys row (${purpose})`;
      let seed: Buffer;
      try {
        seed = keyring.unwrap(record.wrapped, SIGNING_KEY_AAD, signingKeyAad(record));
      } catch (err) {
        throw rowError(where, err);
      }
      const publicKey = seed.length === 32 ? ed25519PublicKey(seed) : Buffer.alloc(0);
      if (!constantTimeEqual(publicKey, record.publicKey)) {
        wipe(seed);
        throw new KeydError(
          'TRESOR_ERR_STORE_CORRUPT',
          `${where}: public key does not match the private key`,
        );
      }
      const signer = { seed, publicKey, record };
      this.#signers.set(purpose, signer);
      return signer;
    });
  }

  /** Makes the purpose's first key and stores it wrapped, as keyd's own logged operation. */
  async #create(keyring: RootKeyring, purpose: SigningPurpose): Promise<SigningKeyRecord> {
    const { seed, publicKey } = generateEd25519();
    const keyId = `sig.${purpose}.v1`;
    const wrapped = keyring.wrap(seed, SIGNING_KEY_AAD, signingKeyAad({ purpose, keyId }));
    wipe(seed);
    const created: SigningKeyRecord = {
      purpose,
      keyId,
      rootVersion: rootVersionOf(wrapped),
      wrapped,
      publicKey,
      createdAt: this.#clock().toISOString(),
    };
    const rec = this.#recorder.system('createSigningKey', null);
    rec.keyId = keyId;
    await this.#recorder.execute(rec, async () => {
      await this.#store.insertSigningKey(created, rec.draft('ok', `Ed25519 key for ${purpose}`));
      rec.committed();
    });
    return created;
  }
}
