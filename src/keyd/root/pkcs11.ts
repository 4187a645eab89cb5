/**
 * PKCS#11 provider: the root key versions are AES-256 keys generated inside an HSM (or SoftHSM2 in
 * tests) and never leave it — CKA_SENSITIVE, CKA_EXTRACTABLE=false, and at unseal keyd refuses any
 * key that the token does not vouch was generated there (CKA_LOCAL) and was never extractable
 * (CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE), so a key imported under our label is never used.
 * Unseal is the user login with the token PIN.
 *
 * Token layout (one convention, no second object to keep in step):
 *   label `tresor-root-v<n>`    root key version n; the highest n present is the active version
 *   id    `root.v<n>@<ISO 8601>` creation time (CKA_START_DATE is broken in pkcs11js + SoftHSM 2.6)
 * A rotation is one C_GenerateKey and a retirement one C_DestroyObject of a non-highest version,
 * each atomic in the token, so a rotation that dies midway leaves either the old or the new state.
 *
 * Wrapping runs CKM_AES_GCM inside the token and yields the same envelope as src/crypto/envelope.ts —
 * 'T' 0x01 len keyId ‖ nonce ‖ ciphertext ‖ tag, AAD = header ‖ encodeAad(purpose, context) — with
 * key id `root.v<n>`, so tenant keys look the same whichever provider wrapped them. The 96-bit IV
 * is random, made by keyd (NIST SP 800-38D §8.2.2); root keys wrap only tenant keys, far below
 * the 2^32 invocations §8.3 allows. Tokens that insist on generating GCM IVs themselves (some
 * FIPS-mode HSMs) refuse this and are not supported.
 *
 * We call pkcs11js (graphene-pk11's own binding) directly: graphene's object layer adds nothing
 * here and crashed on date attributes. It is an optional dependency, loaded on first use.
 */
import { randomBytes } from 'node:crypto';
import { endianness } from 'node:os';
import type * as Pkcs11Js from 'pkcs11js';
import {
  type AadContext,
  CryptoError,
  checkKeyId,
  encodeAad,
  NONCE_BYTES,
  readEnvelopeHeader,
  secretCopy,
  TAG_BYTES,
  wipe,
} from '../../crypto/index.ts';
import { KeydError } from '../errors.ts';
import { rootKeyId } from './sealed-keyring.ts';
import type { RootKeyProvider, RootKeyring, RootKeyVersion, SealStatus } from './types.ts';

type Pkcs11Binding = typeof Pkcs11Js;
type Handle = Pkcs11Js.Handle;

export const DEFAULT_PKCS11_LIBRARY = '/usr/lib/softhsm/libsofthsm2.so';
export const ROOT_KEY_LABEL_PREFIX = 'tresor-root-v';

export interface Pkcs11Config {
  /** Path of the token's PKCS#11 module. */
  library?: string;
  /** The token, by label (CKA_LABEL of the token) or by slot id; exactly one. */
  tokenLabel?: string;
  slot?: number;
  /** The user PIN, for unattended unseal; otherwise pass it to unseal(). */
  pin?: string;
}

const ENVELOPE_MAGIC = 0x54; // 'T', as in src/crypto/envelope.ts
const FORMAT_AES_256_GCM = 1;
const ROOT_KEY_BYTES = 32;
const LABEL_PATTERN = /^tresor-root-v([1-9][0-9]{0,8})$/;
const ROOT_KEY_ID_PATTERN = /^root\.v([1-9][0-9]{0,8})$/;
/** PKCS#11 v3.0 CKR_AEAD_DECRYPT_FAILED; SoftHSM 2.6 answers CKR_GENERAL_ERROR to a bad tag instead. */
const CKR_AEAD_DECRYPT_FAILED = 0x35;

// ---- the module, shared per library path: C_Initialize once per process, C_Finalize after the last user

interface LoadedLibrary {
  path: string;
  ck: Pkcs11Binding;
  lib: Pkcs11Js.PKCS11;
  users: number;
}

const loaded = new Map<string, LoadedLibrary>();

async function loadBinding(): Promise<Pkcs11Binding> {
  try {
    return (await import('pkcs11js')).default;
  } catch {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      'the pkcs11 root key provider needs the optional dependency pkcs11js, which is not installed',
    );
  }
}

