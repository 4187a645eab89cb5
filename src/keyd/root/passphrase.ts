/**
 * Passphrase provider: an operator types one passphrase at each keyd start; scrypt (RFC 7914)
 * stretches it into the 32-byte seal key of the sealed root keyring. Nothing secret is stored:
 * the file holds only the KDF parameters, and they are bound into the keyring's AAD, so an edited
 * salt or cost makes the file fail to open instead of opening weakly. The keyring's AES-GCM tag is
 * the passphrase check — there is no separate verifier for an attacker to test guesses against offline
 * more cheaply than by running scrypt.
 *
 * Costs: N=2^17, r=8, p=1 (128 MiB; the OWASP Password Storage Cheat Sheet's scrypt minimum; RFC 7914
 * §2 for r=8, p=1). Tests may lower N, never below 2^14 (the scrypt paper's interactive-login cost).
 * Salt: 32 random bytes (NIST SP 800-132 §5.1 asks for at least 128 bits). Passphrases are
 * NFKC-normalised before hashing (NIST SP 800-63B §5.1.1.2) and must be at least 12 characters long.
 */
import { randomBytes, scrypt as scryptCallback } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KEY_BYTES, secretFromText, wipe } from '../../crypto/index.ts';
import { KeydError } from '../errors.ts';
import { KEYRING_FILE } from './dev-file.ts';
import { readKeyringFile, SealedFileKeyring, type SealParams } from './sealed-keyring.ts';
import type { RootKeyProvider, RootKeyring, SealStatus } from './types.ts';

const scrypt = promisify(scryptCallback) as (
  password: Uint8Array,
  salt: Uint8Array,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

export const MIN_PASSPHRASE_LENGTH = 12;
export const SCRYPT_DEFAULTS = { N: 2 ** 17, r: 8, p: 1 } as const;
const MIN_N = 2 ** 14;
/** Refuse parameters read from the file that would make keyd allocate more than 1 GiB. */
const MAX_SCRYPT_MEMORY = 2 ** 30;
const SALT_BYTES = 32;
const MIN_SALT_BYTES = 16;

export interface PassphraseInitOptions {
  /** scrypt cost N, a power of two >= 2^14. Lower than the default only in tests. */
  N?: number;
}

interface ScryptParams {
  salt: Buffer;
  N: number;
  r: number;
  p: number;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function checkCost({ N, r, p }: { N: number; r: number; p: number }): boolean {
  return (
    isPowerOfTwo(N) &&
    N >= MIN_N &&
    Number.isSafeInteger(r) &&
    r >= SCRYPT_DEFAULTS.r &&
    Number.isSafeInteger(p) &&
    p >= 1 &&
    p <= 16 &&
    128 * N * r <= MAX_SCRYPT_MEMORY
  );
}

/** Parses and bounds the public parameters before any work, so an edited file cannot exhaust memory. */
function readParams(params: SealParams): ScryptParams {
  const { kdf, salt, N, r, p } = params;
  if (
    kdf !== 'scrypt' ||
    typeof salt !== 'string' ||
    typeof N !== 'number' ||
    typeof r !== 'number' ||
    typeof p !== 'number'
  ) {
    throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'passphrase keyring parameters are malformed');
  }
  const saltBytes = Buffer.from(salt, 'base64');
  if (saltBytes.length < MIN_SALT_BYTES || saltBytes.toString('base64') !== salt || !checkCost({ N, r, p })) {
    throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'passphrase keyring parameters are out of bounds');
  }
  return { salt: saltBytes, N, r, p };
}

/** scrypt(NFKC(passphrase)); the caller wipes the result. */
async function deriveSealKey(passphrase: string, { salt, N, r, p }: ScryptParams): Promise<Buffer> {
  const secret = secretFromText(passphrase.normalize('NFKC'), 'utf8');
  try {
    // maxmem: twice scrypt's 128·N·r working set, above Node's 32 MiB default.
    return await scrypt(secret, salt, KEY_BYTES, { N, r, p, maxmem: 256 * N * r });
  } finally {
    wipe(secret);
  }
}

/** Creates the passphrase-sealed keyring in `dir`, with root key version 1. */
export async function initPassphrase(
  dir: string,
  passphrase: string,
  opts: PassphraseInitOptions = {},
): Promise<void> {
  const path = join(dir, KEYRING_FILE);
  if (existsSync(path)) {
    throw new KeydError('TRESOR_ERR_ALREADY_INITIALISED', 'keyd folder is already initialised');
  }
  if ([...passphrase.normalize('NFKC')].length < MIN_PASSPHRASE_LENGTH) {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      `the passphrase must be at least ${MIN_PASSPHRASE_LENGTH} characters long`,
    );
  }
  const N = opts.N ?? SCRYPT_DEFAULTS.N;
  if (!checkCost({ N, r: SCRYPT_DEFAULTS.r, p: SCRYPT_DEFAULTS.p })) {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'scrypt N must be a power of two from 2^14 to 2^20');
  }
  const params: ScryptParams = {
    salt: randomBytes(SALT_BYTES),
    N,
    r: SCRYPT_DEFAULTS.r,
    p: SCRYPT_DEFAULTS.p,
  };
  const sealKey = await deriveSealKey(passphrase, params);
  try {
    SealedFileKeyring.create(
      path,
      'passphrase',
      { kdf: 'scrypt', salt: params.salt.toString('base64'), N: params.N, r: params.r, p: params.p },
      sealKey,
    ).close();
  } finally {
    wipe(sealKey);
  }
}

export class PassphraseProvider implements RootKeyProvider {
  readonly kind = 'passphrase' as const;
  readonly #path: string;
  #keyring: RootKeyring | undefined;

  constructor(dir: string) {
    this.#path = join(dir, KEYRING_FILE);
  }

  status(): SealStatus {
    return { provider: this.kind, initialised: existsSync(this.#path), sealed: this.#keyring === undefined };
  }

  async unseal(passphrase: string): Promise<SealStatus> {
    if (this.#keyring) return this.status();
    const file = readKeyringFile(this.#path);
    if (file.provider !== this.kind) {
      throw new KeydError(
        'TRESOR_ERR_CONFIG_INVALID',
        `the root keyring was sealed by the ${file.provider} provider`,
      );
    }
    const sealKey = await deriveSealKey(passphrase, readParams(file.params));
    let keyring: RootKeyring;
    try {
      keyring = SealedFileKeyring.open(this.#path, sealKey);
    } catch (err) {
      if (err instanceof KeydError && err.code === 'TRESOR_ERR_UNSEAL_FAILED') {
        throw new KeydError(
          'TRESOR_ERR_UNSEAL_FAILED',
          'the passphrase is wrong (or the keyring file was altered)',
        );
      }
      throw err;
    } finally {
      wipe(sealKey);
    }
    // Two concurrent unseals may both succeed: keep the first keyring, wipe the second.
    if (this.#keyring) keyring.close();
    else this.#keyring = keyring;
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
