/**
 * keyd parses what it signs for every purpose: backup-manifest and trust statements must be
 * well-formed statements of the purpose asked for, and a deletion certificate is built by keyd from
 * its own record of the destroyed tenant key — refused for a tenant whose keys it has not destroyed.
 * A real key service on a real SQLite store.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Caller } from '../../src/keyd/operations.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { verifyEd25519 } from '../../src/keyd/signing.ts';
import {
  parseDeletionCertificate,
  signDeletionCertificate,
  verifyDeletionCertificate,
} from '../../src/vault/deletion-certificate.ts';

const ADMIN: Caller = { id: 'test-admin', role: 'admin' };
const SERVER: Caller = { id: 'mtls:api-node#0011223344556677', role: 'server' };
const DIGEST = 'ab'.repeat(32);

describe('keyd parses the statements and certificates it signs', () => {
  let base: string;
  let keyd: KeydService;

  before(async () => {
    base = mkdtempSync('/tmp/signing-keyd-documents-');
    const dir = join(base, 'keyd');
    mkdirSync(dir, { mode: 0o700 });
    initDevFile(dir);
    keyd = createKeyService({
      dir,
      provider: new DevFileProvider(dir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    await keyd.call('unseal', { secret: '' }, ADMIN);
  });

  after(async () => {
    await keyd.close();
    rmSync(base, { recursive: true, force: true });
  });

  async function refused(purpose: 'backup-manifest' | 'trust-statement', text: string): Promise<void> {
    await assert.rejects(
      keyd.call('sign', { purpose, message: Buffer.from(text, 'latin1') }, SERVER),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'TRESOR_ERR_SIGN_REFUSED', `${JSON.stringify(text)}: ${err.message}`);
        return true;
      },
    );
  }

  it('signs well-formed backup-manifest statements (the server’s, keyd’s own, audit segments) and trust statements', async () => {
    for (const [purpose, text] of [
      ['backup-manifest', `tresor-backup-manifest/v1\nbk-20301105T101500Z-1a2b\n${DIGEST}\n`],
      ['backup-manifest', `tresor-keyd-backup-manifest/v1\nkb-1\n${DIGEST}\n`],
      ['backup-manifest', `tresor-audit-segment/v1\naudit.0000000000000000-0000000000001024\n${DIGEST}\n`],
      ['trust-statement', `tresor-trust/v1\n${DIGEST}\n`],
    ] as const) {
      const message = Buffer.from(text);
      const { signature } = await keyd.call('sign', { purpose, message }, SERVER);
      const key = await keyd.call('publicKey', { purpose }, SERVER);
      assert.ok(verifyEd25519(key.publicKey, message, signature), text);
    }
  });

  it('refuses bytes that are not a statement of the purpose asked for', async () => {
    await refused('backup-manifest', 'anything at all');
    await refused('backup-manifest', `tresor-trust/v1\n${DIGEST}\n`); // another purpose's statement
    await refused('trust-statement', `tresor-backup-manifest/v1\nbk-1\n${DIGEST}\n`);
    await refused('trust-statement', `tresor-audit-segment/v1\naudit.1-2\n${DIGEST}\n`);
    await refused('backup-manifest', `tresor-backup-manifest/v1\nbk-1\n${DIGEST}`); // no final newline
    await refused('backup-manifest', `tresor-backup-manifest/v1\nbk 1\n${DIGEST}\n`); // not a backup id
    await refused('backup-manifest', `tresor-backup-manifest/v1\nbk-1\n${DIGEST.toUpperCase()}\n`);
    await refused('backup-manifest', `tresor-backup-manifest/v1\nbk-1\n${DIGEST}\nextra\n`);
    await refused('trust-statement', `tresor-trust/v1\n${DIGEST.slice(2)}\n`);
    await refused('trust-statement', `tresor-trust/v1\n${DIGEST}\n\u00e9\n`);
    await refused(
      'trust-statement',
      'tresor.example/audit\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n',
    );
  });

  it('refuses an old-style deletion certificate signed from bytes, naming signDeletionCertificate', async () => {
    await assert.rejects(
      keyd.call('sign', { purpose: 'deletion-certificate', message: Buffer.from('{"type":"x"}') }, SERVER),
      (err: Error & { code?: string }) =>
        err.code === 'TRESOR_ERR_SIGN_REFUSED' && /signDeletionCertificate/.test(err.message),
    );
  });

  it('issues no deletion certificate for a tenant whose keys keyd has not destroyed', async () => {
    const request = {
      tenant: 'acme',
      closedAt: '2030-03-02T12:00:00.000Z',
      backupsAgedOutBy: '2030-04-06',
      reason: 'contract end',
    };
    for (const state of ['unknown', 'active', 'pending-destroy'] as const) {
      if (state === 'active') await keyd.call('createTenantKey', { tenant: 'acme' }, SERVER);
      if (state === 'pending-destroy')
        await keyd.call('destroyTenantKey', { tenant: 'acme', mode: 'schedule' }, SERVER);
      await assert.rejects(
        keyd.call('signDeletionCertificate', request, SERVER),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'TRESOR_ERR_SIGN_REFUSED', state);
          assert.match(err.message, /no record of destroying/);
          return true;
        },
      );
    }
    const last = (await keyd.call('opsLog', { from: 1, limit: 1000 }, ADMIN)).entries.at(-1);
    assert.equal(last?.op, 'signDeletionCertificate');
    assert.equal(last?.tenant, 'acme');
    assert.match(last?.detail ?? '', /^TRESOR_ERR_SIGN_REFUSED/);
  });

  it('builds the certificate from its own record: every destroyed key version and when, verifiable as before', async () => {
    await keyd.call('createTenantKey', { tenant: 'globex' }, SERVER);
    await keyd.call('rotateTenantKey', { tenant: 'globex' }, SERVER);
    const destroyed = await keyd.call('destroyTenantKey', { tenant: 'globex', mode: 'now' }, SERVER);
    const keys = { call: ((op, args) => keyd.call(op, args, SERVER)) as KeydService['call'] };
    const signed = await signDeletionCertificate(keys, {
      tenant: 'globex',
      tenantName: 'Globex AG ✓',
      closedAt: '2030-03-02T12:00:00.000Z',
      backupsAgedOutBy: '2030-04-06',
      reason: 'contract end',
    });
    assert.deepEqual(signed.certificate.keyIdsDestroyed, destroyed.keyIdsDestroyed);
    assert.equal(signed.certificate.keyIdsDestroyed.length, 2);
    assert.equal(signed.certificate.keydDestroyedAt, destroyed.destroyedAt);
    assert.equal(signed.certificate.tenantName, 'Globex AG ✓');
    assert.equal(signed.certificate.keydBackupsAgedOutBy, undefined, 'keyd backs up only on demand here');
    assert.deepEqual(parseDeletionCertificate(signed.body), signed.certificate);
    const key = await keyd.call('publicKey', { purpose: 'deletion-certificate' }, SERVER);
    assert.ok(verifyDeletionCertificate(signed.body, signed.signature, key.publicKey));
    // The caller cannot put its own key ids or destruction time in: they are not arguments.
    await assert.rejects(
      keyd.call(
        'signDeletionCertificate',
        {
          tenant: 'globex',
          closedAt: '2030-03-02T12:00:00.000Z',
          backupsAgedOutBy: '2030-04-06',
          reason: 'x',
          keyIdsDestroyed: [],
        } as never,
        SERVER,
      ),
      { code: 'TRESOR_ERR_REQUEST_INVALID' },
    );
    await assert.rejects(
      keyd.call(
        'signDeletionCertificate',
        { tenant: 'globex', closedAt: 'yesterday', backupsAgedOutBy: '2030-04-06', reason: 'x' },
        SERVER,
      ),
      { code: 'TRESOR_ERR_REQUEST_INVALID' },
    );
  });
});
