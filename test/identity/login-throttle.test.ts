/**
 * Login throttle: growing delays, a lockout after 10 failures lifted by time or by an admin, an
 * absolute ceiling of 100 failures an hour, durable across a restart of the store.
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
} from '../../src/identity/login-throttle.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';

describe('login throttle', () => {
  let dir: string;
  let path: string;
  let control: Store<ControlDB>;
  let now: Date;
  let throttle: LoginThrottle;
  const subjects: ThrottleSubjects = {
    account: accountSubject('operator', null, 'ada@example.test'),
    address: '192.0.2.10',
  };

  const advance = (ms: number) => {
    now = new Date(now.getTime() + ms);
  };

  /** One attempt that fails, if the throttle lets it happen; the verdict otherwise. */
  const fail = (s: ThrottleSubjects = subjects) =>
    control.write(async (trx) => {
      const verdict = await throttle.checkIn(trx, s);
      if (!verdict.allowed) return verdict;
      await throttle.recordFailureIn(trx, s);
      return verdict;
    });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-throttle-'));
    path = join(dir, 'control.sqlite');
    control = await openSqliteStore<ControlDB>(path, controlStoreMigrations);
    now = new Date('2030-06-01T00:00:00.000Z');
    throttle = createLoginThrottle({ control, now: () => now });
  });

  afterEach(async () => {
    await control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets the first three failures through at once, then asks for growing delays', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await fail()).allowed, true);
    const first = await throttle.check(subjects);
    assert.deepEqual(first, { allowed: false, reason: 'delay', retryAfterMs: 1_000 });
    advance(1_000);
    assert.equal((await fail()).allowed, true);
    assert.deepEqual(await throttle.check(subjects), {
      allowed: false,
      reason: 'delay',
      retryAfterMs: 2_000,
    });
    advance(2_000);
    assert.equal((await fail()).allowed, true);
    assert.deepEqual(await throttle.check(subjects), {
      allowed: false,
      reason: 'delay',
      retryAfterMs: 4_000,
    });
  });

  it('locks the account after 10 failed tries and lifts it after the lockout period', async () => {
    let count = 0;
    while (count < 10) {
      const verdict = await fail();
      if (verdict.allowed) count++;
      else advance(verdict.retryAfterMs);
    }
    const locked = await throttle.check(subjects);
    assert.equal(locked.allowed, false);
    assert.equal(locked.allowed === false && locked.reason, 'locked');
    assert.equal(locked.allowed === false && locked.retryAfterMs, 15 * 60_000);
    advance(15 * 60_000 - 1);
    assert.equal((await throttle.check(subjects)).allowed, false);
    advance(1);
    assert.equal((await throttle.check(subjects)).allowed, true, 'lifted by time');
    // Counting starts again: the next failure is not delayed.
    assert.equal((await fail()).allowed, true);
    assert.equal((await throttle.check(subjects)).allowed, true);
  });

  it('lets an admin lift a lockout at once, and a success reset the count', async () => {
    for (let i = 0; i < 10; i++) {
      const verdict = await fail();
      if (!verdict.allowed) advance(verdict.retryAfterMs);
      else continue;
      await fail();
    }
    assert.equal((await throttle.check(subjects)).allowed, false);
    await control.write((trx) => throttle.liftIn(trx, subjects.account));
    assert.equal((await throttle.check(subjects)).allowed, true);
    for (let i = 0; i < 3; i++) await fail();
    assert.equal((await throttle.check(subjects)).allowed, false);
    advance(1_000);
    await control.write((trx) => throttle.recordSuccessIn(trx, subjects.account));
    await fail();
    assert.equal((await throttle.check(subjects)).allowed, true, 'one failure after a success: no delay');
  });

  it('never allows more than 100 failures per hour, even when an admin keeps lifting the lockout', async () => {
    const start = now.getTime();
    const times: number[] = [];
    let sawCeiling = false;
    // Two hours of an attacker retrying as soon as allowed from ever new addresses (a botnet), with an
    // admin lifting every lockout.
    while (now.getTime() - start < 2 * 3_600_000) {
      const verdict = await fail({ account: subjects.account, address: `203.0.113.${times.length % 250}` });
      if (!verdict.allowed && verdict.reason === 'hourly-limit') sawCeiling = true;
      if (verdict.allowed) {
        times.push(now.getTime());
        continue;
      }
      if (verdict.reason === 'locked') {
        await control.write((trx) => throttle.liftIn(trx, subjects.account));
        continue;
      }
      advance(verdict.retryAfterMs);
    }
    assert.ok(times.length > 100, 'the attacker did get going');
    for (const [i, t] of times.entries()) {
      const inHour = times.filter((u) => u >= t && u < t + 3_600_000).length;
      assert.ok(inHour <= 100, `${inHour} failures in the hour from failure ${i}`);
    }
    assert.ok(sawCeiling, 'the hourly ceiling, not the lockout, stopped the attacker');
  });

  it('throttles an address that fails across many accounts, and forgets it after a quiet hour', async () => {
    for (let i = 0; i < 20; i++) {
      const verdict = await fail({
        account: accountSubject('customer', 'ten_x', `u${i}@example.test`),
        address: '198.51.100.7',
      });
      assert.equal(verdict.allowed, true);
    }
    const other = {
      account: accountSubject('customer', 'ten_x', 'fresh@example.test'),
      address: '198.51.100.7',
    };
    const verdict = await throttle.check(other);
    assert.equal(verdict.allowed, false, 'a fresh account from the same address waits');
    assert.equal((await throttle.check({ ...other, address: '198.51.100.8' })).allowed, true);
    advance(3_600_000);
    assert.equal((await throttle.check(other)).allowed, true);
  });

  it('keeps its state across a restart of the control store', async () => {
    for (let i = 0; i < 10; i++) {
      const verdict = await fail();
      if (!verdict.allowed) {
        advance(verdict.retryAfterMs);
        i--;
      }
    }
    await control.close();
    control = await openSqliteStore<ControlDB>(path, controlStoreMigrations);
    throttle = createLoginThrottle({ control, now: () => now });
    const verdict = await throttle.check(subjects);
    assert.equal(verdict.allowed === false && verdict.reason, 'locked');
  });

  it('refuses a configuration above the lockout or hourly maximum', () => {
    assert.throws(() => createLoginThrottle({ control, now: () => now, config: { lockoutThreshold: 11 } }));
    assert.throws(() => createLoginThrottle({ control, now: () => now, config: { hourlyLimit: 101 } }));
  });
});
