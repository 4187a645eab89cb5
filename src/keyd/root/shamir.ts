/**
 * Shamir provider: the 32-byte seal key of the sealed root keyring is split into N shares, any M of
 * which rebuild it (Shamir, "How to share a secret", 1979), so no single operator can unseal keyd.
 * Splitting and combining come from `shamir-secret-sharing` (audited, zero dependencies); this file
 * only frames the shares and counts them. The shares are printed once at init and never stored.
 *
 * Share text: `tresor-share-v1-<keyring id>-<base64url share>-<checksum>`
 *   keyring id  16 hex digits, random per keyring, also in the file's (AAD-bound) parameters
 *   share       33 bytes: 32 bytes of polynomial values, then the share's x coordinate (1–255)
 *   checksum    hex of the first 4 bytes of SHA-256 over everything before `-<checksum>`
 * The checksum catches a mistyped share at once, before it spoils a combination; it is not a MAC —
 * a forged share passes it and is caught when the combined key fails the keyring's AES-GCM tag.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { combine, split } from 'shamir-secret-sharing';
import { constantTimeEqual, KEY_BYTES, secretFromText, wipe } from '../../crypto/index.ts';
import { KeydError } from '../errors.ts';
import { KEYRING_FILE } from './dev-file.ts';
import { readKeyringFile, SealedFileKeyring, type SealParams } from './sealed-keyring.ts';
import type { RootKeyProvider, RootKeyring, SealStatus } from './types.ts';

const SHARE_PREFIX = 'tresor-share-v1';
const SHARE_BYTES = KEY_BYTES + 1;
const SHARE_PATTERN = /^tresor-share-v1-([0-9a-f]{16})-([A-Za-z0-9_-]{44})-([0-9a-f]{8})$/;
const KEYRING_ID_PATTERN = /^[0-9a-f]{16}$/;
/** GF(2^8) gives at most 255 distinct non-zero x coordinates. */
const MAX_SHARES = 255;

export interface ShamirInitOptions {
  shares: number;
  threshold: number;
}

interface ShamirParams {
  shares: number;
  threshold: number;
  id: string;
}

function checkCounts(shares: unknown, threshold: unknown): boolean {
  return (
    Number.isSafeInteger(shares) &&
    Number.isSafeInteger(threshold) &&
    (threshold as number) >= 2 &&
    (threshold as number) <= (shares as number) &&
    (shares as number) <= MAX_SHARES
  );
}

function readParams(params: SealParams): ShamirParams {
  const { shares, threshold, id } = params;
  if (typeof id !== 'string' || !KEYRING_ID_PATTERN.test(id) || !checkCounts(shares, threshold)) {
    throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'shamir keyring parameters are malformed');
  }
  return { shares: shares as number, threshold: threshold as number, id };
}

/** The library checks `x.constructor === Uint8Array`, so Buffers are passed as plain views. */
function bytesView(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function checksum(body: string): string {
  return createHash('sha256').update(body, 'utf8').digest().subarray(0, 4).toString('hex');
}

function encodeShare(keyringId: string, share: Uint8Array): string {
  const body = `${SHARE_PREFIX}-${keyringId}-${Buffer.from(share).toString('base64url')}`;
  return `${body}-${checksum(body)}`;
}

/** Parses one share text; every refusal names its reason and none reveals share bytes. */
function decodeShare(text: string, keyringId: string): Buffer {
  const trimmed = text.trim();
  const m = SHARE_PATTERN.exec(trimmed);
  if (!m?.[1] || !m[2] || !m[3]) {
    throw new KeydError(
      'TRESOR_ERR_SHARE_INVALID',
      `malformed share: expected ${SHARE_PREFIX}-<id>-<share>-<checksum>`,
    );
  }
  const body = trimmed.slice(0, -(m[3].length + 1));
  if (!constantTimeEqual(Buffer.from(checksum(body), 'ascii'), Buffer.from(m[3], 'ascii'))) {
    throw new KeydError(
      'TRESOR_ERR_SHARE_INVALID',
      'share checksum does not match: the share was mistyped or damaged',
    );
  }
  if (m[1] !== keyringId) {
    throw new KeydError(
      'TRESOR_ERR_SHARE_INVALID',
      `share belongs to another keyring (${m[1]}, expected ${keyringId})`,
    );
  }
  const share = secretFromText(m[2], 'base64url');
  if (share.length !== SHARE_BYTES || share[SHARE_BYTES - 1] === 0) {
    wipe(share);
    throw new KeydError('TRESOR_ERR_SHARE_INVALID', 'malformed share: wrong length or index');
  }
  return share;
}

/**
 * Creates the Shamir-sealed keyring in `dir` and returns the share texts — the only time they
 * exist outside the operators' hands. Hand one to each custodian; keyd keeps none.
 */
export async function initShamir(dir: string, { shares, threshold }: ShamirInitOptions): Promise<string[]> {
  if (!checkCounts(shares, threshold)) {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      `shamir needs 2 <= threshold <= shares <= ${MAX_SHARES}`,
    );
  }
  const path = join(dir, KEYRING_FILE);
  if (existsSync(path)) {
    throw new KeydError('TRESOR_ERR_ALREADY_INITIALISED', 'keyd folder is already initialised');
  }
  const id = randomBytes(8).toString('hex');
  const sealKey = randomBytes(KEY_BYTES);
  let parts: Uint8Array[] = [];
  try {
    parts = await split(bytesView(sealKey), shares, threshold);
    SealedFileKeyring.create(path, 'shamir', { shares, threshold, id }, sealKey).close();
    return parts.map((part) => encodeShare(id, part));
  } finally {
    wipe(sealKey, ...parts);
  }
}

