/**
 * Records over the real key service, keyring and SQLite tenant stores: CRUD with optimistic
 * concurrency, validation, cursor pagination, blind-index search, audit with every change,
 * ciphertexts bound to their place, and no plaintext value on disk.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { createReadOutbox } from '../../src/audit/read-outbox.ts';
import { createVault } from '../../src/vault/collections.ts';
import { decodeFieldEnvelopes, encodeFieldEnvelopes } from '../../src/vault/field-envelopes.ts';
import { recordPageQuery } from '../../src/vault/record-search.ts';
import { canonicalDate } from '../../src/vault/schema.ts';
import { caller, PEOPLE, tresorError, type VaultRig, vaultRig } from './helpers.ts';

const T = 'acme';

/** Rows of a table of the tenant's store; for audit_events, with the tenant's reads in the control outbox. */
async function count(rig: VaultRig, table: 'records' | 'audit_events' | 'blind_index'): Promise<number> {
  const store = await rig.store(T);
  const row = await store.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n) + (table === 'audit_events' ? (await rig.readEvents(T)).length : 0);
}

describe('records', () => {
  let rig: VaultRig;
  before(async () => {
    rig = await vaultRig({
      limits: { maxStringBytes: 256, maxObjectDepth: 4, maxObjectBytes: 8000, maxRecordBytes: 8192 },
    });
    await rig.vault.putCollection(T, 'people', PEOPLE, caller());
    await rig.vault.putCollection(
      T,
      'notes',
      { fields: { text: { type: 'string', classification: 'internal' } } },
      caller(),
    );
  });
  after(async () => {
    await rig.close();
  });

  it('creates a record and reads it back at version 1', async () => {
    const data = {
      email: 'ada@example.com',
      name: 'Ada',
      age: 36,
      vip: true,
      born: '1815-12-10',
      profile: { langs: ['en', 'fr'], notes: { a: 1 } },
    };
    const created = await rig.vault.createRecord(T, 'people', data, caller());
    assert.match(created.id, /^rec_[0-9a-f]{32}$/);
    assert.equal(created.version, 1);
    assert.deepEqual(created.data, data);
    const read = await rig.vault.readRecord(T, 'people', created.id, caller());
    assert.deepEqual(read, { id: created.id, version: 1, data });
  });

  it('updates partially with If-Match, bumps the version, and removes an optional field on null', async () => {
    const { id } = await rig.vault.createRecord(
      T,
      'people',
      { email: 'b@example.com', name: 'B', age: 1 },
      caller(),
    );
    const updated = await rig.vault.updateRecord(T, 'people', id, { age: 2, name: null }, 1, caller());
    assert.deepEqual(updated, { id, version: 2, data: { email: 'b@example.com', age: 2 } });
    assert.deepEqual(await rig.vault.readRecord(T, 'people', id, caller()), updated);
  });

  it('refuses a partial update without If-Match (428) or with another version (412), changing nothing', async () => {
    const { id } = await rig.vault.createRecord(T, 'people', { email: 'c@example.com' }, caller());
    const before = await count(rig, 'audit_events');
    const missing = await tresorError(
      rig.vault.updateRecord(T, 'people', id, { age: 3 }, undefined, caller()),
    );
    assert.equal(missing.code, 'TRESOR_ERR_PRECONDITION_REQUIRED');
    assert.equal(missing.status, 428);
    const stale = await tresorError(rig.vault.updateRecord(T, 'people', id, { age: 3 }, 7, caller()));
    assert.equal(stale.code, 'TRESOR_ERR_PRECONDITION_FAILED');
    assert.equal(stale.status, 412);
    const staleDelete = await tresorError(rig.vault.deleteRecord(T, 'people', id, 2, caller()));
    assert.equal(staleDelete.code, 'TRESOR_ERR_PRECONDITION_FAILED');
    assert.equal((await rig.vault.readRecord(T, 'people', id, caller())).version, 1);
    assert.equal(await count(rig, 'audit_events'), before + 1, 'only the read was audited');
  });

  it('lets only one of two concurrent updates of the same version win', async () => {
    const { id } = await rig.vault.createRecord(T, 'people', { email: 'race@example.com' }, caller());
    const results = await Promise.allSettled([
      rig.vault.updateRecord(T, 'people', id, { age: 1 }, 1, caller()),
      rig.vault.updateRecord(T, 'people', id, { age: 2 }, 1, caller()),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const loser = results.find((r) => r.status === 'rejected');
    assert.equal((loser as PromiseRejectedResult).reason.code, 'TRESOR_ERR_PRECONDITION_FAILED');
    assert.equal((await rig.vault.readRecord(T, 'people', id, caller())).version, 2);
  });

  it('deletes a record, with or without If-Match, and its index rows', async () => {
    const a = await rig.vault.createRecord(T, 'people', { email: 'del-a@example.com', age: 5 }, caller());
    const b = await rig.vault.createRecord(T, 'people', { email: 'del-b@example.com' }, caller());
    await rig.vault.deleteRecord(T, 'people', a.id, 1, caller());
    await rig.vault.deleteRecord(T, 'people', b.id, undefined, caller());
    for (const id of [a.id, b.id]) {
      assert.equal(
        (await tresorError(rig.vault.readRecord(T, 'people', id, caller()))).code,
        'TRESOR_ERR_NOT_FOUND',
      );
    }
    const store = await rig.store(T);
    const rows = await store.db
      .selectFrom('blind_index')
      .select('record_id')
      .where('record_id', 'in', [a.id, b.id])
      .execute();
    assert.equal(rows.length, 0);
  });

  it('answers the same 404 for an unknown collection, unknown or malformed id, or an id of another collection or tenant', async () => {
    const { id } = await rig.vault.createRecord(T, 'people', { email: 'nf@example.com' }, caller());
    const attempts = [
      () => rig.vault.readRecord(T, 'nope', id, caller()),
      () => rig.vault.readRecord(T, 'people', 'rec_00000000000000000000000000000000', caller()),
      () => rig.vault.readRecord(T, 'people', '../../etc/passwd', caller()),
      () => rig.vault.readRecord(T, 'notes', id, caller()),
      () => rig.vault.readRecord('globex', 'people', id, caller()),
      () => rig.vault.updateRecord(T, 'notes', id, { text: 'x' }, 1, caller()),
      () => rig.vault.deleteRecord(T, 'notes', id, undefined, caller()),
      () => rig.vault.createRecord(T, 'Bad Name', {}, caller()),
      () => rig.vault.listRecords(T, 'nope', {}, caller()),
    ];
    for (const attempt of attempts) {
      const err = await tresorError(attempt());
      assert.equal(err.code, 'TRESOR_ERR_NOT_FOUND');
      assert.equal(err.message, 'no such record or collection');
    }
  });

  it('refuses unknown fields with 422 naming them, and writes nothing', async () => {
    const before = await count(rig, 'records');
    const err = await tresorError(
      rig.vault.createRecord(T, 'people', { email: 'u@example.com', ssn: '078-05-1120', shoe: 44 }, caller()),
    );
    assert.equal(err.code, 'TRESOR_ERR_UNKNOWN_FIELDS');
    assert.equal(err.status, 422);
    assert.deepEqual(err.details?.fields, ['ssn', 'shoe']);
    assert.doesNotMatch(JSON.stringify(err.details) + err.message, /078-05-1120/);
    const { id } = await rig.vault.createRecord(T, 'people', { email: 'u2@example.com' }, caller());
    const patchErr = await tresorError(
      rig.vault.updateRecord(T, 'people', id, { __proto__x: 1, ssn: 1 }, 1, caller()),
    );
    assert.equal(patchErr.code, 'TRESOR_ERR_UNKNOWN_FIELDS');
    assert.equal(await count(rig, 'records'), before + 1);
  });

  it('refuses wrong types, missing required fields, bad dates and non-finite numbers, naming fields and never values', async () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ name: 'no email' }, 'email', 'required'],
      [{ email: null }, 'email', 'required'],
      [{ email: 42 }, 'email', 'type'],
      [{ email: 'x@example.com', age: 'secret-age-value' }, 'age', 'type'],
      [{ email: 'x@example.com', age: Number.NaN }, 'age', 'not-finite'],
      [{ email: 'x@example.com', age: Number.POSITIVE_INFINITY }, 'age', 'not-finite'],
      [{ email: 'x@example.com', vip: 'yes' }, 'vip', 'type'],
      [{ email: 'x@example.com', born: '2023-02-29' }, 'born', 'invalid-date'],
      [{ email: 'x@example.com', born: '2023-01-01T25:00:00Z' }, 'born', 'invalid-date'],
      [{ email: 'x@example.com', born: '01/02/2023' }, 'born', 'invalid-date'],
      [{ email: 'x@example.com', profile: ['array'] }, 'profile', 'type'],
      [{ email: 'x@example.com', profile: 'secret-profile-value' }, 'profile', 'type'],
      [{ email: 'bad\uD800surrogate' }, 'email', 'malformed-unicode'],
    ];
    const before = await count(rig, 'records');
    for (const [body, field, problem] of cases) {
      const err = await tresorError(rig.vault.createRecord(T, 'people', body, caller()));
      assert.equal(err.code, 'TRESOR_ERR_VALIDATION', JSON.stringify(body));
      assert.equal(err.status, 422);
      assert.deepEqual(err.details?.fields, [field]);
      assert.deepEqual(err.details?.problems, [{ field, problem }]);
      assert.doesNotMatch(JSON.stringify(err.details) + err.message, /secret-|no email|yes|array/);
    }
    for (const body of [null, 'text', 42, [1, 2], undefined]) {
      assert.equal(
        (await tresorError(rig.vault.createRecord(T, 'people', body, caller()))).code,
        'TRESOR_ERR_VALIDATION',
      );
    }
    assert.equal(await count(rig, 'records'), before);
  });

  it('accepts ISO 8601 dates and RFC 3339 date-times with offsets', async () => {
    for (const born of [
      '2024-02-29',
      '2024-02-29T23:59:59Z',
      '2024-02-29T23:59:59.123456+05:30',
      '0001-01-01T00:00:00-00:00',
    ]) {
      const r = await rig.vault.createRecord(T, 'people', { email: 'd@example.com', born }, caller());
      assert.equal(r.data.born, born);
    }
  });

  it('enforces the string length, object depth and record size limits', async () => {
    const long = await tresorError(rig.vault.createRecord(T, 'people', { email: 'é'.repeat(129) }, caller()));
    assert.deepEqual(long.details?.problems, [{ field: 'email', problem: 'too-long' }]);
    const deep = await tresorError(
      rig.vault.createRecord(
        T,
        'people',
        { email: 'x@example.com', profile: { a: { b: { c: { d: { e: 1 } } } } } },
        caller(),
      ),
    );
    assert.deepEqual(deep.details?.problems, [{ field: 'profile', problem: 'too-deep' }]);
    const big = await tresorError(
      rig.vault.createRecord(
        T,
        'people',
        { email: 'x@example.com', profile: { a: 'x'.repeat(8000) } },
        caller(),
      ),
    );
    assert.deepEqual(big.details?.problems, [{ field: 'profile', problem: 'too-large' }]);
    const record = await tresorError(
      rig.vault.createRecord(
        T,
        'people',
        { email: 'x'.repeat(250), name: 'y'.repeat(250), profile: { a: 'x'.repeat(7900) } },
        caller(),
      ),
    );
    assert.equal(record.code, 'TRESOR_ERR_PAYLOAD_TOO_LARGE');
    assert.equal(record.status, 413);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const cycle = await tresorError(
      rig.vault.createRecord(T, 'people', { email: 'x@example.com', profile: cyclic }, caller()),
    );
    assert.deepEqual(cycle.details?.problems, [{ field: 'profile', problem: 'too-deep' }]);
  });

  it('refuses __proto__ keys inside object values', async () => {
    const body = JSON.parse('{"email":"p@example.com","profile":{"a":{"__proto__":{"polluted":true}}}}');
    const err = await tresorError(rig.vault.createRecord(T, 'people', body, caller()));
    assert.deepEqual(err.details?.problems, [{ field: 'profile', problem: 'forbidden-key' }]);
    const top = JSON.parse('{"email":"p@example.com","__proto__":{"polluted":true}}');
    assert.equal(
      (await tresorError(rig.vault.createRecord(T, 'people', top, caller()))).code,
      'TRESOR_ERR_UNKNOWN_FIELDS',
    );
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('lists in creation order across pages with an opaque cursor', async () => {
    await rig.vault.putCollection(
      T,
      'pages',
      { fields: { n: { type: 'number', classification: 'public' } } },
      caller(),
    );
    const ids: string[] = [];
    for (let n = 0; n < 7; n++) ids.push((await rig.vault.createRecord(T, 'pages', { n }, caller())).id);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await rig.vault.listRecords(T, 'pages', { limit: 3, cursor }, caller());
      seen.push(...page.records.map((r) => r.id));
      cursor = page.nextCursor ?? undefined;
      if (cursor) assert.match(cursor, /^[A-Za-z0-9_-]+$/);
      pages++;
    } while (cursor);
    assert.deepEqual(seen, ids);
    assert.equal(pages, 3);
    const all = await rig.vault.listRecords(T, 'pages', {}, caller());
    assert.equal(all.records.length, 7);
    assert.equal(all.nextCursor, null);
    const capped = await rig.vault.listRecords(T, 'pages', { limit: 10_000 }, caller());
    assert.equal(capped.records.length, 7);
    for (const limit of [0, -1, 1.5, Number.NaN]) {
      assert.equal(
        (await tresorError(rig.vault.listRecords(T, 'pages', { limit }, caller()))).code,
        'TRESOR_ERR_BAD_REQUEST',
      );
    }
  });

  it('refuses a malformed or altered cursor, and a cursor issued for another query or collection (400)', async () => {
    const page = await rig.vault.listRecords(T, 'pages', { limit: 2 }, caller());
    const cursor = page.nextCursor;
    assert.ok(cursor);
    const bytes = Buffer.from(cursor, 'base64url');
    bytes[8] = (bytes[8] ?? 0) ^ 0x01; // point at another record
    const tampered = [
      bytes.toString('base64url'),
      cursor.slice(0, -2),
      `${cursor}A`,
      'not a cursor',
      '',
      'A'.repeat(5000),
      Buffer.from('{"seq":1}').toString('base64url'),
    ];
    for (const c of tampered) {
      const err = await tresorError(rig.vault.listRecords(T, 'pages', { limit: 2, cursor: c }, caller()));
      assert.equal(err.code, 'TRESOR_ERR_INVALID_CURSOR');
      assert.equal(err.status, 400);
    }
    const other = await tresorError(
      rig.vault.listRecords(T, 'pages', { limit: 2, cursor, where: { n: '1' } }, caller()),
    );
    assert.equal(other.code, 'TRESOR_ERR_VALIDATION', 'n is not searchable');
    const elsewhere = await tresorError(rig.vault.listRecords(T, 'people', { limit: 2, cursor }, caller()));
    assert.equal(elsewhere.code, 'TRESOR_ERR_INVALID_CURSOR');
    const search = await tresorError(
      rig.vault.listRecords(T, 'people', { cursor, where: { vip: 'true' } }, caller()),
    );
    assert.equal(search.code, 'TRESOR_ERR_INVALID_CURSOR');
  });

  it('searches by equality through the blind index and decrypts only the matching records', async () => {
    await rig.vault.putCollection(T, 'crowd', PEOPLE, caller());
    const matching: string[] = [];
    for (let i = 0; i < 20; i++) {
      const hit = i % 7 === 3;
      const r = await rig.vault.createRecord(
        T,
        'crowd',
        {
          email: `p${i}@example.com`,
          age: hit ? 42 : 20 + i,
          vip: i % 2 === 0,
          born: hit ? '1990-01-01T00:00:00Z' : '1980-05-05',
        },
        caller(),
      );
      if (hit) matching.push(r.id);
    }
    assert.equal(matching.length, 3);
    rig.resetLoans();
    const found = await rig.vault.listRecords(T, 'crowd', { where: { age: '42' } }, caller());
    assert.deepEqual(
      found.records.map((r) => r.id),
      matching,
    );
    assert.equal(rig.loans.data, 3, 'only the three matches were decrypted');

    // Equal values in another spelling find the same records.
    assert.deepEqual(
      (await rig.vault.listRecords(T, 'crowd', { where: { age: '42.0e0' } }, caller())).records.length,
      3,
    );
    const sameInstant = await rig.vault.listRecords(
      T,
      'crowd',
      { where: { born: '1990-01-01T01:00:00.000+01:00' } },
      caller(),
    );
    assert.deepEqual(
      sameInstant.records.map((r) => r.id),
      matching,
    );

    // Several terms intersect.
    const both = await rig.vault.listRecords(T, 'crowd', { where: { age: 42, vip: 'false' } }, caller());
    // Matches are i = 3, 10, 17; vip is i % 2 === 0, so 3 and 17 are not VIPs.
    assert.deepEqual(
      both.records.map((r) => r.id),
      [matching[0], matching[2]],
    );
    const one = await rig.vault.listRecords(T, 'crowd', { where: { email: 'p10@example.com' } }, caller());
    assert.deepEqual(
      one.records.map((r) => r.data.email),
      ['p10@example.com'],
    );
    rig.resetLoans();
    const none = await rig.vault.listRecords(
      T,
      'crowd',
      { where: { email: 'nobody@example.com' } },
      caller(),
    );
    assert.deepEqual(none, { records: [], nextCursor: null });
    assert.equal(rig.loans.data, 0);

    // Search pages too, with a cursor bound to the query.
    const p1 = await rig.vault.listRecords(T, 'crowd', { where: { vip: true }, limit: 4 }, caller());
    assert.equal(p1.records.length, 4);
    assert.ok(p1.nextCursor);
    const p2 = await rig.vault.listRecords(
      T,
      'crowd',
      { where: { vip: true }, limit: 4, cursor: p1.nextCursor },
      caller(),
    );
    const p3 = await rig.vault.listRecords(
      T,
      'crowd',
      { where: { vip: true }, limit: 4, cursor: p2.nextCursor ?? undefined },
      caller(),
    );
    assert.equal(p1.records.length + p2.records.length + p3.records.length, 10);
    assert.ok([...p1.records, ...p2.records, ...p3.records].every((r) => r.data.vip === true));
    const wrong = await tresorError(
      rig.vault.listRecords(T, 'crowd', { where: { vip: false }, limit: 4, cursor: p1.nextCursor }, caller()),
    );
    assert.equal(wrong.code, 'TRESOR_ERR_INVALID_CURSOR');
  });

  it('refuses search on unknown or non-searchable fields and on values of the wrong type (422 naming the field)', async () => {
    const unknown = await tresorError(rig.vault.listRecords(T, 'crowd', { where: { ssn: 'x' } }, caller()));
    assert.equal(unknown.code, 'TRESOR_ERR_UNKNOWN_FIELDS');
    assert.deepEqual(unknown.details?.fields, ['ssn']);
    for (const [where, field, problem] of [
      [{ name: 'Ada' }, 'name', 'not-searchable'],
      [{ profile: 'x' }, 'profile', 'not-searchable'],
      [{ age: 'forty' }, 'age', 'type'],
      [{ age: 'Infinity' }, 'age', 'type'],
      [{ vip: 'yes' }, 'vip', 'type'],
      [{ born: 'yesterday' }, 'born', 'invalid-date'],
    ] as const) {
      const err = await tresorError(rig.vault.listRecords(T, 'crowd', { where }, caller()));
      assert.equal(err.code, 'TRESOR_ERR_VALIDATION');
      assert.deepEqual(err.details?.problems, [{ field, problem }]);
      assert.doesNotMatch(err.message + JSON.stringify(err.details), /Ada|forty|yesterday/);
    }
  });

  it('writes every change with its audit event in the tenant store and every read’s in the control outbox, naming fields and never values', async () => {
    await rig.vault.putCollection(T, 'audited', PEOPLE, caller());
    const changesBefore = (await rig.auditEvents(T)).length;
    const readsBefore = (await rig.readEvents(T)).length;
    const base = caller({ requestId: 'req-audit', actor: { kind: 'customer', id: 'usr_1' } });
    const { id } = await rig.vault.createRecord(
      T,
      'audited',
      { email: 'audit-canary@example.com', name: 'Canary' },
      base,
    );
    await rig.vault.readRecord(T, 'audited', id, base);
    await rig.vault.updateRecord(T, 'audited', id, { age: 7734529 }, 1, base);
    await rig.vault.listRecords(T, 'audited', {}, base);
    await rig.vault.listRecords(T, 'audited', { where: { email: 'search-canary@example.com' } }, base);
    await rig.vault.deleteRecord(T, 'audited', id, undefined, base);
    const changes = (await rig.auditEvents(T)).slice(changesBefore);
    const reads = (await rig.readEvents(T)).slice(readsBefore);
    assert.deepEqual(
      changes.map((e) => [e.action, e.target?.recordIds, e.target?.fields]),
      [
        ['record.create', [id], ['email', 'name']],
        ['record.update', [id], ['age']],
        ['record.delete', [id], undefined],
      ],
    );
    assert.deepEqual(
      reads.map((e) => [e.action, e.target?.recordIds, e.target?.fields]),
      [
        ['record.read', [id], ['email', 'name']],
        ['record.list', [id], []],
        ['record.search', [], ['email']],
      ],
    );
    for (const e of [...changes, ...reads]) {
      assert.equal(e.tenant, T);
      assert.equal(e.outcome, 'success');
      assert.equal(e.requestId, 'req-audit');
      assert.deepEqual(e.actor, { kind: 'customer', id: 'usr_1' });
      assert.equal(e.target?.collection, 'audited');
    }
    const store = await rig.store(T);
    const raw = [
      ...(await store.db.selectFrom('audit_events').select('event').execute()),
      ...(await rig.control.db.selectFrom('audit_events').select('event').execute()),
    ]
      .map((r) => r.event)
      .join('\n');
    for (const value of ['audit-canary', 'search-canary', 'Canary"', '7734529']) {
      assert.ok(!raw.includes(value), `audit log contains ${value}`);
    }
  });

  it('names a searched value in its audit entry only as an HMAC under the tenant audit-hmac key: equal values correlate, other values and other tenants do not', async () => {
    await rig.vault.putCollection(T, 'hmacs', PEOPLE, caller());
    const before = (await rig.readEvents(T)).length;
    const search = (tenant: string, email: string) =>
      rig.vault.listRecords(tenant, 'hmacs', { where: { email } }, caller());
    await search(T, 'hmac-canary@example.com');
    await search(T, 'hmac-canary@example.com');
    await search(T, 'other-canary@example.com');
    const events = (await rig.readEvents(T)).slice(before).filter((e) => e.action === 'record.search');
    assert.equal(events.length, 3);
    type Searched = { field: string; hmac: string; keyId: string }[];
    const values = events.map((e) => e.target?.searchedValues as Searched);
    for (const v of values) {
      assert.equal(v.length, 1);
      assert.equal(v[0]?.field, 'email');
      assert.match(v[0]?.hmac ?? '', /^[A-Za-z0-9_-]{43}$/);
      assert.match(v[0]?.keyId ?? '', /./);
    }
    assert.equal(values[0]?.[0]?.hmac, values[1]?.[0]?.hmac, 'the same value searched twice correlates');
    assert.notEqual(values[0]?.[0]?.hmac, values[2]?.[0]?.hmac, 'another value does not');
    const raw = JSON.stringify(events);
    assert.ok(!raw.includes('canary'), 'no searched value in the entry');

    // The key is the audit-hmac key, not the blind-index key: the HMAC is not the stored index MAC.
    const store = await rig.store(T);
    const macs = (await store.db.selectFrom('blind_index').select('mac').execute()).map((r) =>
      Buffer.from(r.mac).toString('base64url'),
    );
    assert.ok(!macs.includes(values[0]?.[0]?.hmac ?? ''));

    // Another tenant searching the same value gets an unrelated HMAC.
    const other = 'globex';
    await rig.vault.putCollection(other, 'hmacs', PEOPLE, caller());
    const otherBefore = (await rig.readEvents(other)).length;
    await search(other, 'hmac-canary@example.com');
    const theirs = (await rig.readEvents(other)).slice(otherBefore).find((e) => e.action === 'record.search');
    const theirHmac = (theirs?.target?.searchedValues as Searched | undefined)?.[0]?.hmac;
    assert.match(theirHmac ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(theirHmac, values[0]?.[0]?.hmac);
  });

  it('fails closed: no data is returned when its audit event cannot be written', async () => {
    // A read's event goes to the control outbox: that store failing its commit fails the read.
    const readsBroken = createVault({
      stores: (tenant) => rig.store(tenant),
      keys: rig.keyring,
      readOutbox: createReadOutbox({ ...rig.control, write: () => Promise.reject(new Error('disk full')) }),
    });
    // A change's event commits with it in the tenant's store: that store failing fails the change.
    const changesBroken = createVault({
      stores: async (tenant) => {
        const s = await rig.store(tenant);
        return { ...s, write: () => Promise.reject(new Error('disk full')) };
      },
      keys: rig.keyring,
      readOutbox: createReadOutbox(rig.control),
    });
    const { id } = await rig.vault.createRecord(T, 'people', { email: 'fc@example.com' }, caller());
    await assert.rejects(readsBroken.readRecord(T, 'people', id, caller()), /disk full/);
    await assert.rejects(readsBroken.listRecords(T, 'people', {}, caller()), /disk full/);
    await assert.rejects(
      readsBroken.listRecords(T, 'people', { where: { email: 'fc@example.com' } }, caller()),
      /disk full/,
    );
    await assert.rejects(
      changesBroken.createRecord(T, 'people', { email: 'fc2@example.com' }, caller()),
      /disk full/,
    );
  });

  it('fails to decrypt (TRESOR_ERR_DECRYPT_FAILED) a ciphertext moved to another record, field or collection, and audits it', async () => {
    await rig.vault.putCollection(T, 'people2', PEOPLE, caller());
    const a = await rig.vault.createRecord(T, 'people', { email: 'move-a@example.com', name: 'A' }, caller());
    const b = await rig.vault.createRecord(T, 'people', { email: 'move-b@example.com', name: 'B' }, caller());
    const c = await rig.vault.createRecord(
      T,
      'people2',
      { email: 'move-c@example.com', name: 'C' },
      caller(),
    );
    const store = await rig.store(T);
    const blobOf = async (id: string) =>
      (await store.db.selectFrom('records').select('fields').where('id', '=', id).executeTakeFirstOrThrow())
        .fields;
    const setBlob = (id: string, fields: Uint8Array) =>
      store.write((trx) => trx.updateTable('records').set({ fields }).where('id', '=', id).execute());
    const aBlob = Buffer.from(await blobOf(a.id));

    // Another record of the same collection.
    await setBlob(b.id, aBlob);
    await assert.rejects(rig.vault.readRecord(T, 'people', b.id, caller()), {
      code: 'TRESOR_ERR_DECRYPT_FAILED',
    });
    // Another collection.
    await setBlob(c.id, aBlob);
    await assert.rejects(rig.vault.readRecord(T, 'people2', c.id, caller()), {
      code: 'TRESOR_ERR_DECRYPT_FAILED',
    });
    // Another field of the same record (email ↔ name).
    const env = decodeFieldEnvelopes(aBlob);
    const swapped = new Map([
      ['email', env.get('name') as Buffer],
      ['name', env.get('email') as Buffer],
    ]);
    await setBlob(a.id, encodeFieldEnvelopes(swapped));
    await assert.rejects(rig.vault.readRecord(T, 'people', a.id, caller()), {
      code: 'TRESOR_ERR_DECRYPT_FAILED',
    });
    // An older version of the same record (rollback of one row).
    const d = await rig.vault.createRecord(T, 'people', { email: 'move-d@example.com' }, caller());
    const v1 = Buffer.from(await blobOf(d.id));
    await rig.vault.updateRecord(T, 'people', d.id, { name: 'D2' }, 1, caller());
    await setBlob(d.id, v1);
    await assert.rejects(rig.vault.readRecord(T, 'people', d.id, caller()), {
      code: 'TRESOR_ERR_DECRYPT_FAILED',
    });
    // One flipped bit.
    const e = await rig.vault.createRecord(T, 'people', { email: 'move-e@example.com' }, caller());
    const eBlob = Buffer.from(await blobOf(e.id));
    eBlob[eBlob.length - 1] = (eBlob[eBlob.length - 1] ?? 0) ^ 1;
    await setBlob(e.id, eBlob);
    await assert.rejects(rig.vault.readRecord(T, 'people', e.id, caller()), {
      code: 'TRESOR_ERR_DECRYPT_FAILED',
    });

    const failures = (await rig.readEvents(T)).filter((ev) => ev.outcome === 'failure');
    assert.ok(failures.some((ev) => ev.action === 'record.read' && ev.target?.recordIds?.[0] === b.id));
  });

  it('leaves no plaintext field value in the store file or its WAL', async () => {
    const canaries = {
      email: 'plaintext-canary-7f3a@example.com',
      name: 'Canary McCanaryface-91',
      born: '1999-09-09T09:09:09Z',
      profile: { secret: 'object-canary-5521' },
    };
    const { id } = await rig.vault.createRecord(T, 'people', { ...canaries, age: 987654.321 }, caller());
    await rig.vault.updateRecord(T, 'people', id, { name: 'Canary Updated-4410' }, 1, caller());
    await rig.vault.listRecords(T, 'people', { where: { email: canaries.email } }, caller());
    const disk = rig.storeBytes(T);
    for (const value of [
      canaries.email,
      canaries.name,
      canaries.born,
      'object-canary-5521',
      '987654.321',
      'Canary Updated-4410',
    ]) {
      assert.equal(disk.indexOf(Buffer.from(value, 'utf8')), -1, `found ${value} on disk`);
    }
  });

  describe('properties', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 20 });
    const validRecord = fc.record(
      {
        email: text,
        name: text,
        age: fc.double({ noNaN: true, noDefaultInfinity: true }),
        vip: fc.boolean(),
        born: fc
          .date({
            min: new Date('0001-01-01T00:00:00Z'),
            max: new Date('9999-12-31T23:59:59Z'),
            noInvalidDate: true,
          })
          .map((d) => d.toISOString()),
        profile: fc
          .dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 })
          .filter((o) => !JSON.stringify(o).includes('"__proto__"')),
      },
      { requiredKeys: ['email'] },
    );

    it('round-trips random valid records, and finds each by its email', async () => {
      await fc.assert(
        fc.asyncProperty(validRecord, async (input) => {
          const created = await rig.vault.createRecord(T, 'people', input, caller());
          const read = await rig.vault.readRecord(T, 'people', created.id, caller());
          assert.deepStrictEqual(read.data, JSON.parse(JSON.stringify(input)));
          const found = await rig.vault.listRecords(
            T,
            'people',
            { where: { email: input.email }, limit: 500 },
            caller(),
          );
          assert.ok(found.records.some((r) => r.id === created.id));
        }),
        { numRuns: 60 },
      );
    });

    const wrongValue = {
      email: fc.oneof(fc.integer(), fc.boolean(), fc.array(text)),
      name: fc.oneof(fc.double(), fc.boolean(), fc.dictionary(text, text)),
      age: fc.oneof(text, fc.boolean(), fc.constantFrom(Number.NaN, Infinity, -Infinity)),
      vip: fc.oneof(text, fc.integer(), fc.constant([])),
      born: fc.oneof(
        text.filter((s) => canonicalDate(s) === undefined),
        fc.integer(),
        fc.constantFrom('2023-02-29', '2024-13-01', '2024-01-01T24:00:00Z', '2024-01-01 00:00:00Z'),
      ),
      profile: fc.oneof(text, fc.integer(), fc.array(fc.integer())),
    } as const;
    const fieldNames = Object.keys(wrongValue) as Array<keyof typeof wrongValue>;
    const invalidBody = fc.oneof(
      // an undeclared field
      fc.tuple(validRecord, fc.stringMatching(/^[a-z][a-z0-9_]{0,10}$/), fc.jsonValue()).map(([r, k, v]) => ({
        ...r,
        [`x_${k}`]: v,
      })),
      // a missing required field
      validRecord.map(({ email: _email, ...rest }) => rest),
      // a value of the wrong type
      fc
        .tuple(validRecord, fc.constantFrom(...fieldNames))
        .chain(([r, f]) => wrongValue[f].map((v) => ({ ...r, [f]: v }))),
      // not an object
      fc.oneof(text, fc.integer(), fc.array(fc.anything()), fc.constant(null)),
    );

    it('refuses random invalid bodies with a 4xx TresorError and writes nothing', async () => {
      const records = await count(rig, 'records');
      const events = await count(rig, 'audit_events');
      await fc.assert(
        fc.asyncProperty(invalidBody, async (body) => {
          const err = await tresorError(rig.vault.createRecord(T, 'people', body, caller()));
          assert.ok(err.status >= 400 && err.status < 500, err.code);
        }),
        { numRuns: 300 },
      );
      assert.equal(await count(rig, 'records'), records);
      assert.equal(await count(rig, 'audit_events'), events);
    });

    it('answers any input, create or patch, with success or a 4xx TresorError — never another error', async () => {
      const { id } = await rig.vault.createRecord(T, 'people', { email: 'fuzz@example.com' }, caller());
      let version = 1;
      await fc.assert(
        fc.asyncProperty(fc.anything({ withNullPrototype: true, withObjectString: true }), async (body) => {
          for (const attempt of [
            () => rig.vault.createRecord(T, 'people', body, caller()),
            () => rig.vault.updateRecord(T, 'people', id, body, version, caller()),
          ]) {
            try {
              const r = await attempt();
              if (r.id === id) version = r.version;
            } catch (err) {
              const e = err as { status?: number; name?: string };
              assert.equal(e.name, 'TresorError', String(err));
              assert.ok((e.status ?? 500) < 500);
            }
          }
        }),
        { numRuns: 200 },
      );
    });
  });
});