async function acquire(path: string): Promise<LoadedLibrary> {
  const ck = await loadBinding();
  let entry = loaded.get(path);
  if (!entry) {
    const lib = new ck.PKCS11();
    try {
      lib.load(path);
      lib.C_Initialize();
    } catch {
      throw new KeydError(
        'TRESOR_ERR_CONFIG_INVALID',
        `cannot load or initialise the PKCS#11 module ${path}`,
      );
    }
    entry = { path, ck, lib, users: 0 };
    loaded.set(path, entry);
  }
  entry.users += 1;
  return entry;
}

function release(entry: LoadedLibrary): void {
  entry.users -= 1;
  if (entry.users > 0) return;
  loaded.delete(entry.path);
  try {
    entry.lib.C_Finalize();
    entry.lib.close();
  } catch {
    // Nothing to do: the process keeps no state in a finalised module.
  }
}

// ---- errors

function ckrCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'number' ? code : undefined;
}

function ckrName(err: unknown): string {
  const message = err instanceof Error ? err.message : '';
  return /^CKR_[A-Z0-9_]+$/.test(message) ? message : 'unknown error';
}

function tokenFailure(err: unknown, action: string): Error {
  if (err instanceof KeydError || err instanceof CryptoError) return err;
  return new KeydError(
    'TRESOR_ERR_KEYD_UNAVAILABLE',
    `the PKCS#11 token failed to ${action} (${ckrName(err)})`,
  );
}

// ---- attributes

function readUlong(value: Buffer): number {
  const le = endianness() === 'LE';
  if (value.length === 8) return Number(le ? value.readBigUInt64LE() : value.readBigUInt64BE());
  return le ? value.readUInt32LE() : value.readUInt32BE();
}

function slotId(handle: Handle): number {
  return readUlong(handle);
}

interface RootKeyObject {
  version: number;
  createdAt: string;
  handle: Handle;
}

// ---- the logged-in token

class Token {
  readonly #entry: LoadedLibrary;
  readonly #slot: Handle;
  #session: Handle | undefined;

  private constructor(entry: LoadedLibrary, slot: Handle, session: Handle) {
    this.#entry = entry;
    this.#slot = slot;
    this.#session = session;
  }

  /** Loads the module, finds the token and logs in; on failure nothing stays open. */
  static async open(config: Pkcs11Config, pin: string): Promise<Token> {
    const entry = await acquire(config.library ?? DEFAULT_PKCS11_LIBRARY);
    const { ck, lib } = entry;
    let session: Handle | undefined;
    try {
      const slot = findSlot(entry, config);
      try {
        session = lib.C_OpenSession(slot, ck.CKF_SERIAL_SESSION | ck.CKF_RW_SESSION);
      } catch (err) {
        throw tokenFailure(err, 'open a session');
      }
      try {
        lib.C_Login(session, ck.CKU_USER, pin);
      } catch (err) {
        throw loginFailure(ck, err);
      }
      return new Token(entry, slot, session);
    } catch (err) {
      if (session) {
        try {
          lib.C_CloseSession(session);
        } catch {
          // Already gone.
        }
      }
      release(entry);
      throw err;
    }
  }

  /** The logged-in session; after close() every operation answers "sealed". */
  get #live(): Handle {
    if (!this.#session) throw new KeydError('TRESOR_ERR_KEYD_SEALED');
    return this.#session;
  }

