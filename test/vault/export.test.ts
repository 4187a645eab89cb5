/**
 * Tenant export: an age file to a recipient key or passphrase, decrypted here with the same
 * library; never plaintext; audited; bad recipients refused before any data is read.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Decrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import type { ExportDocument } from '../../src/vault/export.ts';
import { caller, PEOPLE, tresorError, type VaultRig, vaultRig } from './helpers.ts';

const T = 'acme';
const PASSPHRASE = 'correct-horse-battery-staple';

describe('tenant export', () => {
  let rig: VaultRig;
  const created: Record<string, string> = {};
  before(async () => {
    rig = await vaultRig({ limits: { exportScryptLogN: 10 } });
    await rig.vault.putCollection(T, 'people', { ...PEOPLE, retentionDays: 90 }, caller());
    await rig.vault.putCollection(
      T,
      'notes',
      { fields: { text: { type: 'string', classification: 'internal' } } },
      caller(),
    );
    created.ada = (
      await rig.vault.createRecord(
        T,
        'people',
        { email: 'export-canary@example.com', age: 36, profile: { langs: ['en'] } },
        caller(),
      )
    ).id;
    created.note = (await rig.vault.createRecord(T, 'notes', { text: 'note-canary-3310' }, caller())).id;
    await rig.vault.updateRecord(T, 'notes', created.note, { text: 'note-canary-3311' }, 1, caller());
  });
  after(async () => {
    await rig.close();
  });

  function checkDocument(doc: ExportDocument) {
    assert.equal(doc.tenant, T);
    assert.equal(doc.exportedAt, '2025-01-01T00:00:00.000Z');
    assert.deepEqual(
      doc.collections.map((c) => c.name),
      ['notes', 'people'],
    );
    const people = doc.collections.find((c) => c.name === 'people');
    assert.equal(people?.schema.retentionDays, 90);
    assert.equal(people?.schema.fields.email?.classification, 'personal');
    assert.deepEqual(people?.records, [
      {
        id: created.ada,
        version: 1,
        data: { email: 'export-canary@example.com', age: 36, profile: { langs: ['en'] } },
      },
    ]);
    assert.deepEqual(doc.collections.find((c) => c.name === 'notes')?.records, [
      { id: created.note, version: 2, data: { text: 'note-canary-3311' } },
    ]);
  }

  it('exports to an age X25519 recipient; only the identity opens it', async () => {
    const identity = await generateIdentity();
    const recipient = await identityToRecipient(identity);
    const archive = await rig.vault.exportTenant(T, { recipient }, caller());
    assert.equal(Buffer.from(archive.subarray(0, 21)).toString(), 'age-encryption.org/v1');
    for (const canary of ['export-canary', 'note-canary', '"email"']) {
      assert.equal(Buffer.from(archive).indexOf(canary), -1, `${canary} in the archive`);
    }
    const d = new Decrypter();
    d.addIdentity(identity);
    checkDocument(JSON.parse(await d.decrypt(archive, 'text')) as ExportDocument);

    const stranger = new Decrypter();
    stranger.addIdentity(await generateIdentity());
    await assert.rejects(stranger.decrypt(archive, 'text'));

    const event = (await rig.readEvents(T)).at(-1);
    assert.equal(event?.action, 'tenant.export');
    assert.equal(event?.outcome, 'success');
    assert.deepEqual(event?.target?.collections, ['notes', 'people']);
    assert.equal(event?.target?.recordCount, 2);
    assert.equal(event?.target?.recipient, recipient);
    assert.ok(!JSON.stringify(event).includes('canary'));
  });

  it('exports to a passphrase (age scrypt recipient)', async () => {
    const archive = await rig.vault.exportTenant(T, { passphrase: PASSPHRASE }, caller());
    const d = new Decrypter();
    d.addPassphrase(PASSPHRASE);
    checkDocument(JSON.parse(await d.decrypt(archive, 'text')) as ExportDocument);
    const wrong = new Decrypter();
    wrong.addPassphrase('not-the-passphrase!');
    await assert.rejects(wrong.decrypt(archive, 'text'));
    const event = (await rig.readEvents(T)).at(-1);
    assert.equal(event?.target?.to, 'passphrase');
    assert.ok(!JSON.stringify(event).includes(PASSPHRASE));
  });

  it('refuses invalid recipients and passphrases (422) before reading or auditing anything', async () => {
    const before = (await rig.readEvents(T)).length;
    rig.resetLoans();
    const identity = await generateIdentity();
    const valid = await identityToRecipient(identity);
    const cases: unknown[] = [
      {},
      { recipient: valid, passphrase: PASSPHRASE },
      { recipient: 'age1notarecipient' },
      { recipient: `${valid.slice(0, -1)}${valid.endsWith('q') ? 'p' : 'q'}` },
      { recipient: identity },
      { recipient: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI' },
      { recipient: 42 },
      { passphrase: 'short' },
      { passphrase: 12345678901234 },
      null,
    ];
    for (const options of cases) {
      const err = await tresorError(rig.vault.exportTenant(T, options as never, caller()));
      assert.equal(err.code, 'TRESOR_ERR_VALIDATION', JSON.stringify(options));
      assert.equal(err.status, 422);
    }
    assert.equal((await rig.readEvents(T)).length, before);
    assert.equal(rig.loans.data, 0);
  });

  it('exports a tenant with no collections as an empty document', async () => {
    const archive = await rig.vault.exportTenant('globex', { passphrase: PASSPHRASE }, caller());
    const d = new Decrypter();
    d.addPassphrase(PASSPHRASE);
    const doc = JSON.parse(await d.decrypt(archive, 'text')) as ExportDocument;
    assert.deepEqual(doc.collections, []);
    assert.equal(doc.tenant, 'globex');
  });
});