describe('search query plan', () => {
  let rig: VaultRig;
  before(async () => {
    rig = await vaultRig();
  });
  after(async () => {
    await rig.close();
  });

  it('starts a search from the blind index instead of walking the collection', async () => {
    const store = await rig.store();
    const mac = Buffer.alloc(32, 1);
    const compiled = recordPageQuery(store.db, 'people', [{ field: 'email', mac }], 0, 50).compile();
    const explained = await store.db.executeQuery<{ detail: string }>({
      ...compiled,
      sql: `EXPLAIN QUERY PLAN ${compiled.sql}`,
    } as never);
    const details = explained.rows.map((r) => r.detail).join('\n');
    assert.doesNotMatch(details, /records_by_collection/, `plan:\n${details}`);
    assert.match(details, /blind_index/, `plan:\n${details}`);
  });

  it('walks the collection index for a plain listing', async () => {
    const store = await rig.store();
    const compiled = recordPageQuery(store.db, 'people', [], 0, 50).compile();
    const explained = await store.db.executeQuery<{ detail: string }>({
      ...compiled,
      sql: `EXPLAIN QUERY PLAN ${compiled.sql}`,
    } as never);
    const details = explained.rows.map((r) => r.detail).join('\n');
    assert.match(details, /records_by_collection|PRIMARY KEY|rowid/i, `plan:\n${details}`);
  });
});
