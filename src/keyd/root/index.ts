/**
 * One entry point for keyd's root-key providers: pick one from the config, or initialise one.
 * keyd and the CLI import only this file, so adding a provider touches one switch here.
 */
import { KeydError } from '../errors.ts';
import { DevFileProvider, initDevFile } from './dev-file.ts';
import { initPassphrase, PassphraseProvider } from './passphrase.ts';
import { initPkcs11, type Pkcs11Config, Pkcs11Provider } from './pkcs11.ts';
import { initShamir, ShamirProvider } from './shamir.ts';
import type { RootKeyProvider, RootProviderKind } from './types.ts';

export { DEV_WARNING, DevFileProvider, devFileInitialised, initDevFile, KEYRING_FILE } from './dev-file.ts';
export {
  initPassphrase,
  MIN_PASSPHRASE_LENGTH,
  type PassphraseInitOptions,
  PassphraseProvider,
  SCRYPT_DEFAULTS,
} from './passphrase.ts';
export {
  DEFAULT_PKCS11_LIBRARY,
  initPkcs11,
  type Pkcs11Config,
  Pkcs11Provider,
  ROOT_KEY_LABEL_PREFIX,
} from './pkcs11.ts';
export { rootKeyId, SealedFileKeyring } from './sealed-keyring.ts';
export { initShamir, type ShamirInitOptions, ShamirProvider } from './shamir.ts';
export type { RootKeyProvider, RootKeyring, RootKeyVersion, RootProviderKind, SealStatus } from './types.ts';

export type RootProviderConfig =
  | { kind: 'dev-file'; dir: string }
  | { kind: 'passphrase'; dir: string }
  | { kind: 'shamir'; dir: string }
  | ({ kind: 'pkcs11' } & Pkcs11Config);

/** What init needs beyond the config: the one secret or split each provider is created with. */
export interface RootInitOptions {
  /** passphrase: the operator's passphrase (at least 12 characters). */
  passphrase?: string;
  /** passphrase: scrypt cost N; lower than the default only in tests. */
  scryptN?: number;
  /** shamir: how many shares to make, and how many it takes to unseal. */
  shares?: number;
  threshold?: number;
  /** pkcs11: the token user PIN, if not in the config. */
  pin?: string;
}

export interface RootInitResult {
  kind: RootProviderKind;
  /** shamir only: the share texts, shown once and stored nowhere. */
  shares?: string[];
}

function checkDir(dir: unknown): string {
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'the root key provider needs keyd’s folder');
  }
  return dir;
}

export function createRootKeyProvider(config: RootProviderConfig): RootKeyProvider {
  switch (config.kind) {
    case 'dev-file':
      return new DevFileProvider(checkDir(config.dir));
    case 'passphrase':
      return new PassphraseProvider(checkDir(config.dir));
    case 'shamir':
      return new ShamirProvider(checkDir(config.dir));
    case 'pkcs11': {
      const { kind: _kind, ...pkcs11 } = config;
      return new Pkcs11Provider(pkcs11);
    }
    default:
      throw new KeydError(
        'TRESOR_ERR_CONFIG_INVALID',
        `unknown root key provider "${(config as { kind?: unknown }).kind}"`,
      );
  }
}

/** Creates the provider's root keyring with version 1. Refuses to run twice (TRESOR_ERR_ALREADY_INITIALISED). */
export async function initRootKeyProvider(
  config: RootProviderConfig,
  options: RootInitOptions = {},
): Promise<RootInitResult> {
  switch (config.kind) {
    case 'dev-file':
      initDevFile(checkDir(config.dir));
      return { kind: config.kind };
    case 'passphrase':
      if (options.passphrase === undefined) {
        throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'passphrase init needs a passphrase');
      }
      await initPassphrase(
        checkDir(config.dir),
        options.passphrase,
        options.scryptN === undefined ? {} : { N: options.scryptN },
      );
      return { kind: config.kind };
    case 'shamir': {
      const { shares, threshold } = options;
      if (shares === undefined || threshold === undefined) {
        throw new KeydError(
          'TRESOR_ERR_CONFIG_INVALID',
          'shamir init needs the number of shares and the threshold',
        );
      }
      return { kind: config.kind, shares: await initShamir(checkDir(config.dir), { shares, threshold }) };
    }
    case 'pkcs11': {
      const { kind: _kind, ...pkcs11 } = config;
      await initPkcs11({ ...pkcs11, pin: options.pin ?? pkcs11.pin });
      return { kind: config.kind };
    }
    default:
      throw new KeydError(
        'TRESOR_ERR_CONFIG_INVALID',
        `unknown root key provider "${(config as { kind?: unknown }).kind}"`,
      );
  }
}
