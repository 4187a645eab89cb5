// backends: sqlite postgres
// drill: keyd stopped and stalled under the running server
/**
 * Fail closed over HTTPS: when keyd is sealed (or gone) and a request needs a key the server does
 * not hold, the answer is 503 problem+json — never data from anywhere else — and /readyz turns red.
 * Unsealing keyd brings the same requests back without restarting the server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

const ADMIN = { id: 'test', role: 'admin' } as const;

describe('keyd sealed while the API runs', () => {
  let s: TresorStack;
  before(async () => {
    s = await startTresorStack();
  });
  after(async () => {
    await s.stop();
  });

  it('answers 503 for anything that needs a key it does not hold, and recovers after unseal', async () => {
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Outage Ltd' },
    });
    assert.equal(created.status, 201, created.text);
    const { apiKey } = JSON.parse(created.text) as { apiKey: string };
    const put = await s.request('PUT', '/v1/collections/people', {
      token: apiKey,
      body: { fields: { email: { type: 'string', classification: 'personal', searchable: true } } },
    });
    assert.equal(put.status, 201, put.text);
    const value = 'outage-needle-3f1c@example.test';
    const rec = await s.request('POST', '/v1/collections/people/records', {
      token: apiKey,
      body: { email: value },
    });
    assert.equal(rec.status, 201, rec.text);
    const { id } = JSON.parse(rec.text) as { id: string };

    // A restart empties the server's key cache; then keyd is sealed.
    await s.stopServer();
    await s.startServer();
    const keyd = s.keydClient();
    await keyd.call('seal', {}, ADMIN);

    const read = await s.request('GET', `/v1/collections/people/records/${id}`, { token: apiKey });
    assert.equal(read.status, 503, read.text);
    assert.match(String(read.headers['content-type']), /^application\/problem\+json/);
    assert.equal((JSON.parse(read.text) as { code: string }).code, 'TRESOR_ERR_KEYD_SEALED');
    assert.ok(!read.text.includes(value), 'no plaintext in the 503 answer');

    const tenant = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Blocked Ltd' },
    });
    assert.equal(tenant.status, 503, tenant.text);

    const ready = await s.request('GET', '/readyz');
    assert.equal(ready.status, 503, ready.text);
    assert.match(ready.text, /"keyd":"failing"/);

    await keyd.call('unseal', { secret: '' }, ADMIN);
    const again = await s.request('GET', `/v1/collections/people/records/${id}`, { token: apiKey });
    assert.equal(again.status, 200, again.text);
    assert.equal((JSON.parse(again.text) as { data: { email: string } }).data.email, value);
    assert.equal((await s.request('GET', '/readyz')).status, 200, 'ready again');
  });
});
