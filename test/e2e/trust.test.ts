/**
 * The live trust page on a real stack: /trust.json is a statement signed by keyd that verifies
 * under the trust-statement key published at /v1/keys (and fails when one byte of it changes); it
 * carries the live evidence — TLS versions and the certificate, keyd unsealed with its root-key
 * provider, the latest signed checkpoint and the local witness, each backup destination's newest
 * backup after a real backup. /trust renders the same as plain HTML without any script, under its
 * own CSP, and neither holds a tenant's name or id, a record value or a key.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import canonicalize from 'canonicalize';
import type { SignedTrustStatement } from '../../src/http/routes/trust.ts';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const verifies = (publicKeyPem: string, signed: SignedTrustStatement) => {
  const digest = createHash('sha256')
    .update(canonicalize(signed.statement) as string, 'utf8')
    .digest('hex');
  return verify(
    null,
    Buffer.from(`tresor-trust/v1\n${digest}\n`, 'utf8'),
    createPublicKey(publicKeyPem),
    Buffer.from(signed.signature, 'base64'),
  );
};

describe('the live trust page', () => {
  let s: TresorStack;
  let apiKey: string;
  let tenantId: string;

  before(async () => {
    s = await startTresorStack();
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Trusting Customer Ltd' },
    });
    assert.equal(created.status, 201, created.text);
    ({ apiKey, id: tenantId } = created.json<{ apiKey: string; id: string }>());
    await s.request('PUT', '/v1/collections/notes', {
      token: apiKey,
      body: { fields: { text: { type: 'string', classification: 'confidential' } } },
    });
    await s.request('POST', '/v1/collections/notes/records', {
      token: apiKey,
      body: { text: 'trust-canary-value' },
    });
    const backup = await s.request('POST', '/v1/backups', { token: await operatorToken(s, 'backups:run') });
    assert.equal(backup.status, 202, backup.text);
    const id = backup.json<{ id: string }>().id;
    const read = await operatorToken(s, 'backups:read');
    await waitFor(
      'the backup held everywhere',
      async () => {
        const b = (await s.request('GET', `/v1/backups/${id}`, { token: read })).json<{ outcome: string }>();
        return b.outcome === 'done' ? b : undefined;
      },
      { timeoutMs: 120_000 },
    );
  });

  after(async () => {
    await s?.stop();
  });

  it('/trust.json is signed by keyd under the published trust-statement key and carries the evidence', async () => {
    const keys = (await s.request('GET', '/v1/keys')).json<{
      keys: { purpose: string; publicKey: string; name: string }[];
    }>().keys;
    const key = keys.find((k) => k.purpose === 'trust-statement');
    assert.ok(key, 'the trust-statement key is published');
    const res = await s.request('GET', '/trust.json');
    assert.equal(res.status, 200, res.text);
    const signed = res.json<SignedTrustStatement>();
    assert.equal(signed.keyName, key.name);
    assert.ok(verifies(key.publicKey, signed), 'the signature verifies');
    const forged = { ...signed, statement: { ...signed.statement, origin: 'https://elsewhere.example' } };
    assert.equal(verifies(key.publicKey, forged), false, 'a changed statement does not verify');

    const st = signed.statement;
    assert.equal(st.statement, 'tresor-trust/v1');
    assert.equal(st.origin, new URL(s.url).origin);
    assert.deepEqual([st.tls.minVersion, st.tls.maxVersion], ['TLSv1.2', 'TLSv1.3']);
    assert.ok(st.tls.certificate && st.tls.certificate.daysLeft > 0);
    assert.deepEqual(st.keys.keyd, {
      reachable: true,
      sealed: false,
      rootKey: 'dev-file',
      channel: 'unix socket',
    });
    assert.ok(st.audit.checkpoint && st.audit.checkpoint.treeSize > 0);
    assert.match(st.audit.checkpoint.note, /^[^\n]+\n\d+\n[A-Za-z0-9+/=]+\n/);
    assert.ok(st.audit.witness.treeSize !== null && st.audit.witness.treeSize > 0);
    assert.deepEqual(
      st.backups.destinations.map((d) => [d.name, d.kind, d.newestBackupAt !== null]),
      [
        ['a', 'folder', true],
        ['b', 'folder', true],
      ],
    );
    assert.equal(st.availability.probing, false);
    assert.equal(st.availability.objective, 0.999);
    for (const secret of [apiKey, tenantId, 'Trusting Customer', 'trust-canary-value', s.dataDir])
      assert.ok(!res.text.includes(secret), 'nothing of a tenant, a key or a path in the statement');
  });

  it('/trust is plain HTML without scripts, under a CSP that allows only its own style', async () => {
    const res = await s.request('GET', '/trust');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    const csp = String(res.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.doesNotMatch(csp, /script-src/);
    assert.doesNotMatch(res.text, /<script/i);
    for (const heading of [
      'Encryption in transit',
      'Keys held apart from the data',
      'A tamper-evident audit log of every access',
      'Backups at several places',
      'Availability',
      'Third-party security testing',
    ])
      assert.ok(res.text.includes(heading), heading);
    assert.ok(
      res.text.includes('Root key</th><td><span class="bad">dev-file'),
      'the development root key is marked',
    );
    assert.ok(!res.text.includes(apiKey) && !res.text.includes('trust-canary-value'));
  });
});
