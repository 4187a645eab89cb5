/**
 * `tresor audit verify`'s core over real control stores: a clean log verifies; every change an
 * attacker holding the SQLite file can make — to a field of an entry, to an entry and its stored hash,
 * deleting, swapping, inserting, cutting the tail, rolling the whole file back, forging or
 * re-originating a checkpoint — is reported with the right first bad index. The leaf check accepts
 * exactly RFC 8785 canonical JSON, and the roots agree with the independent verifier.
 */
import assert from 'node:assert/strict';
import { copyFileSync, createWriteStream, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { readAuditExport, writeAuditExport } from '../../src/audit/export-file.ts';
import { openAuditLogReader } from '../../src/audit/log-reader.ts';
import { InMemoryMerkleTree, inclusionProof } from '../../src/audit/merkle.ts';
import {
  checkCanonicalObject,
  type ProblemKind,
  type VerifyReport,
  verifyAuditLog,
  verifyAuditLogAsync,
  verifyAuditLogInParallel,
} from '../../src/audit/verify.ts';
import { createWitness } from '../../src/audit/witness.ts';
import {
  independentLeafHash,
  independentOpenCheckpoint,
  independentVerifyInclusion,
} from './independent-verifier.ts';
import { type AuditLogFixture, buildAuditLogFixture, removeAuditLogFixtures } from './log-fixture.ts';

const ENTRIES = 120;
const EVERY = 32; // checkpoints at 32, 64, 96, 120

async function fixture(entries = ENTRIES): Promise<AuditLogFixture> {
  return buildAuditLogFixture({ entries, checkpointEvery: EVERY });
}

async function verifyStore(f: AuditLogFixture, options: { origin?: string } = {}): Promise<VerifyReport> {
  const witness: string[] = [];
  for await (const note of createWitness(f.witnessDir).all()) witness.push(note);
  const reader = openAuditLogReader(f.dbPath);
  try {
    const run = (entries: ReturnType<typeof reader.leafBatches>) =>
      verifyAuditLog({
        entries,
        checkpoints: reader.checkpoints(),
        witness,
        verifierKey: f.verifierKey,
        ...options,
      });
    // The verifier's way (batches of rows as one buffer), with batches smaller than a test log, row by
    // row as for an export, and on worker threads as the CLI does: all must give the same report.
    const report = run(reader.leafBatches());
    assert.deepEqual(run(reader.leafBatches(7)), report, 'batches of 7 rows');
    assert.deepEqual(run(reader.entries()), report, 'row by row');
    const inWorkers = await verifyAuditLogInParallel(
      {
        entries: reader.leafBatches(7),
        checkpoints: reader.checkpoints(),
        witness,
        verifierKey: f.verifierKey,
        ...options,
      },
      { workers: 2 },
    );
    assert.deepEqual(inWorkers, report, 'batches of 7 rows on 2 worker threads');
    return report;
  } finally {
    reader.close();
  }
}

function kinds(report: VerifyReport): ProblemKind[] {
  return report.problems.map((p) => p.kind);
}

function leafAt(f: AuditLogFixture, index: number): Record<string, unknown> {
  let leaf = '';
  f.tamper((db) => {
    leaf = db.prepare('SELECT leaf FROM audit_log WHERE idx = ?').pluck().get(index) as string;
  });
  return JSON.parse(leaf) as Record<string, unknown>;
}

function setLeaf(f: AuditLogFixture, index: number, leaf: string): void {
  f.tamper((db) => db.prepare('UPDATE audit_log SET leaf = ? WHERE idx = ?').run(leaf, index));
}

after(removeAuditLogFixtures);

describe('verifyAuditLog over a control store', () => {
  it('verifies a clean log: every entry, every checkpoint, the witness', async () => {
    const f = await fixture();
    const report = await verifyStore(f);
    assert.deepEqual(report.problems, []);
    assert.equal(report.ok, true);
    assert.equal(report.size, ENTRIES);
    assert.equal(report.checkpoints, 4);
    assert.equal(report.witnessCheckpoints, 4);
    assert.equal(report.verifiedSize, ENTRIES);
    assert.equal(report.firstBadIndex, null);
    assert.equal(report.origin, f.origin);
  });

  it('agrees with the independent RFC 9162 verifier on every checkpoint root', async () => {
    const f = await fixture();
    const reader = openAuditLogReader(f.dbPath);
    const tree = new InMemoryMerkleTree();
    for (const e of reader.entries()) tree.append(independentLeafHash(Buffer.from(e.leaf, 'utf8')));
    const notes = reader.checkpoints();
    reader.close();
    assert.equal((await verifyStore(f)).ok, true);
    for (const note of notes) {
      const cp = independentOpenCheckpoint(note, f.verifierKey);
      const size = Number(cp.size);
      for (const index of [0, size >> 1, size - 1]) {
        const proof = inclusionProof(tree, index, size);
        assert.ok(independentVerifyInclusion(tree.leafHash(index), BigInt(index), cp.size, proof, cp.root));
      }
    }
  });

  const fields: [string, (e: Record<string, unknown>) => void][] = [
    ['actor.id', (e) => ((e.actor as { id: string }).id = 'ak_attacker')],
    ['actor.kind', (e) => ((e.actor as { kind: string }).kind = 'system')],
    ['action', (e) => (e.action = 'record.list')],
    ['tenant', (e) => (e.tenant = 'tn_other')],
    ['target.collection', (e) => ((e.target as { collection: string }).collection = 'payroll')],
    ['target.recordIds', (e) => ((e.target as { recordIds: string[] }).recordIds = [])],
    ['target.fields', (e) => ((e.target as { fields: string[] }).fields = ['email'])],
    ['outcome', (e) => (e.outcome = 'failure')],
    ['at', (e) => (e.at = '2026-11-02T09:00:00.001Z')],
    ['requestId', (e) => (e.requestId = 'forged')],
    ['sourceAddress', (e) => (e.sourceAddress = '198.51.100.7')],
    ['userAgent', (e) => (e.userAgent = 'curl/8.0')],
    ['a new member', (e) => (e.note = 'added')],
    ['index', (e) => (e.index = 71)],
  ];
  for (const [field, change] of fields) {
    it(`reports a change of ${field} in a stored entry as entry-modified at its index`, async () => {
      const f = await fixture();
      const entry = leafAt(f, 70);
      change(entry);
      setLeaf(f, 70, canonicalJson(entry));
      const report = await verifyStore(f);
      assert.equal(report.ok, false);
      assert.equal(report.firstBadIndex, 70);
      assert.ok(report.problems.some((p) => p.kind === 'entry-modified' && p.index === 70));
      assert.ok(kinds(report).includes('root-mismatch'));
    });
  }

  it('reports an entry rewritten with its stored leaf hash as a root mismatch naming the range', async () => {
    const f = await fixture();
    const entry = leafAt(f, 70);
    entry.outcome = 'failure';
    const leaf = canonicalJson(entry);
    f.tamper((db) => {
      db.prepare('UPDATE audit_log SET leaf = ? WHERE idx = 70').run(leaf);
      db.prepare('UPDATE audit_nodes SET hash = ? WHERE level = 0 AND idx = 70').run(
        independentLeafHash(Buffer.from(leaf)),
      );
    });
    const report = await verifyStore(f);
    assert.deepEqual(kinds(report), ['root-mismatch']);
    assert.equal(report.firstBadIndex, 64);
    assert.match(report.problems[0]?.message ?? '', /somewhere in \[64, 96\)/);
    assert.equal(report.verifiedSize, 64);
  });

  it('still checks stored hashes row by row where a chunk of them was mangled', async () => {
    const f = await fixture();
    f.tamper((db) => db.exec('DELETE FROM audit_nodes WHERE level = 0 AND idx = 70'));
    setLeaf(f, 70, canonicalJson({ ...leafAt(f, 70), outcome: 'failure' }));
    setLeaf(f, 71, canonicalJson({ ...leafAt(f, 71), outcome: 'failure' }));
    const report = await verifyStore(f);
    assert.equal(report.firstBadIndex, 70);
    assert.deepEqual(
      report.problems.map((p) => [p.kind, p.index]),
      [
        ['entry-modified', 70],
        ['entry-modified', 71],
        ['root-mismatch', 64],
      ],
    );
    assert.match(report.problems[0]?.message ?? '', /no leaf hash is stored for entry 70/);
  });

  it('reports a leaf that is not canonical JSON, even with a matching stored hash', async () => {
    const f = await fixture();
    const leaf = JSON.stringify(leafAt(f, 5), null, 1);
    f.tamper((db) => {
      db.prepare('UPDATE audit_log SET leaf = ? WHERE idx = 5').run(leaf);
      db.prepare('UPDATE audit_nodes SET hash = ? WHERE level = 0 AND idx = 5').run(
        independentLeafHash(Buffer.from(leaf)),
      );
    });
    const report = await verifyStore(f);
    assert.equal(report.firstBadIndex, 5);
    assert.match(report.problems.find((p) => p.kind === 'entry-modified')?.message ?? '', /not canonical/);
  });

  it('reports a leaf whose stored bytes are not UTF-8, even with a stored hash of those bytes', async () => {
    const f = await fixture();
    // 0xFF in place of a letter: a decoder would show U+FFFD, but the bytes are what is hashed.
    const raw = Buffer.from(canonicalJson(leafAt(f, 9)), 'utf8');
    raw[raw.indexOf('record.') + 2] = 0xff;
    f.tamper((db) => {
      db.prepare('UPDATE audit_log SET leaf = CAST(? AS TEXT) WHERE idx = 9').run(raw);
      db.prepare('UPDATE audit_nodes SET hash = ? WHERE level = 0 AND idx = 9').run(independentLeafHash(raw));
    });
    const reader = openAuditLogReader(f.dbPath);
    let report: VerifyReport;
    try {
      report = verifyAuditLog({
        entries: reader.leafBatches(),
        checkpoints: reader.checkpoints(),
        verifierKey: f.verifierKey,
      });
    } finally {
      reader.close();
    }
    assert.equal(report.firstBadIndex, 9);
    assert.deepEqual(kinds(report), ['entry-modified', 'root-mismatch']);
    assert.match(report.problems[0]?.message ?? '', /entry 9 is not canonical JSON: not well-formed UTF-8/);
  });

  it('gives the one-thread report when batches outrun the worker and this thread checks some itself', async () => {
    const f = await fixture();
    setLeaf(f, 40, canonicalJson({ ...leafAt(f, 40), outcome: 'failure' }));
    f.tamper((db) => db.exec('DELETE FROM audit_log WHERE idx = 90'));
    const reader = openAuditLogReader(f.dbPath);
    try {
      const input = (rows: number) => ({
        entries: reader.leafBatches(rows),
        checkpoints: reader.checkpoints(),
        verifierKey: f.verifierKey,
      });
      const expected = verifyAuditLog(input(1));
      assert.equal(expected.firstBadIndex, 40);
      // 1-row batches: far more than the worker's backlog of 4, so many are checked on this thread.
      assert.deepEqual(await verifyAuditLogInParallel(input(1), { workers: 1 }), expected);
    } finally {
      reader.close();
    }
  });

  it('fails, rather than passing or hanging, when a worker thread cannot check a batch', async () => {
    const f = await fixture();
    const reader = openAuditLogReader(f.dbPath);
    try {
      // The leaf bounds of this batch are outside its bytes: checkLeafBatch throws on the worker.
      const broken = {
        first: 0,
        count: 1,
        bytes: Buffer.of(0),
        starts: Uint32Array.of(0, 5),
        storedLeafHashes: '',
      };
      await assert.rejects(
        verifyAuditLogInParallel(
          { entries: [broken], checkpoints: reader.checkpoints(), verifierKey: f.verifierKey },
          { workers: 1 },
        ),
        /control byte/,
      );
    } finally {
      reader.close();
    }
  });

  it('reports a deleted entry as a gap at its index', async () => {
    const f = await fixture();
    f.tamper((db) => db.exec('DELETE FROM audit_log WHERE idx = 50'));
    const report = await verifyStore(f);
    assert.equal(report.firstBadIndex, 50);
    assert.equal(report.problems[0]?.kind, 'gap');
    assert.equal(report.problems[0]?.index, 50);
    assert.ok(!kinds(report).includes('truncated'));
  });

  it('reports a deletion hidden by renumbering the later rows at the deleted index', async () => {
    const f = await fixture();
    f.tamper((db) => {
      db.exec('DELETE FROM audit_log WHERE idx = 50');
      db.exec('UPDATE audit_log SET idx = -(idx - 1) WHERE idx > 50');
      db.exec('UPDATE audit_log SET idx = -idx WHERE idx < 0');
    });
    const report = await verifyStore(f);
    assert.equal(report.firstBadIndex, 50);
    const shifted = report.problems.filter((p) => p.kind === 'index-mismatch');
    assert.equal(shifted.length, 1, 'one problem for the whole renumbered run');
    assert.match(shifted[0]?.message ?? '', /\[50, 119\)/);
    assert.ok(kinds(report).includes('truncated'));
  });

  it('reports two swapped entries at the lower index', async () => {
    const f = await fixture();
    f.tamper((db) => {
      const a = db.prepare('SELECT leaf FROM audit_log WHERE idx = 40').pluck().get();
      const b = db.prepare('SELECT leaf FROM audit_log WHERE idx = 90').pluck().get();
      db.prepare('UPDATE audit_log SET leaf = ? WHERE idx = 40').run(b);
      db.prepare('UPDATE audit_log SET leaf = ? WHERE idx = 90').run(a);
    });
    const report = await verifyStore(f);
    assert.equal(report.firstBadIndex, 40);
    assert.ok(report.problems.some((p) => p.kind === 'index-mismatch' && p.index === 40));
    assert.ok(report.problems.some((p) => p.kind === 'index-mismatch' && p.index === 90));
  });

  it('reports two entries swapped together with their stored hashes at the lower index', async () => {
    const f = await fixture();
    f.tamper((db) => {
      const get = (idx: number) => ({
        leaf: db.prepare('SELECT leaf FROM audit_log WHERE idx = ?').pluck().get(idx),
        hash: db.prepare('SELECT hash FROM audit_nodes WHERE level = 0 AND idx = ?').pluck().get(idx),
      });
      const [a, b] = [get(40), get(90)];
      for (const [idx, row] of [
        [40, b],
        [90, a],
      ] as const) {
        db.prepare('UPDATE audit_log SET leaf = ? WHERE idx = ?').run(row.leaf, idx);
        db.prepare('UPDATE audit_nodes SET hash = ? WHERE level = 0 AND idx = ?').run(row.hash, idx);
      }
    });
    const report = await verifyStore(f);
    assert.equal(report.firstBadIndex, 40);
    assert.deepEqual(
      report.problems.filter((p) => p.kind !== 'root-mismatch').map((p) => [p.kind, p.index]),
      [
        ['index-mismatch', 40],
        ['index-mismatch', 90],
      ],
    );
  });

  it('reports an inserted entry at the index it was inserted at', async () => {
    const f = await fixture();
    const forged = { ...leafAt(f, 60), index: 60, actor: { id: 'ak_attacker', kind: 'api-key' } };
    f.tamper((db) => {
      db.exec('UPDATE audit_log SET idx = -(idx + 1) WHERE idx >= 60');
      db.exec('UPDATE audit_log SET idx = -idx WHERE idx < 0');
      db.prepare('INSERT INTO audit_log (idx, tenant, leaf) VALUES (60, ?, ?)').run(
        'tn_x',
        canonicalJson(forged),
      );
    });
    const report = await verifyStore(f);
    assert.equal(report.firstBadIndex, 60);
    assert.ok(report.problems.some((p) => p.kind === 'entry-modified' && p.index === 60));
    assert.ok(report.problems.some((p) => p.kind === 'index-mismatch' && p.index === 61));
  });

  it('says entries past the last checkpoint are not yet signed', async () => {
    const f = await fixture();
    const extra = canonicalJson({ ...leafAt(f, 119), index: 120 });
    f.tamper((db) => {
      db.prepare('INSERT INTO audit_log (idx, tenant, leaf) VALUES (120, ?, ?)').run('tn', extra);
      db.prepare('INSERT INTO audit_nodes (level, idx, hash) VALUES (0, 120, ?)').run(
        independentLeafHash(Buffer.from(extra)),
      );
    });
    const report = await verifyStore(f);
    assert.equal(report.ok, true);
    assert.equal(report.size, 121);
    assert.equal(report.verifiedSize, 120);
  });

  it('reports a cut tail as truncated at the first missing index', async () => {
    const f = await fixture();
    f.tamper((db) => db.exec('DELETE FROM audit_log WHERE idx >= 110'));
    const report = await verifyStore(f);
    assert.equal(report.firstBadIndex, 110);
    const truncated = report.problems.find((p) => p.kind === 'truncated');
    assert.equal(truncated?.index, 110);
    assert.equal(truncated?.size, 120);
  });

  it('reports a rollback of the whole store file to an older copy, from the witness', async () => {
    const f = await fixture(100);
    const old = join(f.dataDir, 'control.sqlite.old');
    copyFileSync(f.dbPath, old);
    await f.append(60);
    assert.equal((await verifyStore(f)).ok, true);
    copyFileSync(old, f.dbPath);
    rmSync(`${f.dbPath}-wal`, { force: true });
    rmSync(`${f.dbPath}-shm`, { force: true });
    const report = await verifyStore(f);
    assert.deepEqual(kinds(report), ['rollback']);
    assert.equal(report.firstBadIndex, 100);
    assert.equal(report.problems[0]?.size, 160);
  });

  it('reports a rolled-back store that logged and signed again as not matching the witness', async () => {
    const f = await fixture(100);
    const old = join(f.dataDir, 'control.sqlite.old');
    copyFileSync(f.dbPath, old);
    await f.append(28); // the witness now holds a checkpoint of size 128
    copyFileSync(old, f.dbPath);
    // The restored store logs 28 other entries and keyd signs their checkpoint, as a live server would.
    let root: Buffer = Buffer.alloc(0);
    const last = leafAt(f, 99); // read first: tamper() cannot be nested
    f.tamper((db) => {
      for (let i = 100; i < 128; i++) {
        const leaf = canonicalJson({ ...last, index: i, action: 'record.delete' });
        db.prepare('INSERT INTO audit_log (idx, tenant, leaf) VALUES (?, ?, ?)').run(i, 'tn', leaf);
        db.prepare('INSERT INTO audit_nodes (level, idx, hash) VALUES (0, ?, ?)').run(
          i,
          independentLeafHash(Buffer.from(leaf)),
        );
      }
      const tree = new InMemoryMerkleTree();
      for (const l of db.prepare('SELECT leaf FROM audit_log ORDER BY idx').pluck().all() as string[]) {
        tree.append(independentLeafHash(Buffer.from(l)));
      }
      root = tree.root();
    });
    const note = await f.signTree(128, root);
    f.tamper((db) =>
      db.prepare("INSERT INTO audit_checkpoints (size, note, at) VALUES (128, ?, 'x')").run(note),
    );
    const report = await verifyStore(f);
    assert.ok(kinds(report).includes('rollback'));
    assert.ok(kinds(report).includes('checkpoint-inconsistent'));
    assert.equal(report.firstBadIndex, 100);
    assert.match(report.problems.find((p) => p.kind === 'rollback')?.message ?? '', /\[100, 128\)/);
  });

  it('reports a checkpoint whose signature was altered', async () => {
    const f = await fixture();
    f.tamper((db) => {
      const note = db.prepare('SELECT note FROM audit_checkpoints WHERE size = 64').pluck().get() as string;
      const at = note.length - 10;
      const flipped = note.slice(0, at) + (note[at] === 'A' ? 'B' : 'A') + note.slice(at + 1);
      db.prepare('UPDATE audit_checkpoints SET note = ? WHERE size = 64').run(flipped);
    });
    const report = await verifyStore(f);
    assert.equal(report.ok, false);
    assert.deepEqual(kinds(report), ['checkpoint-signature']);
    assert.equal(report.problems[0]?.size, 64);
  });

  it('reports a store rewritten and re-signed by a key of the attacker', async () => {
    const f = await fixture();
    const attacker = await fixture(1);
    setLeaf(f, 100, canonicalJson({ ...leafAt(f, 100), outcome: 'failure' }));
    let root: Buffer = Buffer.alloc(0);
    f.tamper((db) => {
      const tree = new InMemoryMerkleTree();
      for (const l of db.prepare('SELECT leaf FROM audit_log ORDER BY idx').pluck().all() as string[]) {
        tree.append(independentLeafHash(Buffer.from(l)));
      }
      db.prepare('UPDATE audit_nodes SET hash = ? WHERE level = 0 AND idx = 100').run(tree.leafHash(100));
      root = tree.root();
    });
    const forged = await attacker.signTree(120, root);
    f.tamper((db) => db.prepare('UPDATE audit_checkpoints SET note = ? WHERE size = 120').run(forged));
    rmSync(f.witnessDir, { recursive: true });
    const report = await verifyStore(f);
    assert.deepEqual(kinds(report), ['checkpoint-signature']);
    assert.equal(report.problems[0]?.size, 120);
    assert.equal(report.verifiedSize, 96, 'entries past 96 are vouched for by no valid checkpoint');
  });

  it('reports a checkpoint of another origin signed by the same key', async () => {
    const f = await fixture();
    const note = await f.signTree(64, f.root(64), 'tresor.other/audit');
    f.tamper((db) => db.prepare('UPDATE audit_checkpoints SET note = ? WHERE size = 64').run(note));
    const report = await verifyStore(f, { origin: f.origin });
    assert.deepEqual(kinds(report), ['checkpoint-origin']);
    assert.match(report.problems[0]?.message ?? '', /tresor\.other\/audit/);
  });

  it('reports two store checkpoints of one size with different roots as inconsistent', async () => {
    const f = await fixture();
    const forged = await f.signTree(64, f.root(63));
    const report = verifyAuditLog({
      entries: [],
      checkpoints: [forged, await f.signTree(64, f.root(64))],
      verifierKey: f.verifierKey,
    });
    assert.ok(kinds(report).includes('checkpoint-inconsistent'));
  });

  it('refuses a malformed verifier key before reading anything', () => {
    assert.throws(
      () => verifyAuditLog({ entries: [], checkpoints: [], verifierKey: 'nope' }),
      (err: Error & { code?: string }) => err.code === 'TRESOR_ERR_NOTE_KEY_INVALID',
    );
  });
});

describe('audit export file', () => {
  it('verifies offline with only the verifier key, and a changed value in a line is found', async () => {
    const f = await fixture();
    const path = join(f.dataDir, 'export.jsonl');
    const reader = openAuditLogReader(f.dbPath);
    const out = createWriteStream(path, { mode: 0o600 });
    const written = await writeAuditExport(
      { origin: f.origin, size: reader.size(), entries: reader.entries(), checkpoints: reader.checkpoints() },
      out,
    );
    await new Promise((res) => out.end(res));
    reader.close();
    assert.deepEqual(written, { entries: ENTRIES, checkpoints: 4 });
    const file = await readAuditExport(path);
    assert.deepEqual(file.header, {
      format: 'tresor-audit-export',
      version: 1,
      origin: f.origin,
      size: ENTRIES,
    });
    const report = await verifyAuditLogAsync({
      entries: file.entries,
      checkpoints: file.checkpoints,
      verifierKey: f.verifierKey,
    });
    assert.equal(report.ok, true);
    assert.equal(report.verifiedSize, ENTRIES);

    const lines = readFileSync(path, 'utf8').split('\n');
    lines[1 + 77] = (lines[1 + 77] as string).replace('record.read', 'record.list');
    writeFileSync(path, lines.join('\n'));
    const tampered = await readAuditExport(path);
    const bad = await verifyAuditLogAsync({
      entries: tampered.entries,
      checkpoints: tampered.checkpoints,
      verifierKey: f.verifierKey,
    });
    assert.equal(bad.ok, false);
    assert.deepEqual(kinds(bad), ['root-mismatch']);
    assert.equal(bad.firstBadIndex, 64);
  });
});

describe('checkCanonicalObject', () => {
  const object = fc.dictionary(fc.string({ unit: 'binary' }), fc.jsonValue());
  const isCanonical = (s: string): boolean => {
    let v: unknown;
    try {
      v = JSON.parse(s);
      return v !== null && typeof v === 'object' && !Array.isArray(v) && canonicalJson(v) === s;
    } catch {
      return false;
    }
  };

  it('accepts whatever canonicalJson prints for an object, and names its index', () => {
    fc.assert(fc.property(object, (o) => checkCanonicalObject(canonicalJson(o)).ok));
    assert.deepEqual(checkCanonicalObject('{"a":[1,{"b":null}],"index":42}'), { ok: true, index: '42' });
  });

  it('accepts exactly the canonical texts among edited ones (RFC 8785 §3.2)', () => {
    fc.assert(
      fc.property(
        object,
        fc.nat(),
        fc.string({ unit: 'binary', maxLength: 3 }),
        fc.nat(3),
        (o, at, ins, del) => {
          const text = canonicalJson(o);
          const p = at % (text.length + 1);
          const edited = text.slice(0, p) + ins + text.slice(p + del);
          return checkCanonicalObject(edited).ok === isCanonical(edited);
        },
      ),
      { numRuns: 5000 },
    );
  });

  for (const [text, why] of [
    ['{"a":1.0}', 'number spelling'],
    ['{"a":-0}', 'negative zero'],
    ['{"a":1e21}', 'exponent without sign'],
    ['{"b":1,"a":2}', 'member order'],
    ['{"a":1,"a":2}', 'duplicate member'],
    ['{"a":"\\u001F"}', 'uppercase escape'],
    ['{"a":"\\u0041"}', 'needless escape'],
    ['{"a":"\\/"}', 'escaped solidus'],
    ['{"a":"\ud800"}', 'lone surrogate'],
    ['{ "a":1}', 'whitespace'],
    ['[1]', 'not an object'],
    ['{"a":1}x', 'trailing text'],
    [`${'{"a":'.repeat(300)}1${'}'.repeat(300)}`, 'nesting too deep'],
  ]) {
    it(`refuses ${why}`, () => assert.equal(checkCanonicalObject(text as string).ok, false));
  }
});
