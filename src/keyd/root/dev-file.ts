/**
 * DEV ONLY: the seal key lies in a plain file next to the keyring. Anyone who can read keyd's
 * folder has the root key. `npm start` uses it so a newcomer needs no secret; keyd prints a loud
 * warning on every start with this provider, and production configs refuse it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { secretFromText, wipe } from '../../crypto/index.ts';
import { KeydError } from '../errors.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { SealedFileKeyring } from './sealed-keyring.ts';
import type { RootKeyProvider, RootKeyring, SealStatus } from './types.ts';

export const DEV_WARNING =
  '!!! keyd is using the DEV-ONLY plain root key file: anyone who reads the keyd folder can decrypt everything. Never use it in production. !!!';

export const KEYRING_FILE = 'root-keyring.sealed';
/** The dev-file provider's plain root key: never in a keyd backup (docs/backup.md). */
export const DEV_KEY_FILE = 'dev-root.key';

export function initDevFile(dir: string): void {
  const keyPath = join(dir, DEV_KEY_FILE);
  if (existsSync(keyPath) || existsSync(join(dir, KEYRING_FILE))) {
    throw new KeydError('TRESOR_ERR_ALREADY_INITIALISED', 'keyd folder is already initialised');
  }
  const sealKey = randomBytes(32);
  writeFileAtomic(keyPath, `${sealKey.toString('hex')}\n`);
  SealedFileKeyring.create(join(dir, KEYRING_FILE), 'dev-file', {}, sealKey).close();
  wipe(sealKey);
}

export function devFileInitialised(dir: string): boolean {
  return existsSync(join(dir, DEV_KEY_FILE)) && existsSync(join(dir, KEYRING_FILE));
}

export class DevFileProvider implements RootKeyProvider {
  readonly kind = 'dev-file' as const;
  readonly #dir: string;
  #keyring: RootKeyring | undefined;

  constructor(dir: string) {
    this.#dir = dir;
  }

  status(): SealStatus {
    return {
      provider: this.kind,
      initialised: devFileInitialised(this.#dir),
      sealed: this.#keyring === undefined,
    };
  }

  async unseal(_secret: string): Promise<SealStatus> {
    if (!this.#keyring) {
      if (!devFileInitialised(this.#dir)) throw new KeydError('TRESOR_ERR_NOT_INITIALISED');
      const hex = readFileSync(join(this.#dir, DEV_KEY_FILE), 'utf8').trim();
      if (!/^[0-9a-f]{64}$/.test(hex))
        throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'dev root key file is malformed');
      const sealKey = secretFromText(hex, 'hex');
      try {
        this.#keyring = SealedFileKeyring.open(join(this.#dir, KEYRING_FILE), sealKey);
      } finally {
        wipe(sealKey);
      }
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
