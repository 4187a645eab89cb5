/**
 * The witness folder keeps every signed checkpoint outside the store: the latest in `checkpoint`
 * (replaced atomically, 0600, folder 0700) and all of them in `checkpoints.log`; it never goes back.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { signCheckpoint } from '../../src/audit/checkpoint.ts';
import { ed25519NoteSigner } from '../../src/audit/note.ts';
import { createWitness, WITNESS_LATEST_FILE, WITNESS_LOG_FILE } from '../../src/audit/witness.ts';

const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const signer = ed25519NoteSigner(
  {
    name: 'tresor-keyd/audit-checkpoint',
    publicKey: Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url'),
  },
  async (m) => sign(null, m, privateKey),
);

function note(size: number, fill = size % 256): Promise<string> {
  return signCheckpoint(
    { origin: 'tresor.test/audit', size, rootHash: Buffer.alloc(32, fill), extensions: [] },
    [signer],
  );
}

const parents: string[] = [];
after(() => {
  for (const p of parents) rmSync(p, { recursive: true, force: true });
});

function folder(): string {
  const parent = mkdtempSync(join(tmpdir(), 'tresor-witness-'));
  parents.push(parent);
  return join(parent, 'witness');
}

async function all(dir: string): Promise<string[]> {
  const notes: string[] = [];
  for await (const n of createWitness(dir).all()) notes.push(n);
  return notes;
}

describe('createWitness', () => {
  it('is empty before the first checkpoint', async () => {
    const dir = folder();
    assert.equal(await createWitness(dir).latest(), null);
    assert.deepEqual(await all(dir), []);
  });

  it('keeps the latest checkpoint and every one recorded, owner-only', async () => {
    const dir = folder();
    const w = createWitness(dir);
    const notes = [await note(10), await note(20), await note(35)];
    for (const n of notes) await w.record(n);
    assert.equal(await w.latest(), notes[2]);
    assert.equal(readFileSync(join(dir, WITNESS_LATEST_FILE), 'utf8'), notes[2]);
    assert.deepEqual(await all(dir), notes);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, WITNESS_LATEST_FILE)).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, WITNESS_LOG_FILE)).mode & 0o777, 0o600);
    assert.deepEqual(
      readdirSync(dir).sort(),
      [WITNESS_LATEST_FILE, WITNESS_LOG_FILE],
      'no temporary file left',
    );
    // One JSON record per line: a note's own newlines cannot break the framing.
    const lines = readFileSync(join(dir, WITNESS_LOG_FILE), 'utf8').trimEnd().split('\n');
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { note: string }).note),
      notes,
    );
  });

  it('refuses a checkpoint smaller than the latest', async () => {
    const w = createWitness(folder());
    await w.record(await note(20));
    await assert.rejects(w.record(await note(19)), { code: 'TRESOR_ERR_WITNESS_ROLLBACK' });
    assert.match((await w.latest()) ?? '', /\n20\n/);
  });

  it('refuses another checkpoint of the same size, and takes the same one again as a no-op', async () => {
    const dir = folder();
    const w = createWitness(dir);
    const n = await note(20);
    await w.record(n);
    await assert.rejects(w.record(await note(20, 7)), { code: 'TRESOR_ERR_WITNESS_FORK' });
    await w.record(n);
    assert.deepEqual(await all(dir), [n]);
  });

  it('refuses what is not a checkpoint note', async () => {
    const dir = folder();
    await assert.rejects(createWitness(dir).record('hello\n'), { code: 'TRESOR_ERR_WITNESS_MALFORMED' });
    assert.equal(existsSync(dir), false);
  });

  it('records concurrent checkpoints in call order', async () => {
    const dir = folder();
    const w = createWitness(dir);
    const notes = await Promise.all([note(1), note(2), note(3), note(4)]);
    await Promise.all(notes.map((n) => w.record(n)));
    assert.deepEqual(await all(dir), notes);
  });

  it('ignores a final record torn by a crash, and refuses a damaged one before it', async () => {
    const dir = folder();
    const w = createWitness(dir);
    const n = await note(5);
    await w.record(n);
    appendFileSync(join(dir, WITNESS_LOG_FILE), '{"note":"tresor.te');
    assert.deepEqual(await all(dir), [n]);
    appendFileSync(join(dir, WITNESS_LOG_FILE), '\n{"note":1}\n');
    await assert.rejects(all(dir), { code: 'TRESOR_ERR_WITNESS_MALFORMED' });
  });
});
