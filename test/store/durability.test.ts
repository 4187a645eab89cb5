import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import { RECORDS_MIGRATIONS, type RecordsDb } from './fixtures/records.ts';

const WRITER = join(import.meta.dirname, 'fixtures', 'acked-writer.ts');
/** Acknowledged writes to see before the kill: enough that many batches were in flight. */
const KILL_AFTER = 3000;
/** Far more than the writer needs for KILL_AFTER writes (a few seconds). */
const WRITE_TIMEOUT_MS = 120_000;

/** Runs the writer until it has acknowledged KILL_AFTER writes, SIGKILLs it, returns every acked id. */
function writeUntilKilled(
  path: string,
  mode: 'control' | 'tenant',
): Promise<{ acked: string[]; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, path, mode], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const acked: string[] = [];
    let partial = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? ''; // an id is acknowledged only once its whole line arrived
      acked.push(...lines);
      if (acked.length >= KILL_AFTER && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    // A writer that stalls is killed at the deadline, and the test fails saying how far it got.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `the writer acknowledged only ${acked.length} of ${KILL_AFTER} writes in ${WRITE_TIMEOUT_MS} ms`,
        ),
      );
    }, WRITE_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      clearTimeout(timer);
      resolve({ acked, signal });
    });
  });
}

describe('SQLite store durability', () => {
  for (const [mode, how] of [
    ['control', 'synchronous=FULL, SQLite checkpoints'],
    ['tenant', "the store's own fdatasync, checkpoints in a worker thread"],
  ] as const)
    it(`keeps every write acknowledged before kill -9, with its audit event, in a file that passes integrity_check (${how})`, async () => {
      await killAndCheck(mode);
    });
});

async function killAndCheck(mode: 'control' | 'tenant'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-durability-'));
  try {
    const path = join(dir, 'store.sqlite');
    const { acked, signal } = await writeUntilKilled(path, mode);
    assert.equal(signal, 'SIGKILL');
    assert.ok(acked.length >= KILL_AFTER, `only ${acked.length} writes were acknowledged`);

    const store = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS);
    try {
      const integrity = await sql<{ integrity_check: string }>`PRAGMA integrity_check`.execute(store.db);
      assert.deepEqual(integrity.rows, [{ integrity_check: 'ok' }]);

      const records = new Set((await store.db.selectFrom('records').select('id').execute()).map((r) => r.id));
      const audited = new Set(
        (await store.db.selectFrom('audit_events').select('event').execute()).map(
          (e) => JSON.parse(e.event).target.recordIds[0] as string,
        ),
      );
      const missing = acked.filter((id) => !records.has(id));
      const unaudited = acked.filter((id) => !audited.has(id));
      assert.deepEqual(missing, []);
      assert.deepEqual(unaudited, []);
      // A record and its audit event commit together: no record without its event, and vice versa.
      assert.deepEqual(
        [...records].filter((id) => !audited.has(id)),
        [],
      );
      assert.equal(records.size, audited.size);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
