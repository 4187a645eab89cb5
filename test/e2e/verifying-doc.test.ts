/**
 * docs/verifying.md, run as written: its node snippets and openssl commands, taken from the page
 * byte for byte, check a real checkpoint and a real deletion certificate from a real server with
 * the keys GET /v1/keys publishes — and refuse each after one changed byte. The keys endpoint's
 * answer is checked here too: both purposes, SPKI PEM, the checkpoint key named by the origin.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { operatorAdmin, operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const DOC = join(import.meta.dirname, '..', '..', 'docs', 'verifying.md');

/** The fenced blocks of the page whose info string is `<lang> <name>`, by name. */
function namedBlocks(markdown: string): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const m of markdown.matchAll(/^```(js|sh) ([\w.-]+)\n([\s\S]*?)^```$/gm)) {
    blocks.set(m[2] as string, m[3] as string);
  }
  return blocks;
}

interface PublishedKey {
  purpose: string;
  algorithm: string;
  name: string;
  publicKey: string;
  verifierKey?: string;
}

describe('docs/verifying.md against a real server', () => {
  let s: TresorStack;
  let dir: string;
  const blocks = namedBlocks(readFileSync(DOC, 'utf8'));

  function run(command: string, args: string[]): { status: number | null; out: string } {
    const r = spawnSync(command, args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, out: r.stdout + r.stderr };
  }
  const shell = (name: string) => run('bash', ['-euo', 'pipefail', '-c', blocks.get(name) as string]);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-verifying-'));
    for (const name of ['verify-checkpoint.mjs', 'verify-certificate.mjs']) {
      writeFileSync(join(dir, name), blocks.get(name) as string);
    }
    // No close grace: the certificate to verify is issued by the close itself.
    s = await startTresorStack({ env: { TRESOR_CLOSE_GRACE_DAYS: '0' } });
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Leaving' },
    });
    assert.equal(created.status, 201, created.text);
    const { id } = created.json<{ id: string }>();
    // Closing needs a person with a fresh second factor: the operator admin's session.
    const closed = await (await operatorAdmin(s)).request('POST', `/v1/tenants/${id}/close`, {
      reason: 'contract ended',
    });
    assert.equal(closed.status, 200, closed.text);
    const certificate = await s.request('GET', `/v1/tenants/${id}/deletion-certificate`, {
      token: await operatorToken(s, 'tenants:read'),
    });
    assert.equal(certificate.status, 200, certificate.text);
    writeFileSync(join(dir, 'certificate.json'), certificate.text);
    const note = await waitFor('a signed checkpoint', async () => {
      const res = await s.request('GET', '/v1/audit/checkpoint', {
        token: await operatorToken(s, 'audit:read'),
      });
      return res.status === 200 ? res.text : undefined;
    });
    writeFileSync(join(dir, 'checkpoint.txt'), note);
  });

  after(async () => {
    await s?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('has the four runnable blocks', () => {
    assert.deepEqual([...blocks.keys()].sort(), [
      'certificate',
      'checkpoint',
      'verify-certificate.mjs',
      'verify-checkpoint.mjs',
    ]);
  });

  it('GET /v1/keys publishes every verifying key as SPKI PEM, the checkpoint key named by the origin', async () => {
    const res = await s.request('GET', '/v1/keys'); // public: no credential
    assert.equal(res.status, 200, res.text);
    const { keys } = res.json<{ keys: PublishedKey[] }>();
    assert.deepEqual(
      keys.map((k) => [k.purpose, k.algorithm]),
      [
        ['audit-checkpoint', 'Ed25519'],
        ['deletion-certificate', 'Ed25519'],
        ['backup-manifest', 'Ed25519'],
        ['trust-statement', 'Ed25519'],
      ],
    );
    const [checkpointKey, deletionKey, backupKey] = keys as [
      PublishedKey,
      PublishedKey,
      PublishedKey,
      PublishedKey,
    ];
    assert.equal(backupKey.name, 'tresor-keyd/backup-manifest');
    assert.notEqual(backupKey.publicKey, deletionKey.publicKey, 'one key per purpose');
    const origin = readFileSync(join(dir, 'checkpoint.txt'), 'utf8').split('\n')[0];
    assert.equal(checkpointKey.name, origin);
    const published = await s.request('GET', '/v1/audit/public-key');
    assert.equal(published.status, 200);
    assert.equal(checkpointKey.verifierKey, published.text.trim(), 'the same key as /v1/audit/public-key');
    assert.equal(deletionKey.name, 'tresor-keyd/deletion-certificate');
    assert.equal(deletionKey.verifierKey, undefined);
    const certificate = JSON.parse(readFileSync(join(dir, 'certificate.json'), 'utf8')) as {
      keyName: string;
    };
    assert.equal(certificate.keyName, deletionKey.name);
    for (const k of keys)
      assert.match(k.publicKey, /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n$/);
    writeFileSync(join(dir, 'checkpoint-key.pem'), checkpointKey.publicKey);
    writeFileSync(join(dir, 'deletion-key.pem'), deletionKey.publicKey);
  });

  it('the node snippets and openssl accept the real checkpoint and certificate', () => {
    const node = run(process.execPath, ['verify-checkpoint.mjs', 'checkpoint.txt', 'checkpoint-key.pem']);
    assert.equal(node.status, 0, node.out);
    assert.match(node.out, /^checkpoint OK\n$/);
    const ssl = shell('checkpoint');
    assert.equal(ssl.status, 0, ssl.out);
    assert.match(ssl.out, /Signature Verified Successfully/);

    const cert = run(process.execPath, ['verify-certificate.mjs', 'certificate.json', 'deletion-key.pem']);
    assert.equal(cert.status, 0, cert.out);
    assert.match(cert.out, /^certificate OK: \{.*"type":"tresor-deletion-certificate\/v1"\}\n$/);
    const certSsl = shell('certificate');
    assert.equal(certSsl.status, 0, certSsl.out);
    assert.match(certSsl.out, /Signature Verified Successfully/);
  });

  it('both refuse a checkpoint and a certificate with one changed byte', () => {
    const note = readFileSync(join(dir, 'checkpoint.txt'), 'utf8');
    const lines = note.split('\n');
    lines[1] = String(Number(lines[1]) + 1); // the tree size
    writeFileSync(join(dir, 'checkpoint.txt'), lines.join('\n'));
    const node = run(process.execPath, ['verify-checkpoint.mjs', 'checkpoint.txt', 'checkpoint-key.pem']);
    assert.equal(node.status, 1, node.out);
    assert.match(node.out, /checkpoint NOT verified/);
    const ssl = shell('checkpoint');
    assert.notEqual(ssl.status, 0, ssl.out);
    assert.match(ssl.out, /Signature Verification Failure/);

    const certificate = JSON.parse(readFileSync(join(dir, 'certificate.json'), 'utf8')) as { body: string };
    const changed = certificate.body.replace('"reason":"contract ended"', '"reason":"contract endet"');
    assert.notEqual(changed, certificate.body);
    writeFileSync(join(dir, 'certificate.json'), JSON.stringify({ ...certificate, body: changed }));
    const cert = run(process.execPath, ['verify-certificate.mjs', 'certificate.json', 'deletion-key.pem']);
    assert.equal(cert.status, 1, cert.out);
    const certSsl = shell('certificate');
    assert.notEqual(certSsl.status, 0, certSsl.out);
    assert.match(certSsl.out, /Signature Verification Failure/);
  });
});
