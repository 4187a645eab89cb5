/**
 * `tresor audit export` writes an age archive, never plaintext unless asked: to age recipients or to
 * a passphrase (from a file, TRESOR_EXPORT_PASSPHRASE_FILE or stdin, never the command line), and
 * `tresor audit verify --export` opens it with an identity file or the passphrase. The real
 * command on a real control store; the archive is read back as bytes to see that nothing of the
 * log is in it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { buildAuditLogFixture, fixtureEntry, removeAuditLogFixtures } from '../audit/log-fixture.ts';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function tresor(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Run {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...options.env };
  delete env.TRESOR_DATA_DIR;
  delete env.TRESOR_AUDIT_PUBLIC_KEY;
  if (options.env?.TRESOR_EXPORT_PASSPHRASE_FILE === undefined) delete env.TRESOR_EXPORT_PASSPHRASE_FILE;
  const r = spawnSync(process.execPath, [TRESOR_BIN, ...args], {
    encoding: 'utf8',
    env,
    input: options.input ?? '',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** What a plaintext export would show of the fixture's log: no byte of it may be in an archive. */
function assertNoPlaintext(file: string): void {
  const bytes = readFileSync(file);
  assert.equal(bytes.subarray(0, 22).toString('latin1'), 'age-encryption.org/v1\n');
  const marker = fixtureEntry(7).requestId;
  for (const needle of [marker, '"action"', 'action', 'record.read', 'tresor-audit-export', '203.0.113.']) {
    assert.equal(bytes.includes(Buffer.from(needle)), false, `the archive shows ${needle}`);
  }
}

const ENTRIES = 80;

after(removeAuditLogFixtures);

