/**
 * The key service's settings and their bounds. AES-GCM with random nonces allows 2^32 encryptions
 * per key (NIST SP 800-38D §8.3), so a tenant key version is rotated well before and refuses near
 * it; tenant keys have a cryptoperiod (NIST SP 800-57 Part 1 §5.3).
 */
import { KeydError } from './errors.ts';

/** NIST SP 800-38D §8.3: random 96-bit nonces allow at most 2^32 invocations per key. */
export const AES_GCM_RANDOM_NONCE_LIMIT = 2 ** 32;
export const DEFAULT_ROTATE_AT_ENCRYPTIONS = 2 ** 30;
export const DEFAULT_REFUSE_AT_ENCRYPTIONS = Math.floor(0.9 * AES_GCM_RANDOM_NONCE_LIMIT);
export const DEFAULT_TENANT_KEY_CRYPTOPERIOD_DAYS = 365;
export const DEFAULT_DESTROY_GRACE_SECONDS = 7 * 86400;
export const DEFAULT_MAINTENANCE_INTERVAL_SECONDS = 3600;

export interface KeyServiceConfig {
  /** Tenant key cryptoperiod (NIST SP 800-57 Part 1 §5.3); default 365. */
  tenantKeyCryptoperiodDays?: number;
  /** Grace before a scheduled destruction completes; default 7 days. */
  destroyGraceSeconds?: number;
  /** How often keyd runs maintenance; 0 = never on a timer (tests call runMaintenance). Default 3600. */
  maintenanceIntervalSeconds?: number;
  /** Encryptions after which the active tenant key version is rotated; default 2^30. */
  rotateAtEncryptions?: number;
  /** Encryptions after which a version refuses to wrap more keys; default 0.9 × 2^32, never above. */
  refuseAtEncryptions?: number;
}

/** A KeyServiceConfig with every default filled in and every bound checked. */
export interface KeyServiceSettings {
  cryptoperiodDays: number;
  destroyGraceSeconds: number;
  maintenanceIntervalSeconds: number;
  rotateAt: number;
  refuseAt: number;
}

export function checkKeyServiceConfig(config: KeyServiceConfig): KeyServiceSettings {
  const get = (name: keyof KeyServiceConfig, fallback: number, min: number, max: number): number => {
    const v = config[name] ?? fallback;
    if (!Number.isSafeInteger(v) || v < min || v > max) {
      throw new KeydError('TRESOR_ERR_CONFIG_INVALID', `${name} must be an integer from ${min} to ${max}`);
    }
    return v;
  };
  return {
    cryptoperiodDays: get('tenantKeyCryptoperiodDays', DEFAULT_TENANT_KEY_CRYPTOPERIOD_DAYS, 1, 3650),
    destroyGraceSeconds: get('destroyGraceSeconds', DEFAULT_DESTROY_GRACE_SECONDS, 0, 400 * 86400),
    maintenanceIntervalSeconds: get(
      'maintenanceIntervalSeconds',
      DEFAULT_MAINTENANCE_INTERVAL_SECONDS,
      0,
      7 * 86400,
    ),
    rotateAt: get('rotateAtEncryptions', DEFAULT_ROTATE_AT_ENCRYPTIONS, 1, AES_GCM_RANDOM_NONCE_LIMIT),
    refuseAt: get('refuseAtEncryptions', DEFAULT_REFUSE_AT_ENCRYPTIONS, 1, DEFAULT_REFUSE_AT_ENCRYPTIONS),
  };
}
