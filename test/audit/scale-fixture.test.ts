// backends: sqlite postgres
/**
 * The scale bench's audit-log generator (bench/fixtures-audit.ts) writes a log a real deployment
 * accepts: entries appended directly to the control store of a stack (real keyd process, the
 * server in process) while its server is stopped; the next start signs a checkpoint of the grown
 * tree with keyd, and `tresor audit verify` — the real command, its own process — verifies every
 * entry, the stored tree and the checkpoints.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { growAuditLog } from '../../bench/fixtures-audit.ts';
import { openControlOf } from '../../src/server/backend.ts';
import { onPostgres } from '../helpers/backend.ts';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

const GROWN_BY = 3000;
const SIGN_WAIT_MS = 30_000;

describe('scale bench: audit-log fixture', () => {
  let stack: TresorStack;
  before(async () => {
    stack = await startTresorStack({ server: 'in-process', logLevel: 'warn' });
  });
  after(async () => {
    await stack?.stop();
  });

  it('grows the log in the store; the next start signs it and `tresor audit verify` accepts it', async () => {
    const server = stack.server;
    assert.ok(server);
    const tenant = await server.tenants.createTenant(
      { name: 'Fixture tenant' },
      { actor: { kind: 'system', id: 'test' } },
    );
    const publicKey = await server.audit.verifierKey();
    await stack.stopServer();

    const control = await openControlOf({ dataDir: stack.dataDir, database: stack.database });
    let grown: Awaited<ReturnType<typeof growAuditLog>>;
    try {
      const first = await growAuditLog({
        control,
        size: 0,
        tenant: tenant.id,
        numberedParameters: onPostgres,
      });
      assert.equal(first.size, first.from, 'a smaller target appends nothing');
      grown = await growAuditLog({
        control,
        size: first.size + GROWN_BY,
        tenant: tenant.id,
        numberedParameters: onPostgres,
      });
    } finally {
      await control.close();
    }
    assert.equal(grown.size - grown.from, GROWN_BY);

    await stack.startServer();
    const restarted = stack.server;
    assert.ok(restarted);
    const deadline = Date.now() + SIGN_WAIT_MS;
    for (;;) {
      const latest = await restarted.audit.reader.latestCheckpoint();
      if (latest !== null && latest.size >= grown.size) break;
      assert.ok(Date.now() < deadline, `no checkpoint of ${grown.size} entries within ${SIGN_WAIT_MS} ms`);
      await sleep(100);
    }
    const entry = await restarted.audit.reader.entries({ from: grown.from + 7, limit: 1 });
    assert.equal(entry[0]?.index, grown.from + 7);
    const leaf = JSON.parse(entry[0]?.leaf ?? '{}') as { index: number; tenant: string; action: string };
    assert.deepEqual([leaf.index, leaf.tenant, leaf.action], [grown.from + 7, tenant.id, 'record.read']);
    await stack.stopServer();

    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    for (const key of Object.keys(env)) if (key.startsWith('TRESOR_')) delete env[key];
    if (stack.database.kind === 'postgres') env.TRESOR_DATABASE_URL = stack.database.url;
    const r = spawnSync(
      process.execPath,
      [TRESOR_BIN, 'audit', 'verify', '--data-dir', stack.dataDir, '--public-key', publicKey, '--json'],
      { encoding: 'utf8', env, timeout: 120_000 },
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const report = JSON.parse(r.stdout) as { ok: boolean; size: number; verifiedSize: number };
    assert.equal(report.ok, true);
    assert.ok(report.size >= grown.size, `verified ${report.size} entries, fewer than ${grown.size}`);
    assert.ok(report.verifiedSize >= grown.size, 'the grown entries are covered by a signed checkpoint');
  });
});
