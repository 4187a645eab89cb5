import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditEvent } from '../../src/audit/event.ts';
import { resolveServerConfig } from '../../src/config/server-config.ts';
import { changedSections, configDigests, recordConfigAtStart } from '../../src/server/config-audit.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/store.ts';

describe('config changes in the audit log', () => {
  let dir: string;
  let control: SqliteStore<ControlDB>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-config-audit-'));
    control = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
  });
  after(async () => {
    await control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const events = async () =>
    (await control.db.selectFrom('audit_events').select('event').orderBy('seq').execute()).map(
      (r) => JSON.parse(r.event) as AuditEvent,
    );

  it('records each start, and names the sections that changed since the last one — never a value', async () => {
    const env = { TRESOR_DATA_DIR: dir };
    const first = resolveServerConfig({}, env);
    assert.deepEqual(await recordConfigAtStart(control, first), []);
    assert.deepEqual(await recordConfigAtStart(control, first), [], 'the same config changes nothing');
    const longer = resolveServerConfig({}, { ...env, TRESOR_ACCESS_MAX_GRANT_MINUTES: '120' });
    assert.deepEqual(await recordConfigAtStart(control, longer), ['access']);
    const list = await events();
    assert.deepEqual(
      list.map((e) => e.action),
      ['config.start', 'config.start', 'config.change', 'config.start'],
    );
    assert.deepEqual(list[2]?.target, { changed: ['access'] });
    assert.equal(list[0]?.target?.first, true);
    assert.equal(list[0]?.actor.kind, 'system');
    const raw = JSON.stringify(list);
    assert.ok(!raw.includes('"maxGrantMinutes"') && !raw.includes(dir), 'no config value');
  });

  it('digests the redacted config per section (secrets redacted before hashing)', () => {
    const a = configDigests(resolveServerConfig({}, { TRESOR_DATA_DIR: dir }));
    const b = configDigests(resolveServerConfig({}, { TRESOR_DATA_DIR: dir, TRESOR_CLOSE_GRACE_DAYS: '7' }));
    assert.deepEqual(changedSections(a, b), ['closeGraceDays']);
    assert.deepEqual(changedSections(a, { ...a, extra: 'x' }), ['extra']);
    for (const d of Object.values(a)) assert.match(d, /^[A-Za-z0-9_-]{43}$/);
  });
});