describe('tresor audit export (encrypted)', () => {
  it('encrypts to an age recipient; it verifies with the identity, not without it or with another', async () => {
    const f = await buildAuditLogFixture({ entries: ENTRIES, checkpointEvery: 25 });
    const identity = await generateIdentity();
    const other = await generateIdentity();
    const identityFile = join(f.dataDir, 'auditor.key');
    const otherFile = join(f.dataDir, 'other.key');
    writeFileSync(identityFile, `# an auditor's key\n${identity}\n`, { mode: 0o600 });
    writeFileSync(otherFile, `${other}\n`, { mode: 0o600 });
    const file = join(f.dataDir, 'audit.age');

    const exported = tresor([
      'audit',
      'export',
      '--data-dir',
      f.dataDir,
      '--out',
      file,
      '--recipient',
      await identityToRecipient(identity),
      '--recipient',
      await identityToRecipient(other),
    ]);
    assert.equal(exported.status, 0, exported.stderr);
    assert.match(exported.stdout, /exported 80 entries and 4 checkpoints to .* \(age-encrypted\)/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assertNoPlaintext(file);

    const verify = (...extra: string[]) =>
      tresor(['audit', 'verify', '--export', file, '--public-key', f.verifierKey, ...extra]);
    const ok = verify('--identity', identityFile);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /entries 80, store checkpoints 4, .*verified up to 80/);
    assert.equal(verify('--identity', otherFile).status, 0, 'every recipient can open it');

    const none = verify();
    assert.equal(none.status, 2);
    assert.match(none.stderr, /the export is encrypted: give --identity/);
    const stranger = join(f.dataDir, 'stranger.key');
    writeFileSync(stranger, `${await generateIdentity()}\n`);
    const wrong = verify('--identity', stranger);
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /cannot be opened with the given identity or passphrase/);

    // One changed ciphertext byte in the payload: the archive no longer verifies.
    const bytes = readFileSync(file);
    const at = bytes.length - 100;
    bytes[at] = (bytes[at] as number) ^ 0x01;
    writeFileSync(file, bytes);
    const tampered = verify('--identity', identityFile);
    assert.equal(tampered.status, 1, tampered.stdout + tampered.stderr);
    assert.match(tampered.stdout, /^FAILED: .*\n.*\n {2}first bad index/);
    assert.match(tampered.stdout, /the file cannot be read/);
  });

  it('encrypts to a passphrase from a file or TRESOR_EXPORT_PASSPHRASE_FILE, opened by the passphrase on stdin', async () => {
    const f = await buildAuditLogFixture({ entries: ENTRIES, checkpointEvery: 25 });
    const passphrase = 'correct horse battery staple';
    const passphraseFile = join(f.dataDir, 'passphrase.txt');
    writeFileSync(passphraseFile, `${passphrase}\n`, { mode: 0o600 });
    const file = join(f.dataDir, 'audit.age');

    const exported = tresor(['audit', 'export', '--data-dir', f.dataDir, '--out', file], {
      env: { TRESOR_EXPORT_PASSPHRASE_FILE: passphraseFile },
    });
    assert.equal(exported.status, 0, exported.stderr);
    assertNoPlaintext(file);
    assert.equal(exported.stdout.includes(passphrase) || exported.stderr.includes(passphrase), false);

    const verify = (input: string) =>
      tresor(['audit', 'verify', '--export', file, '--public-key', f.verifierKey, '--passphrase-stdin'], {
        input,
      });
    const ok = verify(`${passphrase}\n`);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /entries 80, store checkpoints 4/);
    const wrong = verify('not the passphrase at all\n');
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /cannot be opened with the given identity or passphrase/);

    const fromStdin = join(f.dataDir, 'audit-stdin.age');
    const piped = tresor(
      ['audit', 'export', '--data-dir', f.dataDir, '--out', fromStdin, '--passphrase-stdin'],
      { input: `${passphrase}\n` },
    );
    assert.equal(piped.status, 0, piped.stderr);
    assertNoPlaintext(fromStdin);
    const byFile = tresor([
      'audit',
      'verify',
      '--export',
      fromStdin,
      '--public-key',
      f.verifierKey,
      '--passphrase-file',
      passphraseFile,
    ]);
    assert.equal(byFile.status, 0, byFile.stdout + byFile.stderr);
  });

  it('refuses, with exit 2 and no file, an export without a recipient, passphrase or --plaintext', async () => {
    const f = await buildAuditLogFixture({ entries: 3, checkpointEvery: 25 });
    const file = join(f.dataDir, 'refused.age');
    const refusals: Array<[string[], RegExp, string?]> = [
      [[], /an export is encrypted: give --recipient/],
      [['--recipient', 'age1notarecipient'], /not an age recipient/],
      [['--passphrase-stdin'], /passphrase must be 12 to 1024 characters/, 'short\n'],
      [['--passphrase-stdin'], /passphrase must be 12 to 1024 characters/, ''],
      [['--plaintext', '--passphrase-stdin'], /give one of --recipient, a passphrase or --plaintext/],
      [['--passphrase-file', join(f.dataDir, 'missing.txt')], /cannot read the passphrase file/],
    ];
    for (const [flags, message, input] of refusals) {
      const r = tresor(
        ['audit', 'export', '--data-dir', f.dataDir, '--out', file, ...flags],
        input === undefined ? {} : { input },
      );
      assert.equal(r.status, 2, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(existsSync(file), false, `${flags.join(' ')} wrote a file`);
    }
    const passphraseOnArgv = tresor([
      'audit',
      'export',
      '--data-dir',
      f.dataDir,
      '--out',
      file,
      '--passphrase',
      'a passphrase on the command line',
    ]);
    assert.equal(passphraseOnArgv.status, 2, 'there is no flag that takes the passphrase itself');
    assert.equal(existsSync(file), false);
  });

  it('writes plaintext only with --plaintext, after a warning on stderr', async () => {
    const f = await buildAuditLogFixture({ entries: 5, checkpointEvery: 25 });
    const file = join(f.dataDir, 'audit.jsonl');
    const r = tresor(['audit', 'export', '--data-dir', f.dataDir, '--out', file, '--plaintext']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /WARNING: --plaintext writes the audit log unencrypted/);
    assert.match(r.stdout, /\(plaintext\)/);
    assert.ok(readFileSync(file, 'utf8').startsWith('{"format":"tresor-audit-export"'));
    const ok = tresor(['audit', 'verify', '--export', file, '--public-key', f.verifierKey]);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  });
});
