/**
 * Login throttle behind one shared address (a NAT, or a load balancer not listed in `trustProxy`):
 * one account's failures lock that account, not everyone else behind the address; an admin unlock
 * lets the account in again from that address; password spraying across many accounts from one
 * address is still stopped.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  accountSubject,
  createLoginThrottle,
  type LoginThrottle,
  type ThrottleSubjects,
  type ThrottleVerdict,
} from '../../src/identity/login-throttle.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';

const SHARED = '192.0.2.77';
const alice: ThrottleSubjects = {
  account: accountSubject('operator', null, 'alice@example.test'),
  address: SHARED,
};
const bob: ThrottleSubjects = {
  account: accountSubject('operator', null, 'bob@example.test'),
  address: SHARED,
};

describe('login throttle behind a shared address', () => {
  let dir: string;
  let control: Store<ControlDB>;
  let now: Date;
  let throttle: LoginThrottle;

  /** One attempt that fails, if the throttle lets it happen; the verdict either way. */
  const fail = (s: ThrottleSubjects): Promise<ThrottleVerdict> =>
    control.write(async (trx) => {
      const verdict = await throttle.checkIn(trx, s);
      if (verdict.allowed) await throttle.recordFailureIn(trx, s);
      return verdict;
    });

  /** `count` failures that reach the password check, waiting out each delay and lockout as asked. */
  async function failures(s: ThrottleSubjects, count: number): Promise<void> {
    for (let done = 0; done < count; ) {
      const verdict = await fail(s);
      if (verdict.allowed) done += 1;
      else now = new Date(now.getTime() + verdict.retryAfterMs);
    }
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-throttle-shared-'));
    control = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
    now = new Date('2030-06-01T00:00:00.000Z');
    // Lockout at 5: 25 failures are five lockouts, the last still running at the end.
    throttle = createLoginThrottle({ control, now: () => now, config: { lockoutThreshold: 5 } });
  });

  afterEach(async () => {
    await control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets another account in from the address after 25 failures of one, which stays locked', async () => {
    await failures(alice, 25);
    const locked = await throttle.check(alice);
    assert.equal(locked.allowed === false && locked.reason, 'locked');
    assert.deepEqual(await throttle.check(bob), { allowed: true });
  });

  it('lets the account in from that address after an admin unlock', async () => {
    await failures(alice, 25);
    await control.write((trx) => throttle.liftIn(trx, alice.account));
    assert.deepEqual(await throttle.check(alice), { allowed: true });
    assert.deepEqual(await throttle.check(bob), { allowed: true });
  });

  it('still stops password spraying across many accounts from one address', async () => {
    let stoppedAt = -1;
    for (let i = 0; i < 200 && stoppedAt < 0; i++) {
      const verdict = await fail({
        account: accountSubject('customer', 'ten_x', `u${i}@example.test`),
        address: SHARED,
      });
      if (!verdict.allowed) stoppedAt = i;
    }
    assert.equal(stoppedAt, throttle.config.addressDelayAfter, 'stopped right after the ceiling of accounts');
    const fresh = await throttle.check({
      account: accountSubject('customer', 'ten_x', 'new@example.test'),
      address: SHARED,
    });
    assert.equal(fresh.allowed, false, 'a further account from the address waits');
    assert.ok(fresh.allowed === false && fresh.retryAfterMs > 0);
    // Another address is not affected.
    assert.deepEqual(await throttle.check({ ...bob, address: '192.0.2.78' }), { allowed: true });
  });
});