export class ShamirProvider implements RootKeyProvider {
  readonly kind = 'shamir' as const;
  readonly #path: string;
  #keyring: RootKeyring | undefined;
  /** Shares accepted since the last seal or failed combination. */
  #shares: Buffer[] = [];
  #threshold: number | undefined;

  constructor(dir: string) {
    this.#path = join(dir, KEYRING_FILE);
  }

  status(): SealStatus {
    const initialised = existsSync(this.#path);
    const status: SealStatus = { provider: this.kind, initialised, sealed: this.#keyring === undefined };
    if (initialised && this.#threshold === undefined) {
      try {
        this.#threshold = readParams(readKeyringFile(this.#path).params).threshold;
      } catch {
        // A corrupt file is reported by unseal(); status stays answerable.
      }
    }
    if (this.#threshold !== undefined) {
      status.progress = { submitted: this.#shares.length, threshold: this.#threshold };
    }
    return status;
  }

  /** Accepts one share; on the threshold-th valid share, combines them and opens the keyring. */
  async unseal(shareText: string): Promise<SealStatus> {
    if (this.#keyring) return this.status();
    const file = readKeyringFile(this.#path);
    if (file.provider !== this.kind) {
      throw new KeydError(
        'TRESOR_ERR_CONFIG_INVALID',
        `the root keyring was sealed by the ${file.provider} provider`,
      );
    }
    const params = readParams(file.params);
    this.#threshold = params.threshold;
    const share = decodeShare(shareText, params.id);
    const index = share[SHARE_BYTES - 1];
    if (this.#shares.some((s) => s[SHARE_BYTES - 1] === index)) {
      wipe(share);
      throw new KeydError(
        'TRESOR_ERR_SHARE_INVALID',
        'duplicate share: a share with this index was already submitted',
      );
    }
    this.#shares.push(share);
    if (this.#shares.length < params.threshold) return this.status();

    // Take the batch before awaiting, so a share arriving meanwhile starts a fresh count.
    const batch = this.#shares;
    this.#shares = [];
    let sealKey: Buffer | undefined;
    let keyring: RootKeyring;
    try {
      const combined = await combine(batch.map(bytesView));
      sealKey = Buffer.from(combined.buffer, combined.byteOffset, combined.byteLength); // a view: wiped below
      keyring = SealedFileKeyring.open(this.#path, sealKey);
    } catch (err) {
      if (err instanceof KeydError && err.code !== 'TRESOR_ERR_UNSEAL_FAILED') throw err;
      throw new KeydError(
        'TRESOR_ERR_UNSEAL_FAILED',
        'shares do not reconstruct the seal key: at least one is forged or corrupt (or the keyring file was altered)',
      );
    } finally {
      wipe(sealKey, ...batch);
    }
    if (this.#keyring) keyring.close();
    else this.#keyring = keyring;
    this.#wipeShares();
    return this.status();
  }

  keyring(): RootKeyring | undefined {
    return this.#keyring;
  }

  seal(): void {
    this.#keyring?.close();
    this.#keyring = undefined;
    this.#wipeShares();
  }

  #wipeShares(): void {
    wipe(...this.#shares);
    this.#shares = [];
  }
}
