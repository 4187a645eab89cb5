// backends: sqlite postgres
/**
 * The audit log from outside, over real HTTPS against a real `tresor server` process and the real
 * keyd: every change and read becomes an entry; a customer sees exactly their own entries, on the
 * entries route and on the live stream; each entry's leaf hash, the signed checkpoint, the
 * inclusion and consistency proofs check out with a verifier written only from RFC 9162 and the
 * C2SP specs (test/audit/independent-verifier.ts) and the published verifier key; a stream resumed
 * with Last-Event-ID loses nothing; a rollback of the whole store is detected at the next start;
 * a keyd that cannot sign for longer than the bound fails data routes closed.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import canonicalize from 'canonicalize';
import { independentBundleEntries, independentTilePath, tiledTree } from '../audit/independent-tiles.ts';
import {
  independentLeafHash,
  independentOpenCheckpoint,
  independentVerifyConsistency,
  independentVerifyInclusion,
} from '../audit/independent-verifier.ts';
import {
  BLOCK_OF_INDEX,
  type BlockRow,
  blockWith,
  DROP_BLOCK_TRIGGER,
  leafOf,
  REWRITE_BLOCK,
} from '../helpers/audit-leaves.ts';
import { openAuditStream } from '../helpers/audit-stream.ts';
import { operatorToken } from '../helpers/console.ts';
import { tresor } from '../helpers/keyd-process.ts';
import { copyStackDatabase, databaseEnv, onDatabase, restoreStackDatabase } from '../helpers/stack-sql.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor as waitForHelper } from '../helpers/wait.ts';

interface ApiEntry {
  index: number;
  entry: Record<string, unknown> & { tenant: string | null; action: string; index: number };
  leafHash: string;
}

const ADMIN = { id: 'test', role: 'admin' } as const;
const NEEDLE = 'audit-needle-9d2e@example.test';

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs?: number) =>
  waitForHelper(what, probe, {
    ...{ timeoutMs: 15_000, intervalMs: 50 },
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });

const openStream = (s: TresorStack, token: string, headers: Record<string, string> = {}) =>
  openAuditStream<ApiEntry>(s, token, headers);

describe('the audit log over HTTPS', () => {
  let s: TresorStack;
  let keyA: string;
  let keyB: string;
  let tenantA: string;
  let tenantB: string;
  let verifierKey: string;

  async function entries(token: string, from = 0): Promise<ApiEntry[]> {
    const all: ApiEntry[] = [];
    let next: number | null = from;
    while (next !== null) {
      const res = await s.request('GET', `/v1/audit/entries?from=${next}&limit=1000`, { token });
      assert.equal(res.status, 200, res.text);
      const page = res.json<{ entries: ApiEntry[]; next: number | null }>();
      all.push(...page.entries);
      next = page.next;
    }
    return all;
  }

  async function checkpoint(atLeast: number) {
    return waitFor(`a checkpoint of ≥ ${atLeast} entries`, async () => {
      const res = await s.request('GET', '/v1/audit/checkpoint', {
        token: await operatorToken(s, 'audit:read'),
      });
      if (res.status !== 200) return undefined;
      const opened = independentOpenCheckpoint(res.text, verifierKey);
      return opened.size >= BigInt(atLeast) ? { note: res.text, ...opened } : undefined;
    });
  }

  async function writeRecords(key: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const res = await s.request('POST', '/v1/collections/people/records', {
        token: key,
        body: { email: `${i}-${NEEDLE}` },
      });
      assert.equal(res.status, 201, res.text);
    }
  }

  before(async () => {
    // A sign bound short enough for the fail-closed tests to see it pass (they await the 503), and
    // long enough that a busy machine's slow checkpoint never fails the other tests' writes.
    s = await startTresorStack({ env: { TRESOR_AUDIT_SIGN_BOUND_MS: '8000' } });
    const pub = await s.request('GET', '/v1/audit/public-key');
    assert.equal(pub.status, 200, pub.text);
    verifierKey = pub.text.trim();
    for (const name of ['Audit A', 'Audit B']) {
      const created = await s.request('POST', '/v1/tenants', {
        token: await operatorToken(s, 'tenants:create'),
        body: { name },
      });
      assert.equal(created.status, 201, created.text);
      const { id, apiKey } = created.json<{ id: string; apiKey: string }>();
      if (name === 'Audit A') [tenantA, keyA] = [id, apiKey];
      else [tenantB, keyB] = [id, apiKey];
      const put = await s.request('PUT', '/v1/collections/people', {
        token: apiKey,
        body: { fields: { email: { type: 'string', classification: 'personal', searchable: true } } },
      });
      assert.equal(put.status, 201, put.text);
    }
    await writeRecords(keyA, 5);
    await writeRecords(keyB, 3);
  });

  after(async () => {
    await s?.stop();
  });

  it('publishes the verifier key without authentication, named by the log origin', async () => {
    // No audit.origin configured: one was generated at the first start, unique by its random part.
    assert.match(verifierKey, /^tresor\/audit\/[0-9a-f]{8}\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$/);
    const { note, origin } = await checkpoint(1);
    assert.equal(verifierKey.split('+')[0], origin, 'signed-note: the key name is the origin');
    assert.ok(note.includes(`\n\u2014 ${origin} `), 'the signature line names the origin');
    const res = await s.request('GET', '/v1/audit/checkpoint', {
      token: await operatorToken(s, 'audit:read'),
    });
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
  });

  it('records every change and read, with field names but never values, in index order', async () => {
    const read = await s.request('POST', '/v1/collections/people/records/search', {
      token: keyA,
      body: { where: { email: `0-${NEEDLE}` } },
    });
    assert.equal(read.status, 200, read.text);
    await checkpoint(1);
    const all = await waitFor('the search entry', async () => {
      const got = await entries(await operatorToken(s, 'audit:read'));
      return got.some((e) => e.entry.action === 'record.search') ? got : undefined;
    });
    all.forEach((e, i) => {
      assert.equal(e.index, i);
      assert.equal(e.entry.index, i, 'each entry names its own index');
    });
    const actions = all.map((e) => e.entry.action);
    for (const a of ['tenant.create', 'collection.put', 'record.create', 'record.search'])
      assert.ok(actions.includes(a), `${a} is recorded`);
    assert.equal(all.filter((e) => e.entry.action === 'record.create').length, 8);
    const text = JSON.stringify(all);
    assert.ok(!text.includes(NEEDLE), 'no field value in any entry');
    const create = all.find((e) => e.entry.action === 'record.create');
    assert.deepEqual((create?.entry.target as { fields?: string[] } | undefined)?.fields, ['email']);
  });

  it('copies keyd’s key operations into the log as the system actor keyd, with keyd’s chain hash', async () => {
    const keydEntries = await waitFor('keyd operations in the log', async () => {
      const got = (await entries(await operatorToken(s, 'audit:read'))).filter((e) =>
        e.entry.action.startsWith('keyd.'),
      );
      return got.some((e) => e.entry.action === 'keyd.create-tenant-key' && e.entry.tenant === tenantA)
        ? got
        : undefined;
    });
    for (const e of keydEntries) {
      assert.deepEqual(e.entry.actor, { kind: 'system', id: 'keyd' });
      assert.match(String((e.entry.target as { keydHash?: string }).keydHash), /^[0-9a-f]{64}$/);
    }
    assert.ok(!keydEntries.some((e) => e.entry.action === 'keyd.sign'), 'checkpoint signing is not mirrored');
    const own = await entries(keyA);
    assert.ok(
      own.some((e) => e.entry.action === 'keyd.create-tenant-key'),
      'the customer sees their key’s creation',
    );
  });

  it('shows a customer only their own tenant’s entries', async () => {
    const a = await entries(keyA);
    const b = await entries(keyB);
    assert.ok(a.length > 0 && b.length > 0);
    assert.ok(a.every((e) => e.entry.tenant === tenantA));
    assert.ok(b.every((e) => e.entry.tenant === tenantB));
    const all = await entries(await operatorToken(s, 'audit:read'));
    assert.ok(
      all.some((e) => e.entry.tenant === null),
      'operator entries exist',
    );
    const readOnly = await s.request('POST', `/v1/tenants/${tenantA}/api-keys`, {
      token: await operatorToken(s, 'tenants:create'),
      body: { access: ['read'] },
    });
    if (readOnly.status === 201) {
      const weak = readOnly.json<{ apiKey: string }>().apiKey;
      const refused = await s.request('GET', '/v1/audit/entries', { token: weak });
      assert.equal(refused.status, 403, refused.text);
    }
  });

  it('serves leaf hashes, a signed checkpoint and proofs that an independent verifier accepts', async () => {
    const first = await checkpoint(5);
    const all = await entries(await operatorToken(s, 'audit:read'));
    const size = Number(first.size);
    for (const e of all.slice(0, size)) {
      const leaf = Buffer.from(canonicalize(e.entry) as string, 'utf8');
      const hash = independentLeafHash(leaf);
      assert.equal(hash.toString('base64'), e.leafHash, `leaf hash of ${e.index}`);
      const proof = await s.request('GET', `/v1/audit/proofs/inclusion?index=${e.index}&treeSize=${size}`, {
        token: keyA,
      });
      assert.equal(proof.status, 200, proof.text);
      const hashes = proof.json<{ hashes: string[] }>().hashes.map((h) => Buffer.from(h, 'base64'));
      assert.ok(
        independentVerifyInclusion(hash, BigInt(e.index), BigInt(size), hashes, first.root),
        `inclusion of ${e.index}`,
      );
    }
    await writeRecords(keyA, 3);
    const second = await checkpoint(size + 3);
    const res = await s.request('GET', `/v1/audit/proofs/consistency?from=${size}&to=${second.size}`, {
      token: keyB,
    });
    assert.equal(res.status, 200, res.text);
    const proof = res.json<{ hashes: string[] }>().hashes.map((h) => Buffer.from(h, 'base64'));
    assert.ok(independentVerifyConsistency(first.size, second.size, proof, first.root, second.root));
    const beyond = await s.request('GET', `/v1/audit/proofs/inclusion?index=0&treeSize=${10 ** 12}`, {
      token: keyA,
    });
    assert.equal(beyond.status, 422, beyond.text);
    const zero = await s.request('GET', '/v1/audit/proofs/consistency?from=0&to=1', { token: keyA });
    assert.equal(zero.status, 400, zero.text);
  });

  it('serves tlog-tiles tiles from which a client alone proves inclusion against the checkpoint', async () => {
    // More than one full tile of 256 entries, so full and partial tiles are both served.
    const head = await checkpoint(1);
    for (let written = Number(head.size); written < 300; written += 20) {
      await Promise.all(Array.from({ length: 4 }, () => writeRecords(keyA, 5)));
    }
    const signed = await checkpoint(300);
    const size = signed.size;
    const fetchTile = async (path: string) => {
      const res = await s.request('GET', `/v1/audit/${path}`, { token: keyB });
      assert.equal(res.status, 200, `${path}: ${res.text}`);
      assert.equal(res.headers['content-type'], 'application/octet-stream');
      return res.bytes as Buffer;
    };
    const tree = tiledTree(size, fetchTile);
    assert.deepEqual(await tree.root(), signed.root, 'the root from tiles is the signed one');
    const operator = await operatorToken(s, 'audit:read');
    const all = await entries(operator);
    const bundle = await s.request('GET', `/v1/audit/${independentTilePath('entries', 0n, size)}`, {
      token: operator,
    });
    assert.equal(bundle.status, 200, bundle.text);
    assert.equal(bundle.headers['cache-control'], 'public, max-age=31536000, immutable');
    const leaves = independentBundleEntries(bundle.bytes as Buffer);
    assert.equal(leaves.length, 256);
    for (const index of [0, 1, 200, 255, 256, Number(size) - 1]) {
      const leaf =
        index < 256
          ? (leaves[index] as Buffer)
          : Buffer.from(canonicalize(all[index]?.entry) as string, 'utf8');
      const hash = independentLeafHash(leaf);
      assert.equal(hash.toString('base64'), all[index]?.leafHash, `leaf ${index}`);
      assert.deepEqual(await tree.leafHash(BigInt(index)), hash, `tile/0 holds leaf ${index}`);
      const proof = await tree.inclusionProof(BigInt(index));
      assert.ok(
        independentVerifyInclusion(hash, BigInt(index), size, proof, signed.root),
        `inclusion of ${index}`,
      );
    }
    const full = await s.request('GET', '/v1/audit/tile/0/000', { token: keyA });
    assert.equal(full.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(full.bytes?.length, 8192);
    // Bundles hold every tenant's entries: a tenant admin's key is refused, and nothing is served.
    const refused = await s.request('GET', '/v1/audit/tile/entries/000', { token: keyA });
    assert.equal(refused.status, 403, refused.text);
    // A tile the log has not reached, and paths that are not tlog-tiles paths.
    const beyond = await s.request('GET', '/v1/audit/tile/0/x001/000', { token: keyA });
    assert.equal(beyond.status, 404, beyond.text);
    for (const bad of [
      'tile/0/1',
      'tile/00/000',
      'tile/0/000.p/0',
      'tile/0/000.p/256',
      'tile/64/000',
      'tile/0/x000/001',
    ]) {
      const res = await s.request('GET', `/v1/audit/${bad}`, { token: keyA });
      assert.ok(res.status === 400 || res.status === 422, `${bad}: ${res.status} ${res.text}`);
      assert.match(String(res.headers['content-type']), /problem\+json/);
    }
  });

  it('streams a tenant’s entries live and resumes after a disconnect without losing any', async () => {
    const first = openStream(s, keyA, { 'last-event-id': '0' });
    assert.equal(await first.opened, 200);
    await writeRecords(keyA, 2);
    await writeRecords(keyB, 2);
    const own = await waitFor('stream to catch up', async () => {
      const listed = await entries(keyA);
      return first.events.length >= listed.length - 1 && listed.length > 0 ? listed : undefined;
    });
    first.close();
    const lastSeen = first.events[first.events.length - 1]?.id ?? '0';
    await writeRecords(keyA, 3);
    await writeRecords(keyB, 1);
    const second = openStream(s, keyA, { 'last-event-id': lastSeen });
    assert.equal(await second.opened, 200);
    const listed = await waitFor('resumed stream to catch up', async () => {
      const l = await entries(keyA);
      const wanted = l.filter((e) => e.index > Number(lastSeen));
      return second.events.length >= wanted.length && wanted.length >= 3 ? l : undefined;
    });
    second.close();
    const streamed = [...first.events, ...second.events].map((e) => Number(e.id));
    const expected = listed.filter((e) => e.index > 0).map((e) => e.index);
    // Entries after the last one seen on the first connection arrive on the second: nothing lost.
    for (const index of expected) assert.ok(streamed.includes(index), `entry ${index} was streamed`);
    assert.ok([...first.events, ...second.events].every((e) => e.data.entry.tenant === tenantA));
    assert.ok(own.length > 0);
  });

  it('refuses bad stream and entry parameters with a 4xx problem', async () => {
    for (const [path, headers] of [
      ['/v1/audit/stream', { 'last-event-id': 'abc' }],
      ['/v1/audit/stream', { 'last-event-id': '1'.repeat(40) }],
      ['/v1/audit/stream?from=-1', {}],
      ['/v1/audit/stream?from=x&y=1', {}],
      ['/v1/audit/entries?limit=100000', {}],
      ['/v1/audit/entries?from=abc', {}],
      ['/v1/audit/proofs/inclusion?index=5&treeSize=2', {}],
    ] as const) {
      const res = await s.request('GET', path, { token: keyA, headers: { ...headers } });
      assert.ok(res.status >= 400 && res.status < 500, `${path} → ${res.status}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    }
    const anonymous = await s.request('GET', '/v1/audit/checkpoint');
    assert.equal(anonymous.status, 401);
  });

  it('fails data routes closed when keyd cannot sign checkpoints for longer than the bound', async () => {
    const keyd = s.keydClient();
    await keyd.call('seal', {}, ADMIN);
    try {
      // The tenants list needs no key: only the audit log's health can refuse it.
      await waitFor(
        'the sign bound to pass',
        async () => {
          await s.request('GET', '/v1/tenants', { token: await operatorToken(s, 'tenants:read') });
          const res = await s.request('GET', '/v1/tenants', {
            token: await operatorToken(s, 'tenants:read'),
          });
          return res.status === 503 ? res : undefined;
        },
        60_000,
      );
      const ready = await s.request('GET', '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.text, /"audit":"failing"/);
    } finally {
      await keyd.call('unseal', { secret: '' }, ADMIN);
    }
    await waitFor('recovery after unseal', async () => {
      const res = await s.request('GET', '/v1/tenants', { token: await operatorToken(s, 'tenants:read') });
      return res.status === 200 ? res : undefined;
    });
  });

  it('fails data routes closed while keyd is stopped (SIGSTOP) and recovers when it runs again', async () => {
    await writeRecords(keyA, 1);
    const pid = Number(
      execFileSync('pgrep', ['-f', `keyd serve .*--dir ${s.keydDir}`], { encoding: 'utf8' })
        .trim()
        .split('\n')[0],
    );
    assert.ok(pid > 0, 'the keyd process is found');
    process.kill(pid, 'SIGSTOP');
    try {
      await writeRecords(keyA, 1).catch(() => undefined); // an entry that now waits for a signature
      await waitFor(
        'the sign bound to pass with keyd stopped',
        async () => {
          const res = await s.request('GET', '/v1/tenants', {
            token: await operatorToken(s, 'tenants:read'),
          });
          return res.status === 503 ? res : undefined;
        },
        60_000,
      );
      assert.match((await s.request('GET', '/readyz')).text, /"audit":"failing"/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor('recovery once keyd runs again', async () => {
      const res = await s.request('GET', '/v1/tenants', { token: await operatorToken(s, 'tenants:read') });
      return res.status === 200 ? res : undefined;
    });
  });

  it('verifies the live server’s store with tresor audit verify, and names the entry an attacker changed', async () => {
    const size = (await entries(await operatorToken(s, 'audit:read'))).length;
    await checkpoint(size);
    const ok = tresor(['audit', 'verify', '--data-dir', s.dataDir, '--public-key', verifierKey, '--json'], {
      env: databaseEnv(s),
    });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { ok: boolean }).ok, true);

    // An attacker with the store: stop the server, copy it, and in the copy turn the trigger off
    // and rewrite one entry's actor.
    await s.stopServer();
    const victim = 3;
    const copy = join(s.root, 'tampered');
    execFileSync('cp', ['-a', s.dataDir, copy]);
    // Whoever entry 3 names (a caller, or keyd's system actor when its copied operations came
    // first), the forged entry names another kind of actor.
    const forge = (leaf: string) => {
      const forged = leaf.replace(/"kind":"([a-z-]+)"/, (_, kind: string) =>
        kind === 'system' ? '"kind":"person"' : '"kind":"system"',
      );
      assert.notEqual(forged, leaf);
      return forged;
    };
    let copyEnv: Record<string, string> = {};
    let dropCopy = async () => {};
    if (s.database.kind === 'postgres') {
      const database = await copyStackDatabase(s);
      dropCopy = database.drop;
      copyEnv = { TRESOR_DATABASE_URL: database.url };
      const [rows] = await onDatabase(database.url, [{ text: BLOCK_OF_INDEX, params: [victim] }]);
      const row = rows?.[0] as unknown as BlockRow;
      const [, changed] = await onDatabase(database.url, [
        { text: 'SET session_replication_role = replica' },
        { text: REWRITE_BLOCK, params: [blockWith(row, victim, forge(leafOf(row, victim))), row.idx] },
      ]);
      assert.equal(changed?.length, 1);
    } else {
      const db = new Database(join(copy, 'control.sqlite'));
      db.exec(DROP_BLOCK_TRIGGER);
      const row = db.prepare(BLOCK_OF_INDEX).get(victim) as BlockRow;
      db.prepare(REWRITE_BLOCK).run(blockWith(row, victim, forge(leafOf(row, victim))), row.idx);
      db.close();
    }
    await s.startServer();
    const bad = tresor(
      [
        'audit',
        'verify',
        '--data-dir',
        copy,
        '--witness',
        join(copy, 'witness'),
        '--public-key',
        verifierKey,
        '--json',
      ],
      { env: copyEnv },
    );
    await dropCopy();
    assert.equal(bad.status, 1, bad.stdout + bad.stderr);
    assert.equal((JSON.parse(bad.stdout) as { firstBadIndex: number }).firstBadIndex, victim);
  });

  it('detects a rollback of the whole store at the next start', async () => {
    await checkpoint(1);
    await s.stopServer();
    // A copy of the control store (its file, or its database) taken now…
    const control = join(s.dataDir, 'control.sqlite');
    const saved = join(s.root, 'control-copy.sqlite');
    const savedDatabase = s.database.kind === 'postgres' ? await copyStackDatabase(s) : undefined;
    if (savedDatabase === undefined) {
      copyFileSync(control, saved);
      for (const ext of ['-wal', '-shm'])
        if (existsSync(control + ext)) copyFileSync(control + ext, saved + ext);
    }
    await s.startServer();
    await writeRecords(keyA, 2);
    const before = (await entries(await operatorToken(s, 'audit:read'))).length;
    await checkpoint(before);
    await s.stopServer();
    // Roll the control store back to the copy; the witness folder still holds the newer checkpoint.
    if (savedDatabase !== undefined) {
      await restoreStackDatabase(s, savedDatabase);
      await savedDatabase.drop();
    } else {
      for (const ext of ['', '-wal', '-shm']) {
        rmSync(control + ext, { force: true });
        if (existsSync(saved + ext)) copyFileSync(saved + ext, control + ext);
      }
    }
    await s.startServer();
    const ready = await s.request('GET', '/readyz');
    assert.equal(ready.status, 503, ready.text);
    assert.match(ready.text, /"audit":"failing"/);
    const refused = await s.request('GET', '/v1/tenants', { token: await operatorToken(s, 'tenants:read') });
    assert.equal(refused.status, 503, refused.text);
    await waitFor('the rollback to be reported', async () =>
      /rolled back|does not match the witness/.test(s.serverOutput()) ? true : undefined,
    );
  });
});
