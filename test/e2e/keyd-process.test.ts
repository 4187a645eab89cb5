/**
 * keyd end to end: the real `tresor keyd` process, its CLI, its Unix socket and its mTLS listener,
 * with every root-key provider (SoftHSM2 for PKCS#11). Nothing here is mocked.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { DevFileProvider } from '../../src/keyd/root/dev-file.ts';
import { PassphraseProvider } from '../../src/keyd/root/passphrase.ts';
import { createKeyService } from '../../src/keyd/service.ts';
import { createDevCa, fingerprint256, issueCertificate } from '../../src/tls/dev-ca.ts';
import { startKeyd, tresor } from '../helpers/keyd-process.ts';
import { createSoftHsmToken } from '../helpers/softhsm.ts';
import { untilEvent } from '../helpers/wait.ts';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tresor-e2e-keyd-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function unix(dir: string) {
  return { kind: 'unix' as const, path: join(dir, 'keyd.sock') };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

/** Every file under `dir`, as bytes. */
function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile()) out.push({ path: p, bytes: readFileSync(p) });
  }
  return out;
}

function encodings(secret: Buffer): Buffer[] {
  return [
    secret,
    Buffer.from(secret.toString('hex')),
    Buffer.from(secret.toString('base64')),
    Buffer.from(secret.toString('base64url')),
  ];
}

describe('keyd process with Shamir unseal shares', () => {
  it('serves nothing but status while sealed, and unseals with 3 of 5 shares given one at a time', async () => {
    const dir = tempDir();
    const init = tresor([
      'keyd',
      'init',
      '--provider',
      'shamir',
      '--shares',
      '5',
      '--threshold',
      '3',
      '--dir',
      dir,
      '--json',
    ]);
    assert.equal(init.status, 0, init.stderr);
    const { shares } = JSON.parse(init.stdout) as { shares: string[] };
    assert.equal(shares.length, 5);
    assert.match(init.stderr, /shown ONCE/);
    for (const f of filesUnder(dir)) {
      for (const share of shares) assert.ok(!f.bytes.includes(share), `${f.path} holds a share`);
    }

    const keyd = await startKeyd(['--provider', 'shamir', '--dir', dir], unix(dir));
    try {
      const c = keyd.client();
      const status = await c.call('status', {});
      assert.equal(status.sealed, true);
      await assert.rejects(c.call('createTenantKey', { tenant: 'acme' }), { code: 'TRESOR_ERR_KEYD_SEALED' });
      await assert.rejects(c.call('generateDataKey', { tenant: 'acme', purpose: 'data' }), {
        code: 'TRESOR_ERR_KEYD_SEALED',
      });
      await assert.rejects(c.call('publicKey', { purpose: 'audit-checkpoint' }), {
        code: 'TRESOR_ERR_KEYD_SEALED',
      });

      const common = ['--provider', 'shamir', '--dir', dir, '--json'];
      const bad = tresor(['keyd', 'unseal', ...common], { input: 'tresor-share-v1-not-a-share\n' });
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /TRESOR_ERR_SHARE_INVALID/);

      const first = tresor(['keyd', 'unseal', ...common], { input: `${shares[0]}\n` });
      assert.equal(first.status, 0, first.stderr);
      assert.deepEqual(JSON.parse(first.stdout).progress, { submitted: 1, threshold: 3 });
      const dup = tresor(['keyd', 'unseal', ...common], { input: `${shares[0]}\n` });
      assert.equal(dup.status, 1);
      assert.match(dup.stderr, /TRESOR_ERR_SHARE_INVALID/);
      assert.equal(tresor(['keyd', 'unseal', ...common], { input: `${shares[3]}\n` }).status, 0);
      await assert.rejects(c.call('createTenantKey', { tenant: 'acme' }), { code: 'TRESOR_ERR_KEYD_SEALED' });
      const last = tresor(['keyd', 'unseal', ...common], { input: `${shares[4]}\n` });
      assert.equal(last.status, 0, last.stderr);
      assert.equal(JSON.parse(last.stdout).sealed, false);

      const tk = await c.call('createTenantKey', { tenant: 'acme' });
      assert.equal(tk.version, 1);
      const log = await c.call('opsLog', { from: 1, limit: 100 });
      const unseals = log.entries.filter((e) => e.op === 'unseal');
      assert.ok(unseals.length >= 4);
      assert.ok(unseals.every((e) => e.caller === 'unix:tresor-cli'));
      assert.ok(
        log.entries.some((e) => e.op === 'createTenantKey' && e.caller === 'unix:test' && e.outcome === 'ok'),
      );
      for (const e of log.entries) for (const share of shares) assert.ok(!JSON.stringify(e).includes(share));
    } finally {
      await keyd.stop();
    }
  });
});

