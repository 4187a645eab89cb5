/**
 * Two `tresor init` processes on one new data folder at the same moment (two operators, or a retried
 * script): the control store's migrations run once, under one write lock, and exactly one first
 * operator admin is made — the check and the insert are one transaction. The others are refused
 * with CONFLICT (exit 1).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { tresor } from './cli-run.ts';

describe('tresor init, three at once on a new data folder', () => {
  const root = mkdtempSync(join(tmpdir(), 'tresor-init-race-'));
  const dataDir = join(root, 'data');
  after(() => rmSync(root, { recursive: true, force: true }));

  it('makes one first operator admin and refuses the others with CONFLICT', async () => {
    const runs = await Promise.all(
      ['first', 'second', 'third'].map((name) =>
        tresor(['init', '--data-dir', dataDir, '--email', `${name}@init.test`, '--json']),
      ),
    );
    const made = runs.filter((r) => r.status === 0);
    const refused = runs.filter((r) => r.status !== 0);
    assert.equal(made.length, 1, runs.map((r) => `${r.status}: ${r.stderr}`).join('\n'));
    for (const r of refused) {
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /TRESOR_ERR_CONFLICT/);
    }
    const db = new Database(join(dataDir, 'control.sqlite'), { readonly: true });
    try {
      assert.equal(db.prepare("SELECT id FROM people WHERE role = 'operator-admin'").all().length, 1);
      const applied = db.prepare('SELECT name FROM kysely_migration').all() as { name: string }[];
      assert.equal(new Set(applied.map((m) => m.name)).size, applied.length, 'each migration once');
    } finally {
      db.close();
    }
  });
});
