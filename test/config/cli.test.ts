/**
 * `tresor config check FILE` lists every problem of a config file and exits 1, or prints "ok" and
 * exits 0; `tresor config show` prints the resolved configuration without its secrets. Both run
 * as an operator runs them: the real bin in a child process.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'tresor.js');

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tresor-config-cli-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the bin with only the given TRESOR_* variables (the test runner's own are not passed on). */
function tresor(args: string[], env: Record<string, string> = {}) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRESOR_')));
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: dir,
    env: { ...base, NO_COLOR: '1', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.error, undefined, String(r.error));
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('tresor config', () => {
  it('check: "ok" and exit 0 for a valid file', () => {
    const file = join(dir, 'good.json');
    writeFileSync(
      file,
      JSON.stringify({ dataDir: 'data', server: { port: 9443 }, keyd: { provider: 'dev-file' } }),
    );
    const r = tresor(['config', 'check', file]);
    assert.equal(r.stdout, 'ok\n');
    assert.equal(r.status, 0);
  });

  it('check: every problem, one per line with its path, and exit 1 for a broken file', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({
        server: { port: 'eighty', colour: 'red', timeouts: { headersMs: 5 }, tls: { certFile: 'c.pem' } },
        keyd: { provider: 'hsm' },
      }),
    );
    const r = tresor(['config', 'check', file]);
    assert.equal(r.status, 1);
    assert.deepEqual(r.stdout.trim().split('\n').toSorted(), [
      'TLS needs both a certificate file (tlsCert) and a key file (tlsKey)',
      'config file keyd.provider must be one of dev-file, passphrase, shamir, pkcs11',
      'config file server.port must be an integer from 0 to 65535',
      'config file server.timeouts.headersMs must be an integer from 1000 to 120000',
      'config file: unknown setting server.colour',
    ]);
    const json = tresor(['config', 'check', file, '--json']);
    assert.equal(json.status, 1);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; problems: string[] };
    assert.equal(parsed.ok, false);
    assert.equal(parsed.problems.length, 5);
  });

  it('check: a file that does not parse, and one that does not exist', () => {
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{"server": ');
    const r = tresor(['config', 'check', file]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /is not readable JSON/);
    const gone = tresor(['config', 'check', join(dir, 'nope.json')]);
    assert.equal(gone.status, 1);
    assert.match(gone.stdout, /does not exist/);
  });

  it('show: the resolved config, the secret from its *_FILE redacted', () => {
    const secretFile = join(dir, 'tls.pass');
    writeFileSync(secretFile, 'hunter2-cli-secret\n', { mode: 0o600 });
    const r = tresor(['config', 'show', '--json', '--tls-cert', 'c.pem', '--tls-key', 'k.pem'], {
      TRESOR_TLS_KEY_PASSPHRASE_FILE: secretFile,
      TRESOR_PORT: '9555',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /hunter2/);
    const shown = JSON.parse(r.stdout) as { port: number; tls: { keyPassphrase?: string } };
    assert.equal(shown.port, 9555);
    assert.equal(shown.tls.keyPassphrase, '[redacted]');
  });
});
