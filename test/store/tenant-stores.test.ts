import assert from 'node:assert/strict';
import {
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { TresorError, type TresorErrorCode } from '../../src/errors.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import { createTenantStores, type TenantStores } from '../../src/store/sqlite/tenant-stores.ts';
import { insertRecord, RECORDS_MIGRATIONS, type RecordsDb } from './fixtures/records.ts';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function withCode(code: TresorErrorCode) {
  return (error: unknown) => error instanceof TresorError && error.code === code;
}

/** Every file under `folder` whose bytes contain `needle`. */
function filesContaining(folder: string, needle: string): string[] {
  if (!existsSync(folder)) return [];
  return readdirSync(folder, { recursive: true, encoding: 'utf8' })
    .map((name) => join(folder, name))
    .filter((path) => {
      try {
        return readFileSync(path).includes(needle);
      } catch {
        return false; // a folder
      }
    });
}

const marker = () => `MARKER-${process.pid}-${Math.random().toString(36).slice(2)}`;

describe('tenant stores', () => {
  let dir: string;
  let tenantsDir: string;
  let stores: TenantStores<RecordsDb>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-tenants-'));
    tenantsDir = join(dir, 'tenants');
    stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS });
  });

  /** Replaces the registry with a new one on the same folder (as a restarted process would). */
  async function useRegistry(options: { maxOpen?: number } = {}): Promise<void> {
    await stores.close();
    stores = createTenantStores<RecordsDb>({ dir, migrations: RECORDS_MIGRATIONS, ...options });
  }

  afterEach(async () => {
    await stores.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a tenant store as <dir>/tenants/<id>.sqlite with migrations applied, and refuses to create it twice', async () => {
    const store = await stores.create('acme');
    assert.equal(store.location, join(tenantsDir, 'acme.sqlite'));
    assert.equal(existsSync(store.location), true);
    await store.write((trx) => insertRecord(trx, 'r1', 'v'));
    assert.equal((await store.db.selectFrom('records').selectAll().execute()).length, 1);
    await assert.rejects(stores.create('acme'), withCode('TRESOR_ERR_CONFLICT'));
    assert.equal((await stores.open('acme')).location, store.location);
  });

  it('refuses to open a tenant that was never created, and creates no file for it', async () => {
    await assert.rejects(stores.open('ghost'), withCode('TRESOR_ERR_NOT_FOUND'));
    assert.equal(await stores.exists('ghost'), false);
    assert.equal(existsSync(join(tenantsDir, 'ghost.sqlite')), false);
    assert.deepEqual(stores.openTenants(), []);
  });

  it('refuses tenant ids that could name a file outside the tenants folder, before touching the disk', async () => {
    const bad = [
      '../escape',
      '..',
      '.',
      'a/b',
      'a\\b',
      '',
      'a'.repeat(65),
      'nul\0byte',
      '%2e%2e',
      'é',
      ' acme',
      'acme.sqlite',
    ];
    for (const tenant of bad) {
      await assert.rejects(
        stores.create(tenant),
        withCode('TRESOR_ERR_BAD_REQUEST'),
        `create ${JSON.stringify(tenant)}`,
      );
      await assert.rejects(stores.open(tenant), withCode('TRESOR_ERR_BAD_REQUEST'));
      await assert.rejects(stores.exists(tenant), withCode('TRESOR_ERR_BAD_REQUEST'));
      await assert.rejects(stores.destroy(tenant), withCode('TRESOR_ERR_BAD_REQUEST'));
    }
    assert.deepEqual(readdirSync(dir), []);
    // The longest valid id and every allowed character are accepted.
    await stores.create('a'.repeat(64));
    await stores.create('Az09_-');
  });

  it('reports whether a tenant store exists through create and destroy', async () => {
    assert.equal(await stores.exists('acme'), false);
    await stores.create('acme');
    assert.equal(await stores.exists('acme'), true);
    await stores.destroy('acme');
    assert.equal(await stores.exists('acme'), false);
  });

  it('destroys a store so that no file remains and its bytes are nowhere in the tenants folder', async () => {
    const secret = marker();
    const kept = marker();
    const doomed = await stores.create('doomed');
    const other = await stores.create('other');
    await doomed.write((trx) => insertRecord(trx, 'r1', secret));
    await other.write((trx) => insertRecord(trx, 'r1', kept));
    // The scan finds the marker while the store lives (so its absence later means something).
    assert.notDeepEqual(filesContaining(tenantsDir, secret), []);

    // Hard links outside the tenants folder share the files' inodes: they show whether the bytes
    // were overwritten before the names were unlinked.
    const links = join(dir, 'links');
    mkdirSync(links);
    linkSync(doomed.location, join(links, 'db'));
    linkSync(`${doomed.location}-wal`, join(links, 'wal'));

    await stores.destroy('doomed');

    assert.deepEqual(
      readdirSync(tenantsDir).filter((name) => name.startsWith('doomed')),
      [],
    );
    assert.deepEqual(filesContaining(tenantsDir, secret), []);
    for (const name of ['db', 'wal']) {
      const bytes = readFileSync(join(links, name));
      assert.notEqual(bytes.length, 0, `${name} is empty`);
      assert.equal(
        bytes.findIndex((b) => b !== 0),
        -1,
        `${name} still holds non-zero bytes`,
      );
    }
    // The other tenant is untouched.
    assert.equal((await other.db.selectFrom('records').select('value').executeTakeFirst())?.value, kept);
    await assert.rejects(stores.open('doomed'), withCode('TRESOR_ERR_NOT_FOUND'));
  });

  it('completes a destroy that a crash interrupted, and destroying again or a missing tenant changes nothing', async () => {
    const secret = marker();
    const store = await stores.create('acme');
    await store.write((trx) => insertRecord(trx, 'r1', secret));
    await stores.close();
    // As a crash midway leaves it: the database already zeroed, a WAL and -shm still there.
    const path = join(tenantsDir, 'acme.sqlite');
    writeFileSync(path, Buffer.alloc(readFileSync(path).length));
    writeFileSync(`${path}-wal`, `leftover frame ${secret}`);
    writeFileSync(`${path}-shm`, Buffer.alloc(32768, 1));

    await useRegistry();
    await stores.destroy('acme');
    assert.deepEqual(readdirSync(tenantsDir), []);
    await stores.destroy('acme');
    await stores.destroy('never-created');
    assert.deepEqual(readdirSync(tenantsDir), []);
  });

  it('creates a fresh, empty store under the id of a destroyed tenant', async () => {
    const first = await stores.create('acme');
    await first.write((trx) => insertRecord(trx, 'r1', 'v'));
    await stores.destroy('acme');
    const second = await stores.create('acme');
    assert.deepEqual(await second.db.selectFrom('records').selectAll().execute(), []);
  });

  it('opens a store once for many concurrent opens of the same tenant', async () => {
    await stores.create('acme');
    await useRegistry();
    const handles = await Promise.all(Array.from({ length: 20 }, () => stores.open('acme')));
    assert.equal(stores.stats().opened, 1);
    assert.equal(new Set(handles.map((h) => h.location)).size, 1);
  });

  it('closes the least recently used idle stores beyond maxOpen, and reopens a closed one on its next use', async () => {
    await useRegistry({ maxOpen: 2 });
    const a = await stores.create('a');
    await a.write((trx) => insertRecord(trx, 'from-a', 'v'));
    await stores.create('b');
    await stores.create('c');
    assert.deepEqual(stores.openTenants(), ['b', 'c']);
    assert.equal(stores.stats().closed, 1);

    // The handle from create() outlives its store's closing: it reopens it, and b goes instead.
    assert.deepEqual(
      (await a.db.selectFrom('records').select('id').execute()).map((r) => r.id),
      ['from-a'],
    );
    await a.write((trx) => insertRecord(trx, 'again', 'v'));
    assert.deepEqual(stores.openTenants(), ['c', 'a']);
    assert.equal(stores.stats().closed, 2);
    assert.equal(stores.stats().opened, 4);
    assert.equal((await a.db.selectFrom('records').selectAll().execute()).length, 2);
  });

  it('never closes a store while a write or a read transaction holds it', async () => {
    await useRegistry({ maxOpen: 1 });
    const a = await stores.create('a');
    const b = await stores.create('b');
    assert.deepEqual(stores.openTenants(), ['b']);

    const writing = deferred();
    const proceed = deferred();
    const write = a.write(async (trx) => {
      await insertRecord(trx, 'slow', 'v');
      writing.resolve();
      await proceed.promise;
    });
    await writing.promise;
    // b's write makes a the least recently used store beyond maxOpen: it would be closed were it idle.
    await b.write((trx) => insertRecord(trx, 'b1', 'v'));
    assert.deepEqual(stores.openTenants(), ['a']);
    proceed.resolve();
    await write;

    const reading = deferred();
    const finishRead = deferred();
    const read = a.db.transaction().execute(async (trx) => {
      const first = await trx.selectFrom('records').select('id').execute();
      reading.resolve();
      await finishRead.promise;
      const second = await trx.selectFrom('records').select('id').execute();
      return [first, second];
    });
    await reading.promise;
    await b.write((trx) => insertRecord(trx, 'b2', 'v'));
    assert.deepEqual(stores.openTenants(), ['a']);
    finishRead.resolve();
    assert.deepEqual(await read, [[{ id: 'slow' }], [{ id: 'slow' }]]);
    // Within maxOpen again, and both stores hold everything written to them.
    assert.equal(stores.openTenants().length, 1);
    assert.equal((await b.db.selectFrom('records').selectAll().execute()).length, 2);
  });

  it('lets destroy() wait for a write in flight, then refuses further use of the tenant', async () => {
    const a = await stores.create('a');
    const writing = deferred();
    const proceed = deferred();
    const write = a.write(async (trx) => {
      await insertRecord(trx, 'last', 'v');
      writing.resolve();
      await proceed.promise;
      return 'written';
    });
    await writing.promise;
    const destroyed = stores.destroy('a');
    const tooLate = a.write((trx) => insertRecord(trx, 'too-late', 'v'));
    proceed.resolve();
    assert.equal(await write, 'written');
    await destroyed;
    await assert.rejects(tooLate, withCode('TRESOR_ERR_NOT_FOUND'));
    assert.equal(await stores.exists('a'), false);
    await assert.rejects(a.db.selectFrom('records').selectAll().execute(), withCode('TRESOR_ERR_NOT_FOUND'));
  });

  it('closes every store on close() and refuses further use', async () => {
    const a = await stores.create('a');
    await stores.create('b');
    await stores.close();
    assert.deepEqual(stores.openTenants(), []);
    assert.equal(stores.stats().closed, 2);
    await assert.rejects(stores.open('a'), withCode('TRESOR_ERR_UNAVAILABLE'));
    await assert.rejects(
      a.write((trx) => insertRecord(trx, 'late', 'v')),
      withCode('TRESOR_ERR_UNAVAILABLE'),
    );
    // Closed cleanly: SQLite removed the WAL and -shm files.
    assert.deepEqual(readdirSync(tenantsDir).sort(), ['a.sqlite', 'b.sqlite']);
  });
  /** A store file at `path` holding the records `ids` (a restored store, as a restore prepares one). */
  async function storeFileWith(path: string, ids: string[]): Promise<void> {
    const store = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS);
    for (const id of ids) await store.write((trx) => insertRecord(trx, id, 'v'));
    await store.close();
  }

  const ids = async (s: Awaited<ReturnType<TenantStores<RecordsDb>['open']>>) =>
    (await s.db.selectFrom('records').select('id').orderBy('id').execute()).map((r) => r.id);

  it('replace() waits for a write in flight, holds later reads and writes until the swap, which then see only the new file', async () => {
    const a = await stores.create('a');
    await a.write((trx) => insertRecord(trx, 'old', 'v'));
    const scratch = await stores.scratchPath('a');
    assert.ok(scratch.startsWith(join(tenantsDir, '.a.restore-')));
    await storeFileWith(scratch, ['new-1', 'new-2']);

    const writing = deferred();
    const proceed = deferred();
    const inFlight = a.write(async (trx) => {
      await insertRecord(trx, 'in-flight', 'v');
      writing.resolve();
      await proceed.promise;
    });
    await writing.promise;
    const order: string[] = [];
    const replaced = stores
      .replace('a', scratch, async (live) => {
        order.push('beforeSwap');
        assert.equal(live, join(tenantsDir, 'a.sqlite'));
        assert.deepEqual(stores.openTenants(), [], 'the live store is closed during beforeSwap');
      })
      .then(() => order.push('replaced'));
    const laterRead = ids(a).then((seen) => {
      order.push('read');
      return seen;
    });
    const laterWrite = a.write((trx) => insertRecord(trx, 'after', 'v')).then(() => order.push('write'));
    proceed.resolve();
    await Promise.all([inFlight, replaced, laterWrite]);
    // The read and the write waited for the swap: they saw the new file only.
    assert.deepEqual(await laterRead, ['new-1', 'new-2']);
    assert.deepEqual(order.slice(0, 2), ['beforeSwap', 'replaced']);
    assert.deepEqual(await ids(await stores.open('a')), ['after', 'new-1', 'new-2']);
    await stores.close();
    assert.deepEqual(readdirSync(tenantsDir).sort(), ['a.sqlite'], 'no scratch, WAL or -shm left');
  });

  it('replace() refuses a tenant whose store does not exist and a file not made by scratchPath(); removeScratch() clears leftovers', async () => {
    await stores.create('a');
    const scratch = await stores.scratchPath('b');
    await storeFileWith(scratch, ['x']);
    await assert.rejects(
      stores.replace('b', scratch, async () => {}),
      withCode('TRESOR_ERR_NOT_FOUND'),
    );
    await assert.rejects(
      stores.replace('a', scratch, async () => {}),
      RangeError,
    );
    await assert.rejects(
      stores.replace('a', join(dir, 'elsewhere'), async () => {}),
      RangeError,
    );
    // A beforeSwap that fails swaps nothing in.
    const mine = await stores.scratchPath('a');
    await storeFileWith(mine, ['y']);
    await assert.rejects(
      stores.replace('a', mine, async () => {
        throw new TresorError('TRESOR_ERR_TENANT_STATE', 'closed meanwhile');
      }),
      withCode('TRESOR_ERR_TENANT_STATE'),
    );
    assert.deepEqual(await ids(await stores.open('a')), []);
    await useRegistry();
    assert.equal(await stores.removeScratch(), 2);
    assert.deepEqual(readdirSync(tenantsDir).sort(), ['a.sqlite']);
  });
});