  /** Every root key version on the token, checked to have been born and kept inside it. */
  listRootKeys(): Map<number, RootKeyObject> {
    const { ck, lib } = this.#entry;
    const session = this.#live;
    const handles: Handle[] = [];
    try {
      lib.C_FindObjectsInit(session, [
        { type: ck.CKA_CLASS, value: ck.CKO_SECRET_KEY },
        { type: ck.CKA_TOKEN, value: true },
      ]);
      try {
        for (
          let batch = lib.C_FindObjects(session, 64);
          batch.length > 0;
          batch = lib.C_FindObjects(session, 64)
        ) {
          handles.push(...batch);
        }
      } finally {
        lib.C_FindObjectsFinal(session);
      }
    } catch (err) {
      throw tokenFailure(err, 'list its keys');
    }
    const keys = new Map<number, RootKeyObject>();
    for (const handle of handles) {
      let attrs: Pkcs11Js.AttributeResult[];
      try {
        attrs = lib.C_GetAttributeValue(session, handle, [
          { type: ck.CKA_LABEL },
          { type: ck.CKA_ID },
          { type: ck.CKA_KEY_TYPE },
          { type: ck.CKA_VALUE_LEN },
          { type: ck.CKA_SENSITIVE },
          { type: ck.CKA_EXTRACTABLE },
          { type: ck.CKA_ALWAYS_SENSITIVE },
          { type: ck.CKA_NEVER_EXTRACTABLE },
          { type: ck.CKA_LOCAL },
        ]);
      } catch (err) {
        throw tokenFailure(err, 'read key attributes');
      }
      const value = (type: number): Buffer => attrs.find((a) => a.type === type)?.value ?? Buffer.alloc(0);
      const flag = (type: number): boolean => value(type)[0] === 1;
      const label = value(ck.CKA_LABEL).toString('utf8');
      if (!label.startsWith(ROOT_KEY_LABEL_PREFIX)) continue;
      const version = Number(LABEL_PATTERN.exec(label)?.[1] ?? Number.NaN);
      const [idKey, createdAt = ''] = value(ck.CKA_ID).toString('ascii').split('@');
      if (
        !Number.isSafeInteger(version) ||
        idKey !== rootKeyId(version) ||
        Number.isNaN(Date.parse(createdAt))
      ) {
        throw new KeydError(
          'TRESOR_ERR_SEAL_CORRUPT',
          `token key "${label}" does not follow the root key convention`,
        );
      }
      const bornInside =
        flag(ck.CKA_LOCAL) &&
        flag(ck.CKA_SENSITIVE) &&
        flag(ck.CKA_ALWAYS_SENSITIVE) &&
        flag(ck.CKA_NEVER_EXTRACTABLE) &&
        !flag(ck.CKA_EXTRACTABLE);
      if (
        !bornInside ||
        readUlong(value(ck.CKA_KEY_TYPE)) !== ck.CKK_AES ||
        readUlong(value(ck.CKA_VALUE_LEN)) !== ROOT_KEY_BYTES
      ) {
        throw new KeydError(
          'TRESOR_ERR_SEAL_CORRUPT',
          `token key "${label}" is not a non-extractable AES-256 key generated inside the token; refusing it`,
        );
      }
      if (keys.has(version)) {
        throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', `the token holds two keys labelled "${label}"`);
      }
      keys.set(version, { version, createdAt, handle });
    }
    return keys;
  }

