// backends: sqlite (file sizes and SQLite's dbstat are exact; PostgreSQL's relation sizes depend on when autovacuum ran)
/**
 * The disk an audited read costs in the live store, measured: N reads of one record of the tenant each
 * go through the control store's outbox (src/audit/read-outbox.ts), the sequencer and outbox removal, in rounds as a server moves them; then the
 * WAL is checkpointed into both files and their growth over the empty deployment is divided by N.
 * File sizes are deterministic (one writer, fixed events), so the bounds below are asserted, and the
 * per-table bytes (SQLite's dbstat) are reported: docs/audit.md's table "Disk per audited read" is
 * made from them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { CONTROL_SOURCE } from '../../src/audit/sequencer.ts';
import { openOutboxRig, TENANT } from './fixtures/outbox-rig.ts';

/** Reads, and reads per round (one sequencer pass and one removal each). */
const N = 2048;
const ROUND = 128;

const dir = mkdtempSync(join(tmpdir(), 'tresor-disk-per-read-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const CONTROL = join(dir, 'control.sqlite');
const TENANT_FILE = join(dir, 'tenants', `${TENANT}.sqlite`);

/** Checkpoints the WAL into the file (nothing else has it open) and answers the file's bytes and its tables' bytes. */
interface Measure {
  bytes: number;
  /** Per table or index: its pages' bytes, of which payload (the rows' bytes) and unused. */
  tables: Map<string, { bytes: number; payload: number; unused: number }>;
}

function measure(path: string): Measure {
  const db = new Database(path, { fileMustExist: true });
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
    const rows = db
      .prepare(
        'SELECT name, sum(pgsize) AS bytes, sum(payload) AS payload, sum(unused) AS unused FROM dbstat GROUP BY name',
      )
      .all() as { name: string; bytes: number; payload: number; unused: number }[];
    const freelist = db.pragma('freelist_count', { simple: true }) as number;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const tables: Measure['tables'] = new Map(rows.map((r) => [r.name, r]));
    tables.set('(free pages)', { bytes: freelist * pageSize, payload: 0, unused: freelist * pageSize });
    return { bytes: statSync(path).size, tables };
  } finally {
    db.close();
  }
}

describe('disk per audited read', () => {
  test(`${N} reads: what the tenant file and the control store grow by`, async (t) => {
    let rig = await openOutboxRig(dir, { kind: 'sqlite' }, { removeEveryMs: 3_600_000 });
    await rig.sequencer.start();
    await rig.close();
    const before = { control: measure(CONTROL), tenant: measure(TENANT_FILE) };

    rig = await openOutboxRig(dir, { kind: 'sqlite' }, { removeEveryMs: 3_600_000 });
    try {
      await rig.sequencer.start();
      for (let from = 0; from < N; from += ROUND) {
        await rig.read(from, ROUND);
        rig.sequencer.notify(TENANT);
        rig.sequencer.notify(CONTROL_SOURCE);
        await rig.sequencer.drain();
        await rig.sequencer.removeMoved();
      }
      assert.equal(rig.sequencer.treeHead().size, N);
    } finally {
      await rig.close();
    }
    const now = { control: measure(CONTROL), tenant: measure(TENANT_FILE) };
    const perRead = (a: number, b: number) => (b - a) / N;
    const growth = {
      control: perRead(before.control.bytes, now.control.bytes),
      tenant: perRead(before.tenant.bytes, now.tenant.bytes),
    };
    for (const [file, m0, m1] of [
      ['control', before.control, now.control],
      ['tenant', before.tenant, now.tenant],
    ] as const) {
      for (const [name, now] of m1.tables) {
        const was = m0.tables.get(name) ?? { bytes: 0, payload: 0, unused: 0 };
        const grew = perRead(was.bytes, now.bytes);
        const payload = perRead(was.payload, now.payload);
        const unused = perRead(was.unused, now.unused);
        if (grew !== 0)
          t.diagnostic(
            `${file} ${name}: ${grew.toFixed(1)} B per read (payload ${payload.toFixed(1)}, unused ${unused.toFixed(1)}, b-tree headers ${(grew - payload - unused).toFixed(1)})`,
          );
      }
    }
    t.diagnostic(
      `per read: control ${growth.control.toFixed(1)} B, tenant ${growth.tenant.toFixed(1)} B, total ${(growth.control + growth.tenant).toFixed(1)} B`,
    );
    // A read's event goes to the control store's outbox: a read writes nothing to the tenant's file.
    assert.equal(now.tenant.bytes, before.tenant.bytes, 'the tenant file does not grow with reads');
    // The log: leaf blocks ~16 B (these reads' entries differ only in index, time and request id),
    // leaf hash ~46 B, level ≥ 4 nodes ~6 B, tenant entries ~8 B, and the free pages of the control
    // outbox's last round (~30 B).
    assert.ok(growth.control <= 150, `the control store grows by ${growth.control} B per read`);
    // Issue 19's bound for the live store, both files.
    assert.ok(
      growth.control + growth.tenant <= 300,
      `an audited read costs ${growth.control + growth.tenant} B`,
    );
  });
});
