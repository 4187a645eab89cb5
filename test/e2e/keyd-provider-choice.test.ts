/**
 * `tresor keyd serve` and `tresor keyd init` outside `tresor dev`: no default root-key provider
 * (a usage error, exit 2, naming the choice), the dev file only with its insecure flag and never on
 * TCP. Each refusal leaves keyd's folder as it was.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { startKeyd, tresor } from '../helpers/keyd-process.ts';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tresor-e2e-keyd-choice-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// The environment of the machine running the tests must not choose for these commands.
const clean = { TRESOR_KEYD_PROVIDER: '', TRESOR_KEYD_INSECURE_DEV_KEY_FILE: '', TRESOR_CONFIG: '' };

describe('keyd root-key provider choice (CLI)', () => {
  for (const verb of ['serve', 'init']) {
    it(`keyd ${verb} without a provider is a usage error (exit 2) naming the choice`, () => {
      const dir = join(tempDir(), 'keyd');
      const r = tresor(['keyd', verb, '--dir', dir], { env: clean });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /no root-key provider chosen: pass --provider passphrase \| shamir \| pkcs11/);
      assert.equal(existsSync(dir), false, 'nothing was created');
    });

    it(`keyd ${verb} refuses the dev file without --insecure-dev-key-file`, () => {
      const dir = join(tempDir(), 'keyd');
      const r = tresor(['keyd', verb, '--provider', 'dev-file', '--dir', dir], { env: clean });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /TRESOR_ERR_CONFIG_INVALID: the dev-file provider .*--insecure-dev-key-file/);
      assert.equal(existsSync(dir), false, 'nothing was created');
    });
  }

  it('keyd serve refuses the dev file on a TCP listener, even with the flag', () => {
    const root = tempDir();
    const dir = join(root, 'keyd');
    const allowlist = join(root, 'allowlist.json');
    writeFileSync(allowlist, '[]');
    const r = tresor(
      [
        'keyd',
        'serve',
        '--provider',
        'dev-file',
        '--insecure-dev-key-file',
        '--dir',
        dir,
        '--listen',
        '127.0.0.1:7000',
      ],
      {
        env: {
          ...clean,
          TRESOR_KEYD_TLS_CERT: join(root, 'cert.pem'),
          TRESOR_KEYD_TLS_KEY: join(root, 'key.pem'),
          TRESOR_KEYD_TLS_CA: join(root, 'ca.pem'),
          TRESOR_KEYD_ALLOWLIST: allowlist,
        },
      },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /TRESOR_ERR_CONFIG_INVALID: refusing the dev-file provider on a TCP listener/);
    assert.equal(existsSync(dir), false, 'nothing was created');
  });

  it('the dev file with its flag initialises and serves on the Unix socket, warning loudly', async () => {
    const dir = tempDir();
    const init = tresor(['keyd', 'init', '--provider', 'dev-file', '--insecure-dev-key-file', '--dir', dir], {
      env: clean,
    });
    assert.equal(init.status, 0, init.stderr);
    assert.match(init.stderr, /DEV-ONLY/);
    assert.ok(readdirSync(dir).length > 0);
    // The env equivalent of the flag.
    const keyd = await startKeyd(
      ['--provider', 'dev-file', '--dir', dir],
      { kind: 'unix', path: join(dir, 'keyd.sock') },
      { ...clean, TRESOR_KEYD_INSECURE_DEV_KEY_FILE: '1' },
    );
    try {
      assert.equal((await keyd.client().call('status', {})).sealed, false);
      assert.match(keyd.stderr(), /DEV-ONLY plain root key file/);
    } finally {
      await keyd.stop();
    }
  });
});