  /** Generates root key version `version` inside the token: sensitive, never extractable, persistent. */
  generateRootKey(version: number): RootKeyObject {
    const { ck, lib } = this.#entry;
    const createdAt = new Date().toISOString();
    try {
      const handle = lib.C_GenerateKey(this.#live, { mechanism: ck.CKM_AES_KEY_GEN }, [
        { type: ck.CKA_CLASS, value: ck.CKO_SECRET_KEY },
        { type: ck.CKA_KEY_TYPE, value: ck.CKK_AES },
        { type: ck.CKA_VALUE_LEN, value: ROOT_KEY_BYTES },
        { type: ck.CKA_TOKEN, value: true },
        { type: ck.CKA_PRIVATE, value: true },
        { type: ck.CKA_SENSITIVE, value: true },
        { type: ck.CKA_EXTRACTABLE, value: false },
        { type: ck.CKA_ENCRYPT, value: true },
        { type: ck.CKA_DECRYPT, value: true },
        { type: ck.CKA_WRAP, value: false },
        { type: ck.CKA_UNWRAP, value: false },
        { type: ck.CKA_SIGN, value: false },
        { type: ck.CKA_VERIFY, value: false },
        { type: ck.CKA_DERIVE, value: false },
        { type: ck.CKA_MODIFIABLE, value: false },
        { type: ck.CKA_COPYABLE, value: false },
        { type: ck.CKA_LABEL, value: `${ROOT_KEY_LABEL_PREFIX}${version}` },
        { type: ck.CKA_ID, value: Buffer.from(`${rootKeyId(version)}@${createdAt}`, 'ascii') },
      ]);
      return { version, createdAt, handle };
    } catch (err) {
      throw tokenFailure(err, 'generate a root key');
    }
  }

  destroy(handle: Handle): void {
    try {
      this.#entry.lib.C_DestroyObject(this.#live, handle);
    } catch (err) {
      throw tokenFailure(err, 'destroy a root key');
    }
  }

  /**
   * One AES-GCM operation in its own short session: the login is per token, so the session is
   * already authorised, and a failed operation cannot leave the long-lived session stuck mid-operation.
   */
  gcm(direction: 'encrypt' | 'decrypt', key: Handle, iv: Buffer, aad: Buffer, input: Buffer): Buffer {
    const { ck, lib } = this.#entry;
    if (!this.#session) throw new KeydError('TRESOR_ERR_KEYD_SEALED');
    const params: Pkcs11Js.AesGCM = {
      type: ck.CK_PARAMS_AES_GCM,
      iv,
      ivBits: iv.length * 8,
      aad,
      tagBits: TAG_BYTES * 8,
    };
    const mechanism: Pkcs11Js.Mechanism = { mechanism: ck.CKM_AES_GCM, parameter: params };
    let session: Handle;
    // Decrypting, the output is a key: memory of its own, wiped here unless it is returned whole.
    const output = Buffer.alloc(direction === 'encrypt' ? input.length + TAG_BYTES : input.length);
    try {
      session = lib.C_OpenSession(this.#slot, ck.CKF_SERIAL_SESSION);
    } catch (err) {
      throw tokenFailure(err, 'open a session');
    }
    try {
      if (direction === 'encrypt') {
        lib.C_EncryptInit(session, mechanism, key);
        return lib.C_Encrypt(session, input, output);
      }
      lib.C_DecryptInit(session, mechanism, key);
      const plaintext = lib.C_Decrypt(session, input, output);
      if (plaintext.length === output.length) return plaintext;
      const exact = secretCopy(plaintext);
      wipe(output);
      return exact;
    } catch (err) {
      wipe(output);
      const code = ckrCode(err);
      if (
        direction === 'decrypt' &&
        (code === ck.CKR_ENCRYPTED_DATA_INVALID ||
          code === ck.CKR_ENCRYPTED_DATA_LEN_RANGE ||
          code === ck.CKR_GENERAL_ERROR ||
          code === CKR_AEAD_DECRYPT_FAILED)
      ) {
        throw new CryptoError(
          'TRESOR_ERR_DECRYPT_FAILED',
          'ciphertext does not authenticate: wrong key, wrong context, or tampered',
        );
      }
      throw tokenFailure(err, direction);
    } finally {
      try {
        lib.C_CloseSession(session);
      } catch {
        // Closing is best effort; the module's finalisation closes every session anyway.
      }
    }
  }

  /** Logs out and lets go of the module. Idempotent. */
  close(): void {
    const session = this.#session;
    if (!session) return;
    this.#session = undefined;
    const { lib } = this.#entry;
    try {
      lib.C_Logout(session);
    } catch {
      // Already logged out (e.g. the token was removed).
    }
    try {
      lib.C_CloseSession(session);
    } catch {
      // Already closed.
    }
    release(this.#entry);
  }
}

function findSlot({ lib }: LoadedLibrary, config: Pkcs11Config): Handle {
  let matches: Handle[];
  try {
    const slots = lib.C_GetSlotList(true);
    matches =
      config.slot !== undefined
        ? slots.filter((s) => slotId(s) === config.slot)
        : slots.filter((s) => lib.C_GetTokenInfo(s).label.trimEnd() === config.tokenLabel);
  } catch (err) {
    throw tokenFailure(err, 'list its slots');
  }
  const name = config.slot !== undefined ? `in slot ${config.slot}` : `labelled "${config.tokenLabel}"`;
  if (matches.length === 0) throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `no PKCS#11 token ${name}`);
  if (matches.length > 1) {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `several PKCS#11 tokens ${name}: name the slot instead`);
  }
  return matches[0] as Handle;
}

