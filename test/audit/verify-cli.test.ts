/**
 * `tresor audit verify` and `tresor audit export` as an operator runs them: the real command on a
 * real control store, tampered with the sqlite3 command-line tool as an attacker holding the file
 * would; exit 0 when the log verifies, 1 with the first bad index on any change, 2 on a usage error.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';
import { buildAuditLogFixture, removeAuditLogFixtures } from './log-fixture.ts';

function tresor(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.TRESOR_DATA_DIR;
  delete env.TRESOR_AUDIT_PUBLIC_KEY;
  const r = spawnSync(process.execPath, [TRESOR_BIN, ...args], { encoding: 'utf8', env, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

after(removeAuditLogFixtures);

describe('tresor audit verify', () => {
  it('exits 0 on a clean store and 1 naming the first bad index once an entry is changed', async () => {
    const f = await buildAuditLogFixture({ entries: 90, checkpointEvery: 25 });
    const ok = tresor('audit', 'verify', '--data-dir', f.dataDir, '--public-key', f.verifierKey);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /^OK: /);

    // The attacker edits the stored leaf (the fixture shows the leaves as rows while it runs).
    f.tamper((db) =>
      db.exec(
        `UPDATE audit_log SET leaf = replace(leaf, '"outcome":"success"', '"outcome":"failure"') WHERE idx = 33;`,
      ),
    );
    const bad = tresor('audit', 'verify', '--data-dir', f.dataDir, '--public-key', f.verifierKey);
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /first bad index: 33\n/);
    assert.match(bad.stdout, /entry-modified at index 33/);

    const json = tresor('audit', 'verify', '--data-dir', f.dataDir, '--public-key', f.verifierKey, '--json');
    assert.equal(json.status, 1);
    const report = JSON.parse(json.stdout) as {
      ok: boolean;
      firstBadIndex: number;
      problems: { kind: string }[];
    };
    assert.equal(report.ok, false);
    assert.equal(report.firstBadIndex, 33);
    assert.equal(report.problems[0]?.kind, 'entry-modified');
  });

  it('names a deleted entry, reads the key from a file and the data folder from TRESOR_DATA_DIR', async () => {
    const f = await buildAuditLogFixture({ entries: 60, checkpointEvery: 25 });
    f.tamper((db) => db.exec('DELETE FROM audit_log WHERE idx = 12;'));
    const keyFile = join(f.dataDir, 'audit.pub');
    writeFileSync(keyFile, `${f.verifierKey}\n`);
    const r = spawnSync(process.execPath, [TRESOR_BIN, 'audit', 'verify', '--public-key', `@${keyFile}`], {
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1', TRESOR_DATA_DIR: f.dataDir },
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /first bad index: 12\n/);
    assert.match(r.stdout, /gap at index 12: entry 12 is missing/);
  });

  it('detects a rollback of the store to an older copy through the witness', async () => {
    const f = await buildAuditLogFixture({ entries: 50, checkpointEvery: 25 });
    const old = readFileSync(f.dbPath);
    await f.append(25);
    writeFileSync(f.dbPath, old);
    const r = tresor('audit', 'verify', '--data-dir', f.dataDir, '--public-key', f.verifierKey);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /first bad index: 50\n/);
    assert.match(r.stdout, /rollback at index 50/);
    const blind = tresor(
      'audit',
      'verify',
      '--data-dir',
      f.dataDir,
      '--public-key',
      f.verifierKey,
      '--no-witness',
    );
    assert.equal(blind.status, 0, 'without the witness the older copy is self-consistent');
  });

  it('exits 2 on usage errors', async () => {
    const f = await buildAuditLogFixture({ entries: 3, checkpointEvery: 25 });
    assert.equal(tresor('audit', 'verify', '--data-dir', f.dataDir).status, 2, 'no key');
    const badKey = tresor('audit', 'verify', '--data-dir', f.dataDir, '--public-key', 'name+00000000+AAAA');
    assert.equal(badKey.status, 2);
    assert.match(badKey.stderr, /invalid verifier key/);
    const noStore = tresor(
      'audit',
      'verify',
      '--data-dir',
      join(f.dataDir, 'nope'),
      '--public-key',
      f.verifierKey,
    );
    assert.equal(noStore.status, 2);
    const help = tresor('audit', 'verify', '--help');
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--public-key/);
  });
});

describe('tresor audit export', () => {
  it('writes a 0600 file that verifies offline with only the key, and a tampered line fails', async () => {
    const f = await buildAuditLogFixture({ entries: 80, checkpointEvery: 25 });
    const file = join(f.dataDir, 'audit-export.jsonl');
    // Plaintext, to tamper with one line; encrypted archives are test/cli/audit-export.test.ts's.
    const exported = tresor('audit', 'export', '--data-dir', f.dataDir, '--out', file, '--plaintext');
    assert.equal(exported.status, 0, exported.stderr);
    assert.match(exported.stderr, /WARNING: --plaintext writes the audit log unencrypted/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(
      tresor('audit', 'export', '--data-dir', f.dataDir, '--out', file, '--plaintext').status,
      2,
      'never overwrites',
    );

    const ok = tresor('audit', 'verify', '--export', file, '--public-key', f.verifierKey);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /entries 80, store checkpoints 4/);

    const lines = readFileSync(file, 'utf8').split('\n');
    lines[1 + 60] = (lines[1 + 60] as string).replace(
      /"at\\":\\"2026-11-02T09:00:1/,
      '"at\\":\\"2026-11-02T09:00:2',
    );
    assert.notEqual(lines.join('\n'), readFileSync(file, 'utf8'));
    writeFileSync(file, lines.join('\n'));
    const bad = tresor('audit', 'verify', '--file', file, '--public-key', f.verifierKey);
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /first bad index: 50\n/);
    assert.match(bad.stdout, /root-mismatch at index 50: .*somewhere in \[50, 75\)/);

    lines[1 + 10] = (lines[1 + 10] as string).slice(0, 40);
    writeFileSync(file, lines.join('\n'));
    const cut = tresor('audit', 'verify', '--file', file, '--public-key', f.verifierKey);
    assert.equal(cut.status, 1);
    assert.match(cut.stdout, /first bad index: 10\n/);
  });
});
