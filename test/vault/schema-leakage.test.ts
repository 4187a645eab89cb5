/**
 * A blind index shows whoever reads the data store which records share a value and how often each
 * value occurs (docs/security/blind-index.md). For numbers, booleans and dates that is close to the
 * value itself, so such a field is searchable only when its declaration acknowledges the leakage:
 * otherwise a 400 with TRESOR_ERR_SEARCH_LEAKAGE_UNACKNOWLEDGED, and nothing changes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ERRORS, TresorError } from '../../src/errors.ts';
import { DEFAULT_LIMITS, LOW_CARDINALITY_TYPES, parseDeclaration } from '../../src/vault/schema.ts';
import { caller, tresorError, type VaultRig, vaultRig } from './helpers.ts';

const T = 'acme';

function refusal(fn: () => unknown): TresorError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TresorError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('searchable low-cardinality fields (schema time)', () => {
  it('names number, boolean and date as the low-cardinality searchable types', () => {
    assert.deepEqual([...LOW_CARDINALITY_TYPES].sort(), ['boolean', 'date', 'number']);
  });

  for (const type of ['number', 'boolean', 'date'] as const) {
    it(`refuses a searchable ${type} field without acknowledgeLeakage, with a 400 naming the field`, () => {
      const err = refusal(() =>
        parseDeclaration(
          { fields: { flag: { type, classification: 'personal', searchable: true } } },
          DEFAULT_LIMITS,
        ),
      );
      assert.equal(err.code, 'TRESOR_ERR_SEARCH_LEAKAGE_UNACKNOWLEDGED');
      assert.equal(ERRORS[err.code].status, 400);
      assert.deepEqual(err.details, { fields: ['flag'] });
      assert.match(err.message, /which records share a value and how often/);
      assert.match(err.message, /acknowledgeLeakage/);

      const off = refusal(() =>
        parseDeclaration(
          {
            fields: {
              flag: { type, classification: 'personal', searchable: true, acknowledgeLeakage: false },
            },
          },
          DEFAULT_LIMITS,
        ),
      );
      assert.equal(off.code, 'TRESOR_ERR_SEARCH_LEAKAGE_UNACKNOWLEDGED', 'false is no acknowledgement');
    });

    it(`accepts a searchable ${type} field that acknowledges the leakage, and keeps the acknowledgement`, () => {
      const { schema } = parseDeclaration(
        {
          fields: {
            flag: { type, classification: 'personal', searchable: true, acknowledgeLeakage: true },
          },
        },
        DEFAULT_LIMITS,
      );
      assert.deepEqual(schema.fields.flag, {
        type,
        classification: 'personal',
        required: false,
        searchable: true,
        acknowledgeLeakage: true,
      });
    });

    it(`accepts a ${type} field that is not searchable, with no acknowledgement needed`, () => {
      const { schema } = parseDeclaration(
        { fields: { flag: { type, classification: 'personal' } } },
        DEFAULT_LIMITS,
      );
      assert.equal(schema.fields.flag?.searchable, false);
      assert.equal(schema.fields.flag?.acknowledgeLeakage, undefined);
    });
  }

  it('accepts a searchable string without acknowledgement (strings are not assumed to be few)', () => {
    const { schema } = parseDeclaration(
      { fields: { email: { type: 'string', classification: 'personal', searchable: true } } },
      DEFAULT_LIMITS,
    );
    assert.equal(schema.fields.email?.searchable, true);
    assert.equal(schema.fields.email?.acknowledgeLeakage, undefined);
  });

  it('refuses acknowledgeLeakage on a field that is not searchable, or that is not a boolean', () => {
    for (const field of [
      { type: 'number', classification: 'personal', acknowledgeLeakage: true },
      { type: 'number', classification: 'personal', searchable: false, acknowledgeLeakage: true },
      { type: 'number', classification: 'personal', searchable: true, acknowledgeLeakage: 'yes' },
      { type: 'date', classification: 'personal', searchable: true, acknowledgeLeakage: 1 },
    ]) {
      const err = refusal(() => parseDeclaration({ fields: { n: field } }, DEFAULT_LIMITS));
      assert.equal(err.code, 'TRESOR_ERR_VALIDATION', JSON.stringify(field));
    }
  });
});

describe('searchable low-cardinality fields through the vault', () => {
  let rig: VaultRig;

  before(async () => {
    rig = await vaultRig();
  });

  after(() => rig.close());

  it('refuses the declaration and changes nothing; with the acknowledgement it is declared', async () => {
    const fields = {
      email: { type: 'string', classification: 'personal', searchable: true },
      vip: { type: 'boolean', classification: 'internal', searchable: true },
    } as const;
    const err = await tresorError(rig.vault.putCollection(T, 'customers', { fields }, caller()));
    assert.equal(err.code, 'TRESOR_ERR_SEARCH_LEAKAGE_UNACKNOWLEDGED');
    const missing = await tresorError(rig.vault.getCollection(T, 'customers'));
    assert.equal(missing.code, 'TRESOR_ERR_NOT_FOUND', 'no collection was made');

    const put = await rig.vault.putCollection(
      T,
      'customers',
      { fields: { ...fields, vip: { ...fields.vip, acknowledgeLeakage: true } } },
      caller(),
    );
    assert.equal(put.created, true);
    assert.equal(put.schema.fields.vip?.acknowledgeLeakage, true);
  });

  it('shows what the acknowledgement accepts: the store reveals which records share a value and how often', async () => {
    for (const vip of [true, true, true, false]) {
      await rig.vault.createRecord(T, 'customers', { email: `${Math.random()}@example.test`, vip }, caller());
    }
    const store = await rig.store(T);
    const rows = await store.db
      .selectFrom('blind_index')
      .select(['mac', 'record_id'])
      .where('collection', '=', 'customers')
      .where('field', '=', 'vip')
      .execute();
    const counts = new Map<string, number>();
    for (const row of rows) {
      const mac = Buffer.from(row.mac).toString('hex');
      counts.set(mac, (counts.get(mac) ?? 0) + 1);
    }
    // Without any key: two groups, of 3 and 1 records. Knowing that most customers are VIPs (or
    // creating one record of known value) names both values.
    assert.deepEqual([...counts.values()].sort(), [1, 3]);
  });
});