function loginFailure(ck: Pkcs11Binding, err: unknown): Error {
  switch (ckrCode(err)) {
    case ck.CKR_PIN_INCORRECT:
    case ck.CKR_PIN_INVALID:
    case ck.CKR_PIN_LEN_RANGE:
      return new KeydError('TRESOR_ERR_UNSEAL_FAILED', 'the token PIN is wrong');
    case ck.CKR_PIN_LOCKED:
      return new KeydError(
        'TRESOR_ERR_UNSEAL_FAILED',
        'the token PIN is locked: its security officer must reset it',
      );
    case ck.CKR_PIN_EXPIRED:
      return new KeydError('TRESOR_ERR_UNSEAL_FAILED', 'the token PIN has expired');
    case ck.CKR_USER_ALREADY_LOGGED_IN:
      // Accepting this would skip the PIN check: the login belongs to another provider in this process.
      return new KeydError(
        'TRESOR_ERR_UNSEAL_FAILED',
        'the token is already logged in by another provider in this process; seal that one first',
      );
    case ck.CKR_USER_PIN_NOT_INITIALIZED:
      return new KeydError('TRESOR_ERR_CONFIG_INVALID', 'the token has no user PIN yet');
    default:
      return tokenFailure(err, 'log in');
  }
}

function checkConfig(config: Pkcs11Config): void {
  const byLabel = typeof config.tokenLabel === 'string' && config.tokenLabel.length > 0;
  const bySlot = Number.isSafeInteger(config.slot) && (config.slot as number) >= 0;
  if (byLabel === bySlot) {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'pkcs11 needs exactly one of tokenLabel or slot');
  }
  if (config.library !== undefined && (typeof config.library !== 'string' || config.library.length === 0)) {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'pkcs11 library must be a path');
  }
}

function envelopeHeader(keyId: string): Buffer {
  const id = Buffer.from(checkKeyId(keyId), 'ascii');
  return Buffer.concat([Buffer.of(ENVELOPE_MAGIC, FORMAT_AES_256_GCM, id.length), id]);
}

function parseRootKeyId(keyId: string): number {
  const m = ROOT_KEY_ID_PATTERN.exec(keyId);
  if (!m?.[1]) throw new KeydError('TRESOR_ERR_KEY_ID_UNKNOWN', 'envelope is not wrapped by a root key');
  return Number(m[1]);
}

// ---- the keyring and the provider

class Pkcs11Keyring implements RootKeyring {
  readonly provider = 'pkcs11' as const;
  readonly #token: Token;
  #keys: Map<number, RootKeyObject>;

  constructor(token: Token, keys: Map<number, RootKeyObject>) {
    this.#token = token;
    this.#keys = keys;
  }

