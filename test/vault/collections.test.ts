/**
 * Collection schemas: declarations checked, versions counted, and every schema change either
 * refused or applied with its data migration in the same audited transaction.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeFieldEnvelopes } from '../../src/vault/field-envelopes.ts';
import { caller, PEOPLE, tresorError, type VaultRig, vaultRig } from './helpers.ts';

const T = 'acme';

describe('collections', () => {
  let rig: VaultRig;
  before(async () => {
    rig = await vaultRig({ limits: { maxFieldsPerCollection: 8, maxCollections: 30 } });
  });
  after(async () => {
    await rig.close();
  });

  async function blobFields(id: string): Promise<string[]> {
    const store = await rig.store(T);
    const row = await store.db
      .selectFrom('records')
      .select('fields')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    return [...decodeFieldEnvelopes(row.fields).keys()];
  }

  async function indexRows(collection: string, field: string): Promise<number> {
    const store = await rig.store(T);
    const rows = await store.db
      .selectFrom('blind_index')
      .select('record_id')
      .where('collection', '=', collection)
      .where('field', '=', field)
      .execute();
    return rows.length;
  }

  it('declares a collection, then reads and lists it', async () => {
    const put = await rig.vault.putCollection(T, 'people', { ...PEOPLE, retentionDays: 30 }, caller());
    assert.equal(put.created, true);
    assert.equal(put.version, 1);
    assert.deepEqual(put.schema.fields.email, {
      type: 'string',
      classification: 'personal',
      required: true,
      searchable: true,
    });
    assert.deepEqual(put.schema.fields.name, {
      type: 'string',
      classification: 'personal',
      required: false,
      searchable: false,
    });
    assert.equal(put.schema.retentionDays, 30);
    const got = await rig.vault.getCollection(T, 'people');
    assert.equal(got.version, 1);
    assert.deepEqual(got.schema, put.schema);
    assert.ok((await rig.vault.listCollections(T)).some((c) => c.name === 'people'));
    const events = await rig.auditEvents(T);
    const last = events.at(-1);
    assert.equal(last?.action, 'collection.put');
    assert.deepEqual(last?.target?.fields, Object.keys(PEOPLE.fields));
  });

  it('keeps the version when the same declaration is put again', async () => {
    const again = await rig.vault.putCollection(T, 'people', { ...PEOPLE, retentionDays: 30 }, caller());
    assert.equal(again.created, false);
    assert.equal(again.version, 1);
  });

  it('answers 404 for an unknown collection', async () => {
    assert.equal((await tresorError(rig.vault.getCollection(T, 'nope'))).code, 'TRESOR_ERR_NOT_FOUND');
    assert.equal((await tresorError(rig.vault.getCollection(T, '__proto__'))).code, 'TRESOR_ERR_NOT_FOUND');
  });

  it('refuses invalid declarations with 422 naming what is wrong', async () => {
    const field = { type: 'string', classification: 'public' };
    const cases: Array<[string, unknown, string[]]> = [
      ['Bad-Name', { fields: { a: field } }, ['name']],
      ['constructor', { fields: { a: field } }, ['name']],
      ['ok', null, []],
      ['ok', { fields: {} }, ['fields']],
      ['ok', { fields: { a: field }, extra: 1 }, ['extra']],
      ['ok', { fields: { 'Bad Field': field } }, ['Bad Field']],
      ['ok', { fields: { constructor: field } }, ['constructor']],
      ['ok', { fields: { prototype: field } }, ['prototype']],
      [
        'ok',
        JSON.parse('{"fields":{"__proto__":{"type":"string","classification":"public"}}}'),
        ['__proto__'],
      ],
      ['ok', { fields: { a: { type: 'uuid', classification: 'public' } } }, ['a']],
      ['ok', { fields: { a: { type: 'string', classification: 'secret' } } }, ['a']],
      ['ok', { fields: { a: { ...field, required: 'yes' } } }, ['a']],
      ['ok', { fields: { a: { ...field, unique: true } } }, ['a']],
      ['ok', { fields: { a: { type: 'object', classification: 'public', searchable: true } } }, ['a']],
      ['ok', { fields: { a: { type: 'number', classification: 'public', default: 'x' } } }, ['a']],
      ['ok', { fields: { a: field }, retentionDays: 0 }, ['retentionDays']],
      ['ok', { fields: { a: field }, retentionDays: 1.5 }, ['retentionDays']],
      ['ok', { fields: { a: field }, retentionDays: 40_000 }, ['retentionDays']],
      ['ok', { fields: { a: field }, drop: 'a' }, ['drop']],
      ['ok', { fields: { a: field }, drop: ['a'] }, ['a']],
      [
        'ok',
        { fields: Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`f${i}`, field])) },
        ['fields'],
      ],
    ];
    for (const [name, decl, fields] of cases) {
      const err = await tresorError(rig.vault.putCollection(T, name, decl, caller()));
      assert.equal(err.code, 'TRESOR_ERR_VALIDATION', `${name} ${JSON.stringify(decl)}`);
      assert.equal(err.status, 422);
      assert.deepEqual(err.details?.fields, fields, `${name} ${JSON.stringify(decl)}`);
    }
    assert.equal((await tresorError(rig.vault.getCollection(T, 'ok'))).code, 'TRESOR_ERR_NOT_FOUND');
  });

  it('pins the blind-index key at creation, so search keeps working after the tenant key rotates', async () => {
    const local = await vaultRig({ keyLimits: { rotateAt: 3, reservationBlock: 2 } });
    try {
      await local.vault.putCollection(T, 'a', PEOPLE, caller());
      const store = await local.store(T);
      const pinned = async (name: string) =>
        (
          await store.db
            .selectFrom('collections')
            .select('blind_index_key_id')
            .where('name', '=', name)
            .executeTakeFirstOrThrow()
        ).blind_index_key_id;
      const first = await pinned('a');
      const { id } = await local.vault.createRecord(T, 'a', { email: 'pin@example.com', age: 5 }, caller());
      // Drive the blind-index purpose past its rotation point (and the data key too).
      for (let i = 0; i < 4; i++) await local.vault.putCollection(T, `b${i}`, PEOPLE, caller());
      for (let i = 0; i < 5; i++)
        await local.vault.createRecord(T, 'a', { email: `x${i}@example.com`, age: 5 }, caller());
      assert.notEqual(
        local.keyring.usage(T, 'blind-index')?.keyId,
        first,
        'the active blind-index key rotated',
      );
      assert.equal(await pinned('a'), first);
      local.cache.clear();
      const found = await local.vault.listRecords(T, 'a', { where: { email: 'pin@example.com' } }, caller());
      assert.deepEqual(
        found.records.map((r) => r.id),
        [id],
      );
      assert.equal(
        (await local.vault.listRecords(T, 'a', { where: { age: 5 } }, caller())).records.length,
        6,
      );
    } finally {
      await local.close();
    }
  });

  describe('schema changes', () => {
    const base = {
      email: { type: 'string', classification: 'personal', required: true, searchable: true },
      name: { type: 'string', classification: 'personal' },
      age: { type: 'number', classification: 'personal' },
    } as const;
    let ids: string[] = [];

    before(async () => {
      await rig.vault.putCollection(T, 'evolving', { fields: base }, caller());
      ids = [];
      for (let i = 0; i < 3; i++) {
        const r = await rig.vault.createRecord(
          T,
          'evolving',
          { email: `e${i}@example.com`, name: `N${i}`, age: 30 + i },
          caller(),
        );
        ids.push(r.id);
      }
    });

    it('adds an optional field and changes a classification, bumping the schema version', async () => {
      const put = await rig.vault.putCollection(
        T,
        'evolving',
        {
          fields: {
            ...base,
            name: { type: 'string', classification: 'sensitive' },
            nick: { type: 'string', classification: 'public' },
          },
        },
        caller(),
      );
      assert.equal(put.version, 2);
      assert.equal(put.schema.fields.name?.classification, 'sensitive');
      const r = await rig.vault.createRecord(T, 'evolving', { email: 'n@example.com', nick: 'nn' }, caller());
      assert.equal(r.data.nick, 'nn');
      await rig.vault.deleteRecord(T, 'evolving', r.id, undefined, caller());
    });

    it('refuses a new required field without a default while records exist', async () => {
      const err = await tresorError(
        rig.vault.putCollection(
          T,
          'evolving',
          {
            fields: {
              ...base,
              nick: { type: 'string', classification: 'public' },
              country: { type: 'string', classification: 'public', required: true },
            },
          },
          caller(),
        ),
      );
      assert.equal(err.code, 'TRESOR_ERR_SCHEMA_CHANGE_REFUSED');
      assert.equal(err.status, 422);
      assert.deepEqual(err.details?.problems, [{ field: 'country', problem: 'required-without-default' }]);
      assert.equal((await rig.vault.getCollection(T, 'evolving')).version, 2);
    });

    it('adds a required searchable field with a default: encrypted into every record and indexed', async () => {
      const decl = {
        fields: {
          ...base,
          nick: { type: 'string', classification: 'public' },
          country: {
            type: 'string',
            classification: 'internal',
            required: true,
            searchable: true,
            default: 'CH',
          },
        },
      };
      const put = await rig.vault.putCollection(T, 'evolving', decl, caller());
      assert.equal(put.version, 3);
      for (const id of ids) {
        assert.ok((await blobFields(id)).includes('country'));
        const r = await rig.vault.readRecord(T, 'evolving', id, caller());
        assert.equal(r.data.country, 'CH');
        assert.equal(r.version, 1, 'filling a default does not change the record version');
      }
      const found = await rig.vault.listRecords(T, 'evolving', { where: { country: 'CH' } }, caller());
      assert.deepEqual(
        found.records.map((r) => r.id),
        ids,
      );
      const event = (await rig.auditEvents(T)).findLast((e) => e.action === 'collection.put');
      assert.deepEqual(event?.target?.defaulted, ['country']);
      assert.ok(!JSON.stringify(event).includes('"CH"'));
      // A new record gets the default too; an explicit value wins.
      const r = await rig.vault.createRecord(
        T,
        'evolving',
        { email: 'z@example.com', country: 'FR' },
        caller(),
      );
      assert.equal(r.data.country, 'FR');
      await rig.vault.deleteRecord(T, 'evolving', r.id, undefined, caller());
    });

    it('refuses to change the type of a field that holds data', async () => {
      const current = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      const err = await tresorError(
        rig.vault.putCollection(
          T,
          'evolving',
          { fields: { ...current, age: { type: 'string', classification: 'personal' } } },
          caller(),
        ),
      );
      assert.equal(err.code, 'TRESOR_ERR_SCHEMA_CHANGE_REFUSED');
      assert.deepEqual(err.details?.problems, [{ field: 'age', problem: 'type-change' }]);
    });

    it('allows a type change on a field no record holds', async () => {
      const current = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      const put = await rig.vault.putCollection(
        T,
        'evolving',
        { fields: { ...current, nick: { type: 'number', classification: 'public' } } },
        caller(),
      );
      assert.equal(put.schema.fields.nick?.type, 'number');
    });

    it('refuses to remove a field that holds data unless the declaration drops it explicitly', async () => {
      const { name: _name, ...rest } = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      const before = (await rig.vault.getCollection(T, 'evolving')).version;
      const err = await tresorError(rig.vault.putCollection(T, 'evolving', { fields: rest }, caller()));
      assert.equal(err.code, 'TRESOR_ERR_SCHEMA_CHANGE_REFUSED');
      assert.deepEqual(err.details?.problems, [{ field: 'name', problem: 'has-data' }]);
      assert.ok((await blobFields(ids[0] as string)).includes('name'));

      const put = await rig.vault.putCollection(T, 'evolving', { fields: rest, drop: ['name'] }, caller());
      assert.equal(put.version, before + 1);
      for (const id of ids) {
        assert.ok(!(await blobFields(id)).includes('name'), 'the data was deleted');
        const r = await rig.vault.readRecord(T, 'evolving', id, caller());
        assert.equal(r.data.name, undefined);
      }
      const event = (await rig.auditEvents(T)).findLast((e) => e.action === 'collection.put');
      assert.deepEqual(event?.target?.dropped, ['name']);
      // Putting the same declaration again is a no-op, drop included.
      const again = await rig.vault.putCollection(T, 'evolving', { fields: rest, drop: ['name'] }, caller());
      assert.equal(again.version, put.version);
    });

    it('removes a field without drop when no record holds it', async () => {
      const { nick: _nick, ...rest } = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      const put = await rig.vault.putCollection(T, 'evolving', { fields: rest }, caller());
      assert.equal(put.schema.fields.nick, undefined);
    });

    it('drops a searchable field together with its index rows', async () => {
      assert.equal(await indexRows('evolving', 'country'), 3);
      const { country: _country, ...rest } = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      await rig.vault.putCollection(T, 'evolving', { fields: rest, drop: ['country'] }, caller());
      assert.equal(await indexRows('evolving', 'country'), 0);
    });

    it('builds the index when a field becomes searchable, decrypting each record once', async () => {
      const current = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      assert.equal(await indexRows('evolving', 'age'), 0);
      const refused = await tresorError(
        rig.vault.listRecords(T, 'evolving', { where: { age: '31' } }, caller()),
      );
      assert.equal(refused.code, 'TRESOR_ERR_VALIDATION');
      rig.resetLoans();
      await rig.vault.putCollection(
        T,
        'evolving',
        {
          fields: {
            ...current,
            age: { type: 'number', classification: 'personal', searchable: true, acknowledgeLeakage: true },
          },
        },
        caller(),
      );
      assert.equal(rig.loans.data, ids.length, 'one decryption per record');
      assert.equal(await indexRows('evolving', 'age'), 3);
      const found = await rig.vault.listRecords(T, 'evolving', { where: { age: '31' } }, caller());
      assert.deepEqual(
        found.records.map((r) => r.id),
        [ids[1]],
      );
      const event = (await rig.auditEvents(T)).findLast((e) => e.action === 'collection.put');
      assert.deepEqual(event?.target?.indexed, ['age']);
    });

    it('removes the index when search is turned off', async () => {
      const current = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      await rig.vault.putCollection(
        T,
        'evolving',
        { fields: { ...current, age: { type: 'number', classification: 'personal' } } },
        caller(),
      );
      assert.equal(await indexRows('evolving', 'age'), 0);
    });

    it('makes an optional field required only with a default when records lack it', async () => {
      const current = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      const { id } = await rig.vault.createRecord(T, 'evolving', { email: 'noage@example.com' }, caller());
      const err = await tresorError(
        rig.vault.putCollection(
          T,
          'evolving',
          { fields: { ...current, age: { type: 'number', classification: 'personal', required: true } } },
          caller(),
        ),
      );
      assert.deepEqual(err.details?.problems, [{ field: 'age', problem: 'required-without-default' }]);
      await rig.vault.putCollection(
        T,
        'evolving',
        {
          fields: {
            ...current,
            age: { type: 'number', classification: 'personal', required: true, default: 0 },
          },
        },
        caller(),
      );
      assert.equal((await rig.vault.readRecord(T, 'evolving', id, caller())).data.age, 0);
      assert.equal((await rig.vault.readRecord(T, 'evolving', ids[2] as string, caller())).data.age, 32);
    });

    it('retries a change prepared on records that changed meanwhile, and never loses the concurrent write', async () => {
      const current = (await rig.vault.getCollection(T, 'evolving')).schema.fields;
      const decl = {
        fields: {
          ...current,
          tier: { type: 'string', classification: 'internal', required: true, default: 'basic' },
        },
      };
      const [put, created] = await Promise.all([
        rig.vault.putCollection(T, 'evolving', decl, caller()),
        rig.vault.createRecord(T, 'evolving', { email: 'during@example.com', age: 1 }, caller()),
      ]);
      assert.ok(put.schema.fields.tier);
      const read = await rig.vault.readRecord(T, 'evolving', created.id, caller());
      assert.equal(read.data.tier, 'basic');
    });
  });

  it('refuses a new collection past the per-tenant limit', async () => {
    const existing = (await rig.vault.listCollections(T)).length;
    const field = { fields: { a: { type: 'string', classification: 'public' } } };
    for (let i = existing; i < 30; i++) await rig.vault.putCollection(T, `filler_${i}`, field, caller());
    const err = await tresorError(rig.vault.putCollection(T, 'one_too_many', field, caller()));
    assert.equal(err.code, 'TRESOR_ERR_VALIDATION');
    assert.equal(err.details?.limit, 30);
  });
});
