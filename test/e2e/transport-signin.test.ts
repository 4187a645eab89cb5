/**
 * Sign-in throttling and cookie-authenticated changes from outside, over real HTTPS against a real
 * `tresor server` and keyd, every client on one address (127.0.0.1, as behind a load balancer not
 * listed in `trustProxy`):
 * - one account's failures lock that account, with 429 and Retry-After, and not the others behind
 *   the address; an admin unlock lets it in again from there; spraying many accounts is stopped;
 * - a session's change with a valid CSRF token but a foreign, `null` or missing Origin is refused
 *   403 TRESOR_ERR_ORIGIN_REFUSED and changes nothing; from the server's own origin it works.
 *
 * One stack for the file; the tests run in order (the spraying one last: it delays the address).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ConsoleAccount, consoleClient, operatorAdmin, TEST_PASSWORD } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

const LOCKOUT_THRESHOLD = 5;

describe('sign-in throttle and origin checks over HTTPS', () => {
  let s: TresorStack;
  let people: ReturnType<typeof consoleClient>;
  let alice: ConsoleAccount;
  let bob: ConsoleAccount;

  const beginLogin = (email: string, password = TEST_PASSWORD) =>
    s.request('POST', '/v1/auth/login', { body: { side: 'operator', email, password } });

  const retryAfter = (res: { headers: Record<string, unknown> }) => {
    const value = String(res.headers['retry-after']);
    assert.match(value, /^[1-9]\d*$/, `Retry-After in whole seconds: ${value}`);
    return Number(value);
  };

  before(async () => {
    s = await startTresorStack({
      env: {
        TRESOR_LOGIN_LOCKOUT_THRESHOLD: String(LOCKOUT_THRESHOLD),
        // No account delays before the lockout: the lockout is what is tested.
        TRESOR_LOGIN_DELAY_AFTER: '100',
      },
    });
    people = consoleClient(s);
    alice = await people.createAndEnrol({ side: 'operator', role: 'contractor', email: 'alice@tresor.test' });
    bob = await people.createAndEnrol({ side: 'operator', role: 'contractor', email: 'bob@tresor.test' });
  });

  after(async () => {
    await s?.stop();
  });

  it('locks one account after 25 failed sign-ins, with Retry-After, and lets another in from the same address', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 25; i++) {
      const res = await beginLogin(alice.email, `wrong password number ${i}`);
      statuses.push(res.status);
      if (res.status === 429) retryAfter(res);
    }
    assert.deepEqual(statuses, [
      ...Array<number>(LOCKOUT_THRESHOLD).fill(200),
      ...Array<number>(25 - LOCKOUT_THRESHOLD).fill(429),
    ]);
    const locked = await beginLogin(alice.email);
    assert.equal(locked.status, 429, 'the right password does not pass a lockout');
    assert.ok(retryAfter(locked) > 1);
    await people.login(bob);
  });

  it('lets the account in from that address after an admin unlock', async () => {
    const admin = await operatorAdmin(s);
    const unlocked = await admin.request('POST', `/v1/people/${alice.id}/unlock`);
    assert.equal(unlocked.status, 204, unlocked.text);
    await people.login(alice);
  });

  it('refuses a session’s change from a foreign, null or missing origin, and takes it from its own', async () => {
    const admin = await operatorAdmin(s);
    await admin.stepUp();
    const invite = (email: string, headers: Record<string, string>) =>
      admin.request('POST', '/v1/people', { side: 'operator', role: 'contractor', email }, headers);
    const refusals: Record<string, string>[] = [
      { origin: 'https://evil.example' },
      { origin: 'null' },
      { origin: '', referer: 'https://evil.example/page' },
    ];
    for (const [i, headers] of refusals.entries()) {
      const res = await invite(`refused${i}@tresor.test`, headers);
      assert.equal(res.status, 403, res.text);
      assert.equal(res.json<{ code: string }>().code, 'TRESOR_ERR_ORIGIN_REFUSED');
    }
    const list = await admin.request('GET', '/v1/people');
    assert.doesNotMatch(list.text, /refused\d@tresor\.test/, 'nothing was created');
    const sameOrigin = await invite('welcome@tresor.test', { origin: '', referer: `${s.url}/console` });
    assert.equal(sameOrigin.status, 201, sameOrigin.text);
    const own = await invite('welcome2@tresor.test', { origin: s.url });
    assert.equal(own.status, 201, own.text);
  });

  it('still stops password spraying across many accounts from the address, with Retry-After', async () => {
    let stopped: { at: number; wait: number } | undefined;
    for (let i = 0; i < 60 && !stopped; i++) {
      const res = await beginLogin(`sprayed${i}@tresor.test`, 'Winter2026!');
      if (res.status === 429) stopped = { at: i, wait: retryAfter(res) };
      else assert.equal(res.status, 200, res.text);
    }
    assert.ok(stopped, 'spraying was stopped');
    assert.ok(stopped.at <= 20, `stopped after ${stopped.at} accounts`);
  });
});