describe('keyd process with a passphrase-sealed root keyring', () => {
  it('unseals from a passphrase file, and refuses to start with a wrong one', async () => {
    const dir = tempDir();
    const passphrase = `correct horse ${randomBytes(6).toString('hex')}`;
    const init = tresor(['keyd', 'init', '--provider', 'passphrase', '--dir', dir], {
      input: `${passphrase}\n`,
    });
    assert.equal(init.status, 0, init.stderr);
    const good = join(tempDir(), 'pass');
    writeFileSync(good, `${passphrase}\n`, { mode: 0o600 });
    const keyd = await startKeyd(['--provider', 'passphrase', '--dir', dir], unix(dir), {
      TRESOR_KEYD_PASSPHRASE_FILE: good,
    });
    try {
      const status = await keyd.client().call('status', {});
      assert.equal(status.sealed, false);
      assert.equal(status.provider, 'passphrase');
    } finally {
      await keyd.stop();
    }
    const wrong = join(tempDir(), 'wrong');
    writeFileSync(wrong, 'not the passphrase at all\n', { mode: 0o600 });
    const r = tresor(['keyd', 'serve', '--provider', 'passphrase', '--dir', dir], {
      env: { TRESOR_KEYD_PASSPHRASE_FILE: wrong },
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /TRESOR_ERR_UNSEAL_FAILED/);
    assert.ok(!r.stderr.includes('not the passphrase'), 'the secret is not echoed');
  });
});

describe('keyd process with a PKCS#11 root key in SoftHSM2', () => {
  it('generates the root key in the token, serves data keys, and unwraps them again after a restart', async () => {
    const token = createSoftHsmToken('tresor-e2e');
    const dir = tempDir();
    const pinFile = join(tempDir(), 'pin');
    writeFileSync(pinFile, token.pin, { mode: 0o600 });
    const env = {
      SOFTHSM2_CONF: process.env.SOFTHSM2_CONF,
      TRESOR_KEYD_PKCS11_LIBRARY: token.library,
      TRESOR_KEYD_PKCS11_TOKEN: token.tokenLabel,
      TRESOR_KEYD_PKCS11_PIN_FILE: pinFile,
    };
    const init = tresor(['keyd', 'init', '--provider', 'pkcs11', '--dir', dir], { env });
    assert.equal(init.status, 0, init.stderr);

    let keyd = await startKeyd(['--provider', 'pkcs11', '--dir', dir], unix(dir), env);
    let dk: { keyId: string; key: Buffer; wrapped: Buffer };
    try {
      const c = keyd.client();
      assert.equal((await c.call('status', {})).provider, 'pkcs11');
      await c.call('createTenantKey', { tenant: 'acme' });
      dk = await c.call('generateDataKey', { tenant: 'acme', purpose: 'data' });
      const rotated = await c.call('rotateRootKey', {});
      assert.equal(rotated.version, 2);
    } finally {
      await keyd.stop();
    }
    keyd = await startKeyd(['--provider', 'pkcs11', '--dir', dir], unix(dir), env);
    try {
      const { key } = await keyd
        .client()
        .call('unwrapDataKey', { tenant: 'acme', purpose: 'data', keyId: dk.keyId, wrapped: dk.wrapped });
      assert.ok(key.equals(dk.key));
    } finally {
      await keyd.stop();
    }
    const wrongPin = join(tempDir(), 'wrong-pin');
    writeFileSync(wrongPin, '000000', { mode: 0o600 });
    const r = tresor(['keyd', 'serve', '--provider', 'pkcs11', '--dir', dir], {
      env: { ...env, TRESOR_KEYD_PKCS11_PIN_FILE: wrongPin },
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /TRESOR_ERR_UNSEAL_FAILED/);
  });
});

describe('keyd process over TCP with mutual TLS', () => {
  it('serves an allowlisted client, refuses an unknown one, and names the caller in its log', async () => {
    // A TCP keyd refuses the dev file: the passphrase provider, unsealed from a file.
    const dir = tempDir();
    const passphrase = `correct horse ${randomBytes(6).toString('hex')}`;
    const init = tresor(['keyd', 'init', '--provider', 'passphrase', '--dir', dir], {
      input: `${passphrase}\n`,
    });
    assert.equal(init.status, 0, init.stderr);
    const ca = await createDevCa({ commonName: 'tresor test keyd CA' });
    const server = await issueCertificate(ca, {
      commonName: 'keyd',
      sans: { ip: ['127.0.0.1'] },
      usage: 'server',
      days: 1,
    });
    const allowed = await issueCertificate(ca, { commonName: 'server-a', usage: 'client', days: 1 });
    const stranger = await issueCertificate(ca, { commonName: 'stranger', usage: 'client', days: 1 });
    const files = tempDir();
    const w = (name: string, text: string) => {
      writeFileSync(join(files, name), text, { mode: 0o600 });
      return join(files, name);
    };
    const allowlist = w(
      'allowlist.json',
      JSON.stringify([{ fingerprint256: fingerprint256(allowed.certPem), name: 'server-a', role: 'server' }]),
    );
    const port = await freePort();
    const env = {
      TRESOR_KEYD_TLS_CERT: w('server.pem', server.certPem),
      TRESOR_KEYD_TLS_KEY: w('server.key', server.keyPem),
      TRESOR_KEYD_TLS_CA: w('ca.pem', ca.certPem),
      TRESOR_KEYD_ALLOWLIST: allowlist,
      TRESOR_KEYD_PASSPHRASE_FILE: w('passphrase', `${passphrase}\n`),
    };
    const target = (cert: { certPem: string; keyPem: string }) => ({
      kind: 'tls' as const,
      host: '127.0.0.1',
      port,
      cert: cert.certPem,
      key: cert.keyPem,
      ca: ca.certPem,
    });
    const keyd = await startKeyd(
      ['--provider', 'passphrase', '--dir', dir, '--listen', `127.0.0.1:${port}`],
      target(allowed),
      env,
    );
    try {
      const ok = keyd.client(target(allowed));
      await ok.call('createTenantKey', { tenant: 'acme' });
      const dk = await ok.call('generateDataKey', { tenant: 'acme', purpose: 'data' });
      assert.equal(dk.key.length, 32);
      await assert.rejects(ok.call('rotateRootKey', {}), { code: 'TRESOR_ERR_FORBIDDEN' }); // role server, not admin

      const refused = keyd.client(target(stranger));
      await assert.rejects(refused.call('status', {}), { code: 'TRESOR_ERR_FORBIDDEN' });
    } finally {
      await keyd.stop();
    }
    // The ops log (read in process once keyd has stopped) names the mTLS caller.
    const service = createKeyService({
      dir,
      provider: new PassphraseProvider(dir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    try {
      await service.call('unseal', { secret: passphrase }, { id: 'test', role: 'admin' });
      const log = await service.call('opsLog', { from: 1, limit: 100 }, { id: 'test', role: 'admin' });
      const create = log.entries.find((e) => e.op === 'createTenantKey');
      assert.match(create?.caller ?? '', /^mtls:server-a#[0-9a-f]{16}$/);
    } finally {
      await service.close();
    }
  });

  it('refuses to listen on TCP without mutual TLS', () => {
    const dir = tempDir();
    const r = tresor(['keyd', 'serve', '--provider', 'passphrase', '--dir', dir, '--listen', '0.0.0.0:7000']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /TRESOR_ERR_CONFIG_INVALID.*mutual TLS/);
  });
});

describe('keyd process killed with kill -9', () => {
  it('restarts with a consistent store: every acknowledged key unwraps, the ops log chain holds, no key bytes on disk', async () => {
    const dir = tempDir();
    assert.equal(
      tresor(['keyd', 'init', '--provider', 'dev-file', '--dir', dir, '--insecure-dev-key-file']).status,
      0,
    );
    let keyd = await startKeyd(
      ['--provider', 'dev-file', '--dir', dir, '--insecure-dev-key-file'],
      unix(dir),
    );
    const acknowledged: { tenant: string; keyId: string; key: Buffer; wrapped: Buffer }[] = [];
    const c = keyd.client(undefined, 'writer');
    const tenants = ['t1', 't2', 't3', 't4'];
    for (const tenant of tenants) await c.call('createTenantKey', { tenant });
    let stop = false;
    const progress = new EventEmitter();
    const workers = Array.from({ length: 8 }, async (_, i) => {
      for (let n = 0; !stop; n++) {
        const tenant = tenants[(i + n) % tenants.length] as string;
        try {
          if (n % 25 === 7) await c.call('rotateTenantKey', { tenant });
          const dk = await c.call('generateDataKey', { tenant, purpose: 'data' });
          acknowledged.push({ tenant, keyId: dk.keyId, key: Buffer.from(dk.key), wrapped: dk.wrapped });
          progress.emit('ack');
        } catch {
          return; // keyd died under us: what was acknowledged before counts
        }
      }
    });
    // Until 300 keys are acknowledged; a keyd that stops answering fails the test, not spins it.
    const enough = untilEvent(
      '300 acknowledged data keys',
      progress,
      'ack',
      () => acknowledged.length >= 300,
      60_000,
    );
    const ended = Promise.all(workers).then(() => {
      throw new Error(`every writer stopped after ${acknowledged.length} acknowledged keys`);
    });
    await Promise.race([enough, ended]);
    void ended.catch(() => undefined);
    await keyd.kill9();
    stop = true;
    await Promise.all(workers);

    keyd = await startKeyd(['--provider', 'dev-file', '--dir', dir, '--insecure-dev-key-file'], unix(dir));
    try {
      const r = keyd.client();
      for (const a of acknowledged) {
        const { key } = await r.call('unwrapDataKey', {
          tenant: a.tenant,
          purpose: 'data',
          keyId: a.keyId,
          wrapped: a.wrapped,
        });
        assert.ok(key.equals(a.key), `acknowledged data key ${a.keyId} unwraps to the same key`);
      }
    } finally {
      await keyd.stop();
    }

    const db = new Database(join(dir, 'keystore.sqlite'), { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      db.close();
    }
    const service = createKeyService({
      dir,
      provider: new DevFileProvider(dir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    try {
      const verification = await service.verifyOpsLog();
      assert.equal(verification.ok, true, JSON.stringify(verification));
    } finally {
      await service.close();
    }

    // Invariant 2: no unwrapped data key in keyd's folder, in any encoding.
    const files = filesUnder(dir);
    for (const a of acknowledged.slice(0, 100)) {
      for (const enc of encodings(a.key)) {
        for (const f of files) assert.ok(!f.bytes.includes(enc), `${f.path} contains a plaintext data key`);
      }
    }
  });
});
