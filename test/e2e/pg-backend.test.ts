// backends: postgres
/**
 * A Tresor deployment on PostgreSQL end to end (`database.url`): the real `tresor server` and keyd
 * processes against a fresh database of the machine's PostgreSQL, exercised over HTTPS.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

describe('a deployment on PostgreSQL', () => {
  let s: TresorStack;
  before(async () => {
    s = await startTresorStack({ logLevel: 'warn', backend: 'postgres' });
  });
  after(() => s?.stop());

  it('serves records', async () => {
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Pg' },
    });
    assert.equal(created.status, 201, created.text);
  });
});
