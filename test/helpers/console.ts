/**
 * TEST-ONLY. Console people against a real stack (tresor-stack.ts), the way a browser would reach
 * them: accounts made with the operator token, enrolled with a password and TOTP codes computed by
 * oathtool (an independent RFC 6238 generator), signed in to a real session cookie and CSRF token,
 * re-authenticated for a fresh second factor. Every secret it handles is collected in `secrets`, so
 * a test can prove none of them reached the audit log.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { HttpResponse, TresorStack } from './tresor-stack.ts';

export const SESSION_COOKIE = '__Host-tresor_session';
export const TEST_PASSWORD = 'violet staple orbit 4 lantern';

export interface ConsoleSession {
  cookie: string;
  csrf: string;
  id: string;
}

export interface ConsoleAccount {
  id: string;
  email: string;
  side: 'operator' | 'customer';
  tenant: string | null;
  secret: string;
  recoveryCodes: string[];
}

/** RFC 6238 codes from oathtool, never one step twice (the server refuses a replayed step). */
export function totpCodes() {
  const usedSteps = new Map<string, number>();
  const oathtool = (secret: string, step: number) =>
    execFileSync('oathtool', ['--totp', '-b', '-N', `@${step * 30}`, secret], { encoding: 'utf8' }).trim();

  /** A code the server accepts now: a step within ±1 of now not used yet (waits for the next step if need be). */
  async function nextCode(secret: string): Promise<string> {
    for (;;) {
      const current = Math.floor(Date.now() / 30_000);
      const step = Math.max((usedSteps.get(secret) ?? -Infinity) + 1, current - 1);
      if (step <= current + 1) {
        usedSteps.set(secret, step);
        return oathtool(secret, step);
      }
      await sleep((current + 1) * 30_000 - Date.now() + 50);
    }
  }
  return { oathtool, nextCode };
}

export function consoleClient(s: TresorStack) {
  const secrets: string[] = [];
  const { nextCode } = totpCodes();

  /** A request as a console session: its cookie, and its CSRF token on anything but GET. */
  const as = (
    session: ConsoleSession,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) =>
    s.request(method, path, {
      headers: {
        cookie: `${SESSION_COOKIE}=${session.cookie}`,
        ...(method !== 'GET' ? { 'x-csrf-token': session.csrf } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body } : {}),
    });

  function sessionOf(res: HttpResponse): ConsoleSession {
    assert.equal(res.status, 200, res.text);
    const setCookie = res.headers['set-cookie']?.[0] ?? '';
    const value = new RegExp(`^${SESSION_COOKIE}=([A-Za-z0-9_-]{43});`).exec(setCookie)?.[1];
    assert.ok(value, 'a session cookie');
    const body = res.json<{ csrfToken: string; session: { id: string } }>();
    secrets.push(value, body.csrfToken);
    return { cookie: value, csrf: body.csrfToken, id: body.session.id };
  }

  /** Creates (with the operator token) and enrols an account: password, TOTP, recovery codes. */
  async function createAndEnrol(person: {
    side: 'operator' | 'customer';
    role: string;
    email: string;
    tenant?: string;
  }): Promise<ConsoleAccount> {
    const res = await s.request('POST', '/v1/people', { token: s.adminToken, body: person });
    assert.equal(res.status, 201, res.text);
    const created = res.json<{ person: { id: string; email: string }; enrolmentToken: string }>();
    const token = created.enrolmentToken;
    secrets.push(token);
    const pw = await s.request('POST', '/v1/enrolment/password', {
      body: { enrolmentToken: token, password: TEST_PASSWORD },
    });
    assert.equal(pw.status, 200, pw.text);
    const begun = await s.request('POST', '/v1/enrolment/totp', { body: { enrolmentToken: token } });
    assert.equal(begun.status, 200, begun.text);
    const { factorId, secret } = begun.json<{ factorId: string; secret: string }>();
    secrets.push(secret);
    const confirmed = await s.request('POST', '/v1/enrolment/totp/confirm', {
      body: { enrolmentToken: token, factorId, code: await nextCode(secret) },
    });
    assert.equal(confirmed.status, 200, confirmed.text);
    const { recoveryCodes } = confirmed.json<{ recoveryCodes: string[] }>();
    secrets.push(...recoveryCodes);
    return {
      id: created.person.id,
      email: created.person.email,
      side: person.side,
      tenant: person.tenant ?? null,
      secret,
      recoveryCodes: [...recoveryCodes],
    };
  }

  /** Password, then a TOTP code: a new session. */
  async function login(account: ConsoleAccount): Promise<ConsoleSession> {
    const begun = await s.request('POST', '/v1/auth/login', {
      body: {
        side: account.side,
        email: account.email,
        password: TEST_PASSWORD,
        ...(account.tenant ? { tenant: account.tenant } : {}),
      },
    });
    assert.equal(begun.status, 200, begun.text);
    const { handle } = begun.json<{ handle: string }>();
    return sessionOf(
      await s.request('POST', '/v1/auth/login/second-factor', {
        body: { handle, totp: await nextCode(account.secret) },
      }),
    );
  }

  /**
   * A fresh second factor inside the session (a one-time recovery code, so tests do not wait for
   * TOTP steps): the new session replaces the old one, whose cookie stops working.
   */
  async function reauthenticate(account: ConsoleAccount, session: ConsoleSession): Promise<ConsoleSession> {
    const code = account.recoveryCodes.shift();
    assert.ok(code, 'a recovery code left');
    return sessionOf(await as(session, 'POST', '/v1/auth/reauthenticate', { recoveryCode: code }));
  }

  return { secrets, nextCode, as, sessionOf, createAndEnrol, login, reauthenticate };
}
