/**
 * Deletion certificates: RFC 8785 canonical bytes, signed by the real key service's
 * deletion-certificate key, verifiable with node:crypto and keyd's public key alone.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { KeyService } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import {
  backupsAgedOutBy,
  canonicalDeletionCertificate,
  DELETION_CERTIFICATE_TYPE,
  type DeletionCertificate,
  parseDeletionCertificate,
  signDeletionCertificate,
  verifyDeletionCertificate,
} from '../../src/vault/deletion-certificate.ts';

const ADMIN = { id: 'test', role: 'admin' } as const;
const SERVER = { id: 'unix:tresor-server', role: 'server' } as const;

const CERTIFICATE: DeletionCertificate = {
  type: DELETION_CERTIFICATE_TYPE,
  tenant: 'ten_0123456789abcdef01234567',
  tenantName: 'Zürich AG ✓',
  keyIdsDestroyed: ['tk.0011223344556677.v1', 'tk.0011223344556677.v2'],
  keydDestroyedAt: '2030-03-02T11:59:59.000Z',
  closedAt: '2030-03-02T12:00:00.000Z',
  backupsAgedOutBy: '2030-04-06',
  reason: 'contract end',
};

describe('deletion certificate', () => {
  let dir: string;
  let keyd: KeydService;
  let keys: KeyService;
  let publicKey: Buffer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-cert-'));
    const keydDir = join(dir, 'keyd');
    mkdirSync(keydDir, { mode: 0o700 });
    initDevFile(keydDir);
    keyd = createKeyService({
      dir: keydDir,
      provider: new DevFileProvider(keydDir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    await keyd.call('unseal', { secret: '' }, ADMIN);
    keys = { call: (op, args) => keyd.call(op, args, SERVER) };
    publicKey = (await keyd.call('publicKey', { purpose: 'deletion-certificate' }, ADMIN)).publicKey;
  });

  after(async () => {
    await keyd.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is RFC 8785 canonical JSON: sorted keys, no whitespace, UTF-8 as is', () => {
    const body = canonicalDeletionCertificate(CERTIFICATE);
    assert.equal(
      body,
      '{"backupsAgedOutBy":"2030-04-06","closedAt":"2030-03-02T12:00:00.000Z",' +
        '"keyIdsDestroyed":["tk.0011223344556677.v1","tk.0011223344556677.v2"],' +
        '"keydDestroyedAt":"2030-03-02T11:59:59.000Z","reason":"contract end",' +
        '"tenant":"ten_0123456789abcdef01234567","tenantName":"Zürich AG ✓",' +
        '"type":"tresor-deletion-certificate/v1"}',
    );
    assert.deepEqual(parseDeletionCertificate(body), CERTIFICATE);
  });

  it("is signed by keyd's deletion-certificate key and verifies with its public key", async () => {
    const signed = await signDeletionCertificate(keys, CERTIFICATE);
    assert.equal(signed.keyName, 'tresor-keyd/deletion-certificate');
    assert.equal(Buffer.from(signed.signature, 'base64').length, 64);
    assert.equal(signed.body, canonicalDeletionCertificate(CERTIFICATE));
    assert.ok(verifyDeletionCertificate(signed.body, signed.signature, publicKey));
    assert.ok(
      verifyDeletionCertificate(Buffer.from(signed.body), Buffer.from(signed.signature, 'base64'), publicKey),
    );
  });

  it("states keyd's backup horizon when it has one, and certificates without it still verify", async () => {
    const withKeyd: DeletionCertificate = { ...CERTIFICATE, keydBackupsAgedOutBy: '2030-03-09' };
    const signed = await signDeletionCertificate(keys, withKeyd);
    assert.match(signed.body, /"keydBackupsAgedOutBy":"2030-03-09"/);
    assert.ok(verifyDeletionCertificate(signed.body, signed.signature, publicKey));
    assert.deepEqual(parseDeletionCertificate(signed.body), withKeyd);
    // A certificate issued before the field existed (no keydBackupsAgedOutBy) verifies as before.
    const older = await signDeletionCertificate(keys, CERTIFICATE);
    assert.equal(older.body.includes('keydBackupsAgedOutBy'), false);
    assert.ok(verifyDeletionCertificate(older.body, older.signature, publicKey));
    // A field of the wrong type is not a certificate.
    const wrong = canonicalDeletionCertificate({ ...CERTIFICATE, keydBackupsAgedOutBy: 7 } as never);
    assert.equal(parseDeletionCertificate(wrong), undefined);
  });

  it('fails when any byte of the body changes', async () => {
    const signed = await signDeletionCertificate(keys, CERTIFICATE);
    const body = Buffer.from(signed.body, 'utf8');
    for (let i = 0; i < body.length; i++) {
      const changed = Buffer.from(body);
      changed[i] = (changed[i] ?? 0) ^ 0x20;
      assert.equal(verifyDeletionCertificate(changed, signed.signature, publicKey), false, `byte ${i}`);
    }
  });

  it('fails with another key, a changed signature or malformed inputs', async () => {
    const signed = await signDeletionCertificate(keys, CERTIFICATE);
    const other = Buffer.from(
      generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x ?? '',
      'base64url',
    );
    assert.equal(verifyDeletionCertificate(signed.body, signed.signature, other), false);
    const sig = Buffer.from(signed.signature, 'base64');
    sig[10] = (sig[10] ?? 0) ^ 1;
    assert.equal(verifyDeletionCertificate(signed.body, sig, publicKey), false);
    assert.equal(verifyDeletionCertificate(signed.body, '', publicKey), false);
    assert.equal(verifyDeletionCertificate(signed.body, signed.signature, publicKey.subarray(1)), false);
  });

  it('refuses a signed body that is not a canonical certificate', async () => {
    // keyd would sign any bytes for this purpose; a verifier accepts only the canonical form.
    const spaced = JSON.stringify(CERTIFICATE, null, 1);
    const signedSpaced = await keyd.call(
      'sign',
      { purpose: 'deletion-certificate', message: Buffer.from(spaced) },
      SERVER,
    );
    assert.equal(verifyDeletionCertificate(spaced, signedSpaced.signature, publicKey), false);
    const notACertificate = '{"type":"something-else"}';
    const signedOther = await keyd.call(
      'sign',
      { purpose: 'deletion-certificate', message: Buffer.from(notACertificate) },
      SERVER,
    );
    assert.equal(verifyDeletionCertificate(notACertificate, signedOther.signature, publicKey), false);
    assert.equal(parseDeletionCertificate('[]'), undefined);
    assert.equal(parseDeletionCertificate('{'), undefined);
  });

  it('dates the backup horizon closedAt + retention days', () => {
    assert.equal(backupsAgedOutBy('2030-03-02T12:00:00.000Z', 35), '2030-04-06');
    assert.equal(backupsAgedOutBy('2030-12-31T23:59:59.999Z', 1), '2031-01-01');
    assert.equal(backupsAgedOutBy('2030-03-02T00:00:00.000Z', 0), '2030-03-02');
  });
});
