/**
 * keyd's per-tenant-key encryption budget (NIST SP 800-38D §8.3) on its SQLite store: one keyd
 * process per store — the store holds SQLite's write lock exclusively while keyd runs, so a second
 * keyd process on the same folder is refused before it can count anything, and the first keeps
 * counting. (Several keyd instances share a PostgreSQL store instead, claiming the budget in blocks
 * that never pass the limit: test/keyd/keyd-instances.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { initDevFile } from '../../src/keyd/root/dev-file.ts';
import { KEY_STORE_FILE } from '../../src/keyd/store.ts';
import { type KeydProcess, startKeyd, TRESOR_BIN } from '../helpers/keyd-process.ts';

describe('keyd encryption budget with two keyd processes over one store', () => {
  let dir: string;
  let keyd: KeydProcess;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'guarantees-keyd-budget-'));
    mkdirSync(join(dir, 'keyd'), { mode: 0o700 });
    initDevFile(join(dir, 'keyd'));
    keyd = await startKeyd(
      ['--provider', 'dev-file', '--dir', join(dir, 'keyd'), '--insecure-dev-key-file'],
      {
        kind: 'unix',
        path: join(dir, 'keyd', 'keyd.sock'),
      },
    );
  });

  after(async () => {
    await keyd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a second keyd process on the same store, and the first keeps counting every wrap', async () => {
    const client = keyd.client();
    await client.call('createTenantKey', { tenant: 'acme' });
    for (let i = 0; i < 5; i++) await client.call('generateDataKey', { tenant: 'acme', purpose: 'data' });

    const second = spawnSync(
      process.execPath,
      [
        TRESOR_BIN,
        'keyd',
        'serve',
        '--provider',
        'dev-file',
        '--dir',
        join(dir, 'keyd'),
        '--insecure-dev-key-file',
        '--socket',
        join(dir, 'second.sock'),
      ],
      { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } },
    );
    assert.notEqual(second.status, 0, 'the second keyd must not start');
    assert.equal(second.signal, null, 'it exited on its own, not at the deadline');
    assert.match(second.stderr, /in use by another keyd process/);

    for (let i = 0; i < 5; i++) await client.call('generateDataKey', { tenant: 'acme', purpose: 'data' });
    await keyd.stop();
    const db = new Database(join(dir, 'keyd', KEY_STORE_FILE), { readonly: true });
    try {
      const row = db
        .prepare<[string], { encryptions: number }>(
          "SELECT encryptions FROM tenant_keys WHERE tenant = ? AND state = 'active'",
        )
        .get('acme');
      assert.equal(row?.encryptions, 10, 'every data key wrapped was counted, durably');
    } finally {
      db.close();
    }
    keyd = await startKeyd(
      ['--provider', 'dev-file', '--dir', join(dir, 'keyd'), '--insecure-dev-key-file'],
      {
        kind: 'unix',
        path: join(dir, 'keyd', 'keyd.sock'),
      },
    );
  });
});
