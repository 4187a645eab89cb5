/**
 * TEST-ONLY. Console people against a real stack (tresor-stack.ts), the way a browser would reach
 * them: the stack's first operator admin enrolled and signed in (`operatorAdmin`), accounts made by
 * that admin's session with a fresh second factor, enrolled with a password and TOTP codes computed by
 * oathtool (an independent RFC 6238 generator), signed in to a real session cookie and CSRF token,
 * re-authenticated for a fresh second factor. Every secret it handles is collected in `secrets`, so
 * a test can prove none of them reached the audit log.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OperatorScope } from '../../src/identity/operator-scopes.ts';
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

  /**
   * A code of `secret` the server accepts now and for at least 10 more seconds, or null: a step
   * within ±1 of now not used yet. The previous step is taken only while 10 s of the current window
   * remain, so a slow login (argon2id on a loaded machine) between taking the code and sending it
   * does not carry it out of the window.
   */
  function codeNow(secret: string): string | null {
    const now = Date.now();
    const current = Math.floor(now / 30_000);
    const oldest = (current + 1) * 30_000 - now > 10_000 ? current - 1 : current;
    const step = Math.max((usedSteps.get(secret) ?? -Infinity) + 1, oldest);
    if (step > current + 1) return null;
    usedSteps.set(secret, step);
    return oathtool(secret, step);
  }

  /**
   * A code of one of `secrets` (the TOTP factors of one account: the server tries each) that the
   * server accepts now, waiting for the next step when every one is spent. An account gets about
   * one code per factor per 30 s, so tests that spend many give their account more factors.
   */
  async function nextCodeOf(secrets: readonly string[]): Promise<string> {
    for (;;) {
      for (const secret of secrets) {
        const code = codeNow(secret);
        if (code !== null) return code;
      }
      await sleep((Math.floor(Date.now() / 30_000) + 1) * 30_000 - Date.now() + 50);
    }
  }

  const nextCode = (secret: string) => nextCodeOf([secret]);
  return { oathtool, nextCode, nextCodeOf };
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

  /** Creates (by the stack's operator admin, stepped up) and enrols an account: password, TOTP, recovery codes. */
  async function createAndEnrol(person: {
    side: 'operator' | 'customer';
    role: string;
    email: string;
    tenant?: string;
  }): Promise<ConsoleAccount> {
    const admin = await operatorAdmin(s);
    const res = await admin.request('POST', '/v1/people', person);
    assert.equal(res.status, 201, res.text);
    const created = res.json<{ person: { id: string; email: string }; enrolmentToken: string }>();
    secrets.push(created.enrolmentToken);
    const enrolled = await enrolWith(s, created.enrolmentToken, nextCode);
    secrets.push(enrolled.secret, ...enrolled.recoveryCodes);
    return {
      id: created.person.id,
      email: created.person.email,
      side: person.side,
      tenant: person.tenant ?? null,
      ...enrolled,
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

/** Sets the password, enrols and confirms a TOTP factor with a one-time enrolment token. */
async function enrolWith(
  s: TresorStack,
  enrolmentToken: string,
  nextCode: (secret: string) => Promise<string>,
): Promise<{ secret: string; recoveryCodes: string[] }> {
  const pw = await s.request('POST', '/v1/enrolment/password', {
    body: { enrolmentToken, password: TEST_PASSWORD },
  });
  assert.equal(pw.status, 200, pw.text);
  const begun = await s.request('POST', '/v1/enrolment/totp', { body: { enrolmentToken } });
  assert.equal(begun.status, 200, begun.text);
  const { factorId, secret } = begun.json<{ factorId: string; secret: string }>();
  const confirmed = await s.request('POST', '/v1/enrolment/totp/confirm', {
    body: { enrolmentToken, factorId, code: await nextCode(secret) },
  });
  assert.equal(confirmed.status, 200, confirmed.text);
  return { secret, recoveryCodes: [...confirmed.json<{ recoveryCodes: string[] }>().recoveryCodes] };
}

/** The stack's first operator admin, enrolled and signed in (see operatorAdmin). */
export interface OperatorAdmin {
  account: ConsoleAccount;
  /** The current session (it changes at each step-up). */
  readonly session: ConsoleSession;
  /**
   * A request as the admin's session: cookie, and CSRF on anything but GET. Before a request that
   * is not a GET, the second factor is passed again (stepUp) when it is older than 4 minutes, so
   * step-up routes (fresh within 5) find it fresh however long the test ran.
   */
  request(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<HttpResponse>;
  /** Passes a second factor again now (POST /v1/auth/reauthenticate): a new, fresh session. */
  stepUp(): Promise<void>;
  /** A TOTP code of the admin's that the server accepts now and that no step-up of this helper has used. */
  nextCode(): Promise<string>;
  /** Mints an operator token of one scope over HTTP (POST /v1/operator-tokens) and returns its text. */
  token(scope: OperatorScope, options?: { name?: string; expiresInDays?: number }): Promise<string>;
  /** Every secret handled (enrolment token, TOTP secret, recovery codes, cookies, tokens). */
  secrets: string[];
}

const STEP_UP_AFTER_MS = 4 * 60_000;
const admins = new WeakMap<TresorStack, Promise<OperatorAdmin>>();

/**
 * The stack's first operator admin (tresor-stack.ts makes the person as `tresor dev` does), enrolled
 * with a password and TOTP (oathtool codes), signed in with password and a TOTP code. One per stack:
 * the enrolment token works once, so every caller of the same stack shares it.
 */
export function operatorAdmin(s: TresorStack): Promise<OperatorAdmin> {
  let admin = admins.get(s);
  if (!admin) {
    admin = signInOperatorAdmin(s);
    admins.set(s, admin);
  }
  return admin;
}

async function signInOperatorAdmin(s: TresorStack): Promise<OperatorAdmin> {
  const { nextCode } = totpCodes();
  const secrets: string[] = [s.admin.enrolmentToken];
  const enrolled = await enrolWith(s, s.admin.enrolmentToken, nextCode);
  secrets.push(enrolled.secret, ...enrolled.recoveryCodes);
  const account: ConsoleAccount = {
    id: s.admin.personId,
    email: s.admin.email,
    side: 'operator',
    tenant: null,
    ...enrolled,
  };
  const sessionFrom = (res: HttpResponse): ConsoleSession => {
    assert.equal(res.status, 200, res.text);
    const value = new RegExp(`^${SESSION_COOKIE}=([A-Za-z0-9_-]{43});`).exec(
      res.headers['set-cookie']?.[0] ?? '',
    )?.[1];
    assert.ok(value, 'a session cookie');
    const body = res.json<{ csrfToken: string; session: { id: string } }>();
    secrets.push(value, body.csrfToken);
    return { cookie: value, csrf: body.csrfToken, id: body.session.id };
  };
  const begun = await s.request('POST', '/v1/auth/login', {
    body: { side: 'operator', email: account.email, password: TEST_PASSWORD },
  });
  assert.equal(begun.status, 200, begun.text);
  let session = sessionFrom(
    await s.request('POST', '/v1/auth/login/second-factor', {
      body: { handle: begun.json<{ handle: string }>().handle, totp: await nextCode(account.secret) },
    }),
  );
  let freshAt = Date.now();

  const send = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    s.request(method, path, {
      headers: {
        cookie: `${SESSION_COOKIE}=${session.cookie}`,
        ...(method !== 'GET' ? { 'x-csrf-token': session.csrf } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body } : {}),
    });

  async function stepUp(): Promise<void> {
    // A TOTP code (the next unused step), keeping the recovery codes for tests that spend them.
    session = sessionFrom(
      await send('POST', '/v1/auth/reauthenticate', { totp: await nextCode(account.secret) }),
    );
    freshAt = Date.now();
  }

  return {
    account,
    get session() {
      return session;
    },
    secrets,
    stepUp,
    nextCode: () => nextCode(account.secret),
    async request(method, path, body, headers) {
      if (method !== 'GET' && Date.now() - freshAt > STEP_UP_AFTER_MS) await stepUp();
      return send(method, path, body, headers);
    },
    async token(scope, options = {}) {
      if (Date.now() - freshAt > STEP_UP_AFTER_MS) await stepUp();
      const res = await send('POST', '/v1/operator-tokens', {
        scope,
        name: options.name ?? `test ${scope}`,
        ...(options.expiresInDays !== undefined ? { expiresInDays: options.expiresInDays } : {}),
      });
      assert.equal(res.status, 201, res.text);
      const { token } = res.json<{ token: string }>();
      secrets.push(token);
      return token;
    },
  };
}

const minted = new WeakMap<TresorStack, Map<OperatorScope, Promise<string>>>();

/**
 * An operator token of `scope` for the stack, minted once (per stack and scope) by its operator
 * admin over HTTP: what scripts use instead of the all-powerful token there no longer is.
 */
export function operatorToken(s: TresorStack, scope: OperatorScope): Promise<string> {
  let byScope = minted.get(s);
  if (!byScope) {
    byScope = new Map();
    minted.set(s, byScope);
  }
  let token = byScope.get(scope);
  if (!token) {
    token = operatorAdmin(s).then((admin) => admin.token(scope));
    byScope.set(scope, token);
  }
  return token;
}
