/**
 * keyd's root-key choice: there is no default provider, the dev file needs an explicit flag that
 * says it is insecure, and it never serves on a TCP listener.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkRootKeyChoice, resolveKeydConfig } from '../../src/keyd/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'tresor-keyd-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const invalid = (pattern: RegExp) => (err: unknown) => {
  assert.equal((err as { code?: string }).code, 'TRESOR_ERR_CONFIG_INVALID');
  assert.match((err as Error).message, pattern);
  return true;
};

/** The TCP listener settings that pass the listen check, so that only the provider is judged. */
function tcpFlags(): Record<string, unknown> {
  const allowlist = join(dir, 'allowlist.json');
  writeFileSync(allowlist, '[]');
  return {
    listen: '127.0.0.1:7000',
    tlsCert: join(dir, 'cert.pem'),
    tlsKey: join(dir, 'key.pem'),
    tlsCa: join(dir, 'ca.pem'),
    allowlist,
  };
}

describe('keyd root-key choice', () => {
  it('has no default provider: the check names the production choices and the dev flag', () => {
    const config = resolveKeydConfig({ dir }, {});
    assert.equal(config.provider, undefined);
    assert.throws(
      () => checkRootKeyChoice(config),
      invalid(/--provider passphrase \| shamir \| pkcs11.*--insecure-dev-key-file/),
    );
  });

  it('takes a production provider from the flag or TRESOR_KEYD_PROVIDER', () => {
    assert.equal(checkRootKeyChoice(resolveKeydConfig({ dir, provider: 'passphrase' }, {})), 'passphrase');
    assert.equal(
      checkRootKeyChoice(resolveKeydConfig({ dir }, { TRESOR_KEYD_PROVIDER: 'shamir' })),
      'shamir',
    );
  });

  it('refuses the dev file without the insecure flag', () => {
    const config = resolveKeydConfig({ dir, provider: 'dev-file' }, {});
    assert.equal(config.insecureDevKeyFile, false);
    assert.throws(() => checkRootKeyChoice(config), invalid(/needs --insecure-dev-key-file/));
  });

  it('accepts the dev file on a Unix socket with the flag or TRESOR_KEYD_INSECURE_DEV_KEY_FILE=1', () => {
    const byFlag = resolveKeydConfig({ dir, provider: 'dev-file', insecureDevKeyFile: true }, {});
    assert.equal(checkRootKeyChoice(byFlag), 'dev-file');
    const byEnv = resolveKeydConfig(
      { dir, provider: 'dev-file' },
      { TRESOR_KEYD_INSECURE_DEV_KEY_FILE: '1' },
    );
    assert.equal(checkRootKeyChoice(byEnv), 'dev-file');
  });

  it('refuses the dev file on a TCP listener, even with the flag', () => {
    const config = resolveKeydConfig(
      { dir, provider: 'dev-file', insecureDevKeyFile: true, ...tcpFlags() },
      {},
    );
    assert.equal(config.listen.kind, 'tls');
    assert.throws(
      () => checkRootKeyChoice(config),
      invalid(/refusing the dev-file provider on a TCP listener/),
    );
  });

  it('refuses an unknown provider name', () => {
    assert.throws(
      () => resolveKeydConfig({ dir, provider: 'plain' }, {}),
      invalid(/provider must be one of/),
    );
  });
});
