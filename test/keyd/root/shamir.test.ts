import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { KEYRING_FILE } from '../../../src/keyd/root/dev-file.ts';
import { initShamir, ShamirProvider } from '../../../src/keyd/root/shamir.ts';

const SHARE_TEXT = /^tresor-share-v1-([0-9a-f]{16})-([A-Za-z0-9_-]{44})-([0-9a-f]{8})$/;

function hasCode(code: string, message?: RegExp) {
  return (err: unknown): boolean => {
    assert.equal((err as { code?: string }).code, code, (err as Error).message);
    if (message) assert.match((err as Error).message, message);
    return true;
  };
}

/** Re-frames share bytes with a valid checksum, as a forger who read the format would. */
function frame(keyringId: string, bytes: Buffer): string {
  const body = `tresor-share-v1-${keyringId}-${bytes.toString('base64url')}`;
  return `${body}-${createHash('sha256').update(body).digest().subarray(0, 4).toString('hex')}`;
}

function parse(share: string): { id: string; bytes: Buffer } {
  const m = SHARE_TEXT.exec(share);
  assert.ok(m?.[1] && m[2]);
  return { id: m[1], bytes: Buffer.from(m[2], 'base64url') };
}

describe('shamir provider', () => {
  let dir: string;
  let shares: string[];
  let provider: ShamirProvider;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-shamir-'));
    shares = await initShamir(dir, { shares: 5, threshold: 3 });
    provider = new ShamirProvider(dir);
  });

  afterEach(() => {
    provider.seal();
    rmSync(dir, { recursive: true, force: true });
  });

  it('returns N distinct shares in the tresor-share-v1 format, all naming the keyring', () => {
    assert.equal(shares.length, 5);
    assert.equal(new Set(shares).size, 5);
    const { params } = JSON.parse(readFileSync(join(dir, KEYRING_FILE), 'utf8'));
    assert.deepEqual({ shares: params.shares, threshold: params.threshold }, { shares: 5, threshold: 3 });
    for (const share of shares) {
      assert.equal(parse(share).id, params.id);
      assert.equal(parse(share).bytes.length, 33);
    }
  });

  it('stores no share in keyd’s folder', () => {
    const file = readFileSync(join(dir, KEYRING_FILE), 'utf8');
    for (const share of shares) {
      assert.equal(file.includes(share), false);
      assert.equal(file.includes(parse(share).bytes.toString('base64url').slice(0, 40)), false);
    }
  });

  it('validates 2 <= threshold <= shares <= 255', async () => {
    const other = mkdtempSync(join(tmpdir(), 'tresor-shamir-'));
    try {
      for (const bad of [
        { shares: 1, threshold: 1 },
        { shares: 3, threshold: 1 },
        { shares: 2, threshold: 3 },
        { shares: 256, threshold: 2 },
        { shares: 3.5, threshold: 2 },
      ]) {
        await assert.rejects(initShamir(other, bad), hasCode('TRESOR_ERR_CONFIG_INVALID'));
        assert.equal(existsSync(join(other, KEYRING_FILE)), false);
      }
      assert.equal((await initShamir(other, { shares: 255, threshold: 255 })).length, 255);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('refuses to initialise twice', async () => {
    await assert.rejects(
      initShamir(dir, { shares: 3, threshold: 2 }),
      hasCode('TRESOR_ERR_ALREADY_INITIALISED'),
    );
  });

  it('stays sealed with fewer shares than the threshold and reports progress', async () => {
    assert.deepEqual(provider.status().progress, { submitted: 0, threshold: 3 });
    await provider.unseal(shares[0] ?? '');
    const status = await provider.unseal(shares[3] ?? '');
    assert.deepEqual(status, {
      provider: 'shamir',
      initialised: true,
      sealed: true,
      progress: { submitted: 2, threshold: 3 },
    });
    assert.equal(provider.keyring(), undefined);
  });

  it('unseals with any threshold-sized subset of the shares', async () => {
    for (const subset of [
      [0, 1, 2],
      [4, 2, 0],
      [1, 3, 4],
    ]) {
      const p = new ShamirProvider(dir);
      for (const i of subset) await p.unseal(shares[i] ?? '');
      assert.equal(p.status().sealed, false, `subset ${subset}`);
      assert.ok(p.keyring());
      p.seal();
    }
  });

  it('accepts a share with surrounding whitespace from copy and paste', async () => {
    await provider.unseal(`  ${shares[0]}\n`);
    assert.equal(provider.status().progress?.submitted, 1);
  });

  it('refuses a malformed share without counting it', async () => {
    await provider.unseal(shares[0] ?? '');
    const good = shares[1] ?? '';
    for (const bad of [
      '',
      'hello',
      good.replace('tresor-share-v1', 'tresor-share-v2'),
      `${good}0`,
      good.slice(0, -1),
    ]) {
      await assert.rejects(provider.unseal(bad), hasCode('TRESOR_ERR_SHARE_INVALID', /malformed/));
    }
    assert.equal(provider.status().progress?.submitted, 1);
  });

  it('refuses a mistyped share by its checksum, without counting it', async () => {
    const share = shares[0] ?? '';
    const at = share.length - 20; // inside the share bytes
    const typo = `${share.slice(0, at)}${share[at] === 'A' ? 'B' : 'A'}${share.slice(at + 1)}`;
    await assert.rejects(provider.unseal(typo), hasCode('TRESOR_ERR_SHARE_INVALID', /checksum/));
    assert.equal(provider.status().progress?.submitted, 0);
  });

  it('refuses a share of another keyring, without counting it', async () => {
    const other = mkdtempSync(join(tmpdir(), 'tresor-shamir-'));
    try {
      const foreign = await initShamir(other, { shares: 3, threshold: 2 });
      await assert.rejects(
        provider.unseal(foreign[0] ?? ''),
        hasCode('TRESOR_ERR_SHARE_INVALID', /another keyring/),
      );
      assert.equal(provider.status().progress?.submitted, 0);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('refuses a duplicate share, without counting it', async () => {
    await provider.unseal(shares[2] ?? '');
    await assert.rejects(provider.unseal(shares[2] ?? ''), hasCode('TRESOR_ERR_SHARE_INVALID', /duplicate/));
    assert.equal(provider.status().progress?.submitted, 1);
  });

  it('refuses a forged share that reuses an accepted share’s index as a duplicate', async () => {
    await provider.unseal(shares[0] ?? '');
    const { id, bytes } = parse(shares[0] ?? '');
    bytes[0] = (bytes[0] ?? 0) ^ 0xff;
    await assert.rejects(provider.unseal(frame(id, bytes)), hasCode('TRESOR_ERR_SHARE_INVALID', /duplicate/));
  });

  it('refuses a share with index 0, which would be the secret itself', async () => {
    const { id, bytes } = parse(shares[0] ?? '');
    bytes[32] = 0;
    await assert.rejects(provider.unseal(frame(id, bytes)), hasCode('TRESOR_ERR_SHARE_INVALID', /malformed/));
  });

  it('refuses a forged share: stays sealed, resets progress, then unseals with genuine shares', async () => {
    const { id, bytes } = parse(shares[4] ?? '');
    bytes[5] = (bytes[5] ?? 0) ^ 0x01; // a valid-looking share with one wrong byte
    await provider.unseal(shares[0] ?? '');
    await provider.unseal(frame(id, bytes));
    await assert.rejects(
      provider.unseal(shares[1] ?? ''),
      hasCode('TRESOR_ERR_UNSEAL_FAILED', /forged or corrupt/),
    );
    assert.equal(provider.status().sealed, true);
    assert.equal(provider.keyring(), undefined);
    assert.deepEqual(provider.status().progress, { submitted: 0, threshold: 3 });
    for (const share of shares.slice(0, 3)) await provider.unseal(share);
    assert.equal(provider.status().sealed, false);
  });

  it('forgets partial shares when sealed', async () => {
    await provider.unseal(shares[0] ?? '');
    await provider.unseal(shares[1] ?? '');
    provider.seal();
    assert.deepEqual(provider.status().progress, { submitted: 0, threshold: 3 });
    await provider.unseal(shares[2] ?? '');
    assert.equal(provider.status().sealed, true);
  });

  it('fails to open when the threshold in the file is edited', async () => {
    const path = join(dir, KEYRING_FILE);
    const file = JSON.parse(readFileSync(path, 'utf8'));
    file.params.threshold = 2;
    writeFileSync(path, JSON.stringify(file));
    await provider.unseal(shares[0] ?? '');
    await assert.rejects(provider.unseal(shares[1] ?? ''), hasCode('TRESOR_ERR_UNSEAL_FAILED'));
    file.params.threshold = 4;
    writeFileSync(path, JSON.stringify(file));
    const p = new ShamirProvider(dir);
    for (const share of shares.slice(0, 3)) await p.unseal(share);
    await assert.rejects(p.unseal(shares[3] ?? ''), hasCode('TRESOR_ERR_UNSEAL_FAILED'));
  });

  it('refuses malformed parameters in the file with TRESOR_ERR_SEAL_CORRUPT', async () => {
    const path = join(dir, KEYRING_FILE);
    const file = JSON.parse(readFileSync(path, 'utf8'));
    file.params.threshold = 1;
    writeFileSync(path, JSON.stringify(file));
    await assert.rejects(provider.unseal(shares[0] ?? ''), hasCode('TRESOR_ERR_SEAL_CORRUPT'));
  });
});