  #activeKey(): RootKeyObject {
    const active = this.#keys.get(Math.max(...this.#keys.keys()));
    if (!active) throw new KeydError('TRESOR_ERR_KEYD_SEALED');
    return active;
  }

  activeVersion(): number {
    return this.#activeKey().version;
  }

  versions(): RootKeyVersion[] {
    const active = this.#activeKey().version;
    return [...this.#keys.values()]
      .sort((a, b) => a.version - b.version)
      .map(({ version, createdAt }) => ({
        version,
        createdAt,
        state: version === active ? 'active' : 'decrypt-only',
      }));
  }

  wrap(plaintext: Uint8Array, purpose: string, context: AadContext): Buffer {
    if (plaintext.length === 0) throw new KeydError('TRESOR_ERR_REQUEST_INVALID', 'nothing to wrap');
    const key = this.#activeKey();
    const header = envelopeHeader(rootKeyId(key.version));
    const aad = Buffer.concat([header, encodeAad(purpose, context)]);
    const nonce = randomBytes(NONCE_BYTES);
    // A view, not a copy: the caller wipes its plaintext and no stray copy should outlive it.
    const input = Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
    const sealed = this.#token.gcm('encrypt', key.handle, nonce, aad, input);
    return Buffer.concat([header, nonce, sealed]);
  }

  unwrap(envelope: Uint8Array, purpose: string, context: AadContext): Buffer {
    const { keyId, headerLength } = readEnvelopeHeader(envelope);
    const version = parseRootKeyId(keyId);
    if (this.#keys.size === 0) throw new KeydError('TRESOR_ERR_KEYD_SEALED');
    const key = this.#keys.get(version);
    if (!key) {
      throw new KeydError(
        'TRESOR_ERR_KEY_VERSION_RETIRED',
        `root key version ${version} is retired or unknown`,
      );
    }
    const buf = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.byteLength);
    const header = buf.subarray(0, headerLength);
    const nonce = buf.subarray(headerLength, headerLength + NONCE_BYTES);
    const sealed = buf.subarray(headerLength + NONCE_BYTES); // ciphertext ‖ tag, as PKCS#11 GCM expects
    const aad = Buffer.concat([header, encodeAad(purpose, context)]);
    return this.#token.gcm('decrypt', key.handle, nonce, aad, sealed);
  }

  async addVersion(): Promise<number> {
    this.#keys = this.#token.listRootKeys(); // the token is the truth; re-read before numbering
    const next = Math.max(0, ...this.#keys.keys()) + 1;
    const key = this.#token.generateRootKey(next);
    this.#keys.set(next, key);
    return next;
  }

  async removeVersion(version: number): Promise<void> {
    const key = this.#keys.get(version);
    if (!key) {
      throw new KeydError('TRESOR_ERR_KEY_VERSION_RETIRED', `root key version ${version} is already retired`);
    }
    if (version === this.#activeKey().version) throw new KeydError('TRESOR_ERR_KEY_VERSION_ACTIVE');
    this.#token.destroy(key.handle);
    this.#keys.delete(version);
  }

  close(): void {
    this.#keys = new Map();
    this.#token.close();
  }
}

/** Generates root key version 1 on a token that holds none yet. Needs the user PIN in `config.pin`. */
export async function initPkcs11(config: Pkcs11Config): Promise<void> {
  checkConfig(config);
  if (!config.pin) throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'pkcs11 init needs the token user PIN');
  const token = await Token.open(config, config.pin);
  try {
    if (token.listRootKeys().size > 0) {
      throw new KeydError('TRESOR_ERR_ALREADY_INITIALISED', 'the token already holds Tresor root keys');
    }
    token.generateRootKey(1);
  } finally {
    token.close();
  }
}

export class Pkcs11Provider implements RootKeyProvider {
  readonly kind = 'pkcs11' as const;
  readonly #config: Pkcs11Config;
  #keyring: Pkcs11Keyring | undefined;
  #unsealing: Promise<SealStatus> | undefined;
  /** Root keys are private objects, visible only after login: assume initialised until a login shows none. */
  #initialised = true;

  constructor(config: Pkcs11Config) {
    checkConfig(config);
    this.#config = { ...config };
  }

  status(): SealStatus {
    return { provider: this.kind, initialised: this.#initialised, sealed: this.#keyring === undefined };
  }

  /** Logs in with `pin`, or with the configured PIN when `pin` is empty. Concurrent calls share one login. */
  unseal(pin: string): Promise<SealStatus> {
    if (this.#keyring) return Promise.resolve(this.status());
    this.#unsealing ??= this.#login(pin || this.#config.pin || '').finally(() => {
      this.#unsealing = undefined;
    });
    return this.#unsealing;
  }

  async #login(pin: string): Promise<SealStatus> {
    if (pin.length === 0) {
      throw new KeydError('TRESOR_ERR_UNSEAL_FAILED', 'the token PIN is needed to unseal');
    }
    const token = await Token.open(this.#config, pin);
    try {
      const keys = token.listRootKeys();
      this.#initialised = keys.size > 0;
      if (!this.#initialised) {
        throw new KeydError(
          'TRESOR_ERR_NOT_INITIALISED',
          'the token holds no Tresor root key: run `tresor keyd init`',
        );
      }
      this.#keyring = new Pkcs11Keyring(token, keys);
    } catch (err) {
      token.close();
      throw err;
    }
    return this.status();
  }

  keyring(): RootKeyring | undefined {
    return this.#keyring;
  }

  seal(): void {
    this.#keyring?.close();
    this.#keyring = undefined;
  }
}
