/**
 * Deletion certificates: RFC 8785 canonical bytes, built and signed by the real key service from
 * its record of the destruction, verifiable with node:crypto and keyd's public key alone.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DestroyResult, KeyService } from '../../src/keyd/operations.ts';
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

/** What the closing server sends; keyd adds the destroyed key ids and the destruction time. */
const REQUEST = {
  tenant: CERTIFICATE.tenant,
  tenantName: 'Zürich AG ✓',
  closedAt: CERTIFICATE.closedAt,
  backupsAgedOutBy: CERTIFICATE.backupsAgedOutBy,
  reason: CERTIFICATE.reason,
};

describe('deletion certificate', () => {
  let dir: string;
  let keyd: KeydService;
  let keys: KeyService;
  let publicKey: Buffer;
  let destroyed: DestroyResult;

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
    // keyd issues certificates only for tenants whose keys it destroyed: two versions, destroyed.
    await keyd.call('createTenantKey', { tenant: CERTIFICATE.tenant }, SERVER);
    await keyd.call('rotateTenantKey', { tenant: CERTIFICATE.tenant }, SERVER);
    destroyed = await keyd.call('destroyTenantKey', { tenant: CERTIFICATE.tenant, mode: 'now' }, SERVER);
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

  it('is built by keyd from its record of the destruction, signed by its deletion-certificate key, and verifies with its public key', async () => {
    const signed = await signDeletionCertificate(keys, REQUEST);
    assert.equal(signed.keyName, 'tresor-keyd/deletion-certificate');
    assert.equal(Buffer.from(signed.signature, 'base64').length, 64);
    assert.deepEqual(signed.certificate, {
      ...CERTIFICATE,
      keyIdsDestroyed: destroyed.keyIdsDestroyed,
      keydDestroyedAt: destroyed.destroyedAt,
    });
    assert.equal(signed.body, canonicalDeletionCertificate(signed.certificate));
    assert.ok(verifyDeletionCertificate(signed.body, signed.signature, publicKey));
    assert.ok(
      verifyDeletionCertificate(Buffer.from(signed.body), Buffer.from(signed.signature, 'base64'), publicKey),
    );
  });

  it("reads keyd's backup horizon when it has one, and certificates without it parse as before", () => {
    const withKeyd: DeletionCertificate = { ...CERTIFICATE, keydBackupsAgedOutBy: '2030-03-09' };
    const body = canonicalDeletionCertificate(withKeyd);
    assert.match(body, /"keydBackupsAgedOutBy":"2030-03-09"/);
    assert.deepEqual(parseDeletionCertificate(body), withKeyd);
    // A certificate issued before the field existed (no keydBackupsAgedOutBy) parses as before.
    assert.deepEqual(parseDeletionCertificate(canonicalDeletionCertificate(CERTIFICATE)), CERTIFICATE);
    // A field of the wrong type is not a certificate.
    const wrong = canonicalDeletionCertificate({ ...CERTIFICATE, keydBackupsAgedOutBy: 7 } as never);
    assert.equal(parseDeletionCertificate(wrong), undefined);
  });

  it('fails when any byte of the body changes', async () => {
    const signed = await signDeletionCertificate(keys, REQUEST);
    const body = Buffer.from(signed.body, 'utf8');
    for (let i = 0; i < body.length; i++) {
      const changed = Buffer.from(body);
      changed[i] = (changed[i] ?? 0) ^ 0x20;
      assert.equal(verifyDeletionCertificate(changed, signed.signature, publicKey), false, `byte ${i}`);
    }
  });

  it('fails with another key, a changed signature or malformed inputs', async () => {
    const signed = await signDeletionCertificate(keys, REQUEST);
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

  it('refuses a body that is not the canonical certificate keyd signed; keyd signs no certificate bytes it is sent', async () => {
    const signed = await signDeletionCertificate(keys, REQUEST);
    const spaced = JSON.stringify(signed.certificate, null, 1);
    assert.equal(verifyDeletionCertificate(spaced, signed.signature, publicKey), false);
    for (const body of [spaced, '{"type":"something-else"}']) {
      await assert.rejects(
        keyd.call('sign', { purpose: 'deletion-certificate', message: Buffer.from(body) }, SERVER),
        { code: 'TRESOR_ERR_SIGN_REFUSED' },
      );
    }
    assert.equal(parseDeletionCertificate('[]'), undefined);
    assert.equal(parseDeletionCertificate('{'), undefined);
  });

  it('dates the backup horizon closedAt + retention days', () => {
    assert.equal(backupsAgedOutBy('2030-03-02T12:00:00.000Z', 35), '2030-04-06');
    assert.equal(backupsAgedOutBy('2030-12-31T23:59:59.999Z', 1), '2031-01-01');
    assert.equal(backupsAgedOutBy('2030-03-02T00:00:00.000Z', 0), '2030-03-02');
  });
});
