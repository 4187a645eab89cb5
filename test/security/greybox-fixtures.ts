/**
 * The greybox matrix's callers, made for real on a running stack: two tenants (keys of each scope
 * for tenant A), console people of each role enrolled with a password and TOTP (oathtool codes) and
 * signed in, support agents holding a live read grant, a live read-write grant and one that has
 * expired (asked for one minute, activated, waited out), an operator admin signed in before
 * everything else (its second factor goes stale while the matrix runs) and an operator token of
 * every scope. Each caller sends its own credentials; sessions pass a second factor again (TOTP)
 * when theirs is older than four minutes, except the stale one.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { OPERATOR_SCOPES } from '../../src/identity/operator-scopes.ts';
import {
  type ConsoleAccount,
  type ConsoleSession,
  consoleClient,
  operatorToken,
  SESSION_COOKIE,
  TEST_PASSWORD,
} from '../helpers/console.ts';
import type { HttpResponse, TresorStack } from '../helpers/tresor-stack.ts';
import type { Caller, CallerContext, Fixtures, TenantObjects } from './greybox-declare.ts';
import { SEEDED_COLLECTION, type SecurityStack } from './stack.ts';

const STEP_UP_AFTER_MS = 4 * 60_000;

export interface Person {
  account: ConsoleAccount;
  session: ConsoleSession;
  freshAt: number;
  grant?: string;
}

export interface GreyboxWorld {
  fixtures: Fixtures;
  /** The credentials' headers of a caller, its session made fresh first where it should be. */
  headersOf(caller: Caller, method: string): Promise<Record<string, string>>;
  contextOf(caller: Caller): CallerContext;
  /**
   * After a cell that may have ended or replaced the caller's session: adopts the new session the
   * answer set, or signs the person in again when the old one no longer works.
   */
  renew(
    caller: Caller,
    answer: { status: number; text: string; headers: Record<string, unknown> },
  ): Promise<void>;
  /** When the stale operator session passed its second factor. */
  staleSince: number;
  people: Record<string, Person>;
  c: ReturnType<typeof consoleClient>;
  keys: { admin: string; write: string; read: string; b: string };
  secrets(): string[];
}

function ok(res: HttpResponse, status: number | number[], what: string): HttpResponse {
  const want = Array.isArray(status) ? status : [status];
  assert.ok(want.includes(res.status), `${what}: ${res.status} ${res.text.slice(0, 300)}`);
  return res;
}

const hex = (n: number) => randomBytes(n).toString('hex');

export async function greyboxWorld(sec: SecurityStack): Promise<GreyboxWorld> {
  const s: TresorStack = sec.stack;
  const c = consoleClient(s);
  const people: Record<string, Person> = {};
  const enrol = async (name: string, spec: Parameters<typeof c.createAndEnrol>[0]) => {
    const account = await c.createAndEnrol(spec);
    people[name] = { account, session: await c.login(account), freshAt: Date.now() };
    return people[name] as Person;
  };
  const as = (p: Person, method: string, path: string, body?: unknown) => c.as(p.session, method, path, body);
  const stepUp = async (p: Person) => {
    p.session = c.sessionOf(
      await as(p, 'POST', '/v1/auth/reauthenticate', { totp: await c.nextCode(p.account.secret) }),
    );
    p.freshAt = Date.now();
  };

  // The stale operator first: its second factor ages while everything else is made and run.
  const stale = await enrol('operator(stale)', {
    side: 'operator',
    role: 'operator-admin',
    email: 'stale-admin@tresor.test',
  });
  const staleSince = stale.freshAt;

  const a = sec.tenant;
  const keyOf = async (access: string[]) =>
    ok(
      await s.request('POST', '/v1/api-keys', { token: a.apiKey, body: { collections: '*', access } }),
      201,
      'an API key',
    ).json<{ token: string }>().token;
  const writeKey = await keyOf(['write']);
  const readKey = await keyOf(['read']);

  const create = await operatorToken(s, 'tenants:create');
  const newTenant = async (name: string) =>
    ok(await s.request('POST', '/v1/tenants', { token: create, body: { name } }), 201, 'a tenant').json<{
      id: string;
      apiKey: string;
    }>();
  const b = await newTenant('Greybox Beta');
  const closable = (await newTenant('Greybox Closable')).id;
  ok(
    await s.request('PUT', `/v1/collections/${SEEDED_COLLECTION}`, {
      token: b.apiKey,
      body: {
        fields: {
          email: { type: 'string', classification: 'personal', searchable: true },
          visits: { type: 'number', classification: 'internal' },
        },
      },
    }),
    [200, 201],
    'tenant B collection',
  );
  const bCanary = `beta-canary-${hex(6)}@example.test`;
  const bRecord = ok(
    await s.request('POST', `/v1/collections/${SEEDED_COLLECTION}/records`, {
      token: b.apiKey,
      body: { email: bCanary },
    }),
    201,
    'tenant B record',
  ).json<{ id: string }>().id;
  const bSpareKey = ok(
    await s.request('POST', '/v1/api-keys', {
      token: b.apiKey,
      body: { collections: '*', access: ['read'] },
    }),
    201,
    'a tenant B key',
  ).json<{ id: string }>().id;
  const aSpareKey = ok(
    await s.request('POST', '/v1/api-keys', {
      token: a.apiKey,
      body: { collections: '*', access: ['read'] },
    }),
    201,
    'a tenant A key',
  ).json<{ id: string }>().id;
  const aCanary = ok(
    await s.request('GET', `/v1/collections/${SEEDED_COLLECTION}/records/${a.recordIds[0]}`, {
      token: a.apiKey,
    }),
    200,
    'tenant A record',
  ).json<{ data: { email: string } }>().data.email;

  await enrol('tenant-admin', {
    side: 'customer',
    role: 'tenant-admin',
    email: 'admin@alpha.test',
    tenant: a.id,
  });
  await enrol('tenant-admin-b', {
    side: 'customer',
    role: 'tenant-admin',
    email: 'admin@beta.test',
    tenant: b.id,
  });
  for (const name of ['staff', 'staff+read', 'staff+rw', 'staff+expired'])
    await enrol(name, {
      side: 'operator',
      role: 'support-agent',
      email: `${name.replace('+', '-')}@tresor.test`,
    });
  await enrol('contractor', { side: 'operator', role: 'contractor', email: 'contractor@tresor.test' });
  await enrol('operator', { side: 'operator', role: 'operator-admin', email: 'matrix-admin@tresor.test' });
  await enrol('security-officer', { side: 'operator', role: 'security-officer', email: 'sec@tresor.test' });
  await enrol('login-probe', { side: 'operator', role: 'support-agent', email: 'login-probe@tresor.test' });

  const admin = sec.admin;
  const member = async (tenant: string, email: string) =>
    ok(
      await admin.request('POST', '/v1/people', { side: 'customer', role: 'tenant-admin', tenant, email }),
      201,
      'a tenant admin to act on',
    ).json<{ person: { id: string } }>().person.id;

  // Tenant A lets employees in at once (policy automatic); its grants: read, read-write, one minute.
  const tadmin = people['tenant-admin'] as Person;
  ok(
    await as(tadmin, 'PUT', `/v1/tenants/${a.id}/grant-policy`, { policy: 'automatic' }),
    200,
    'grant policy',
  );
  const grantFor = async (name: string, access: string, minutes?: number) => {
    const p = people[name] as Person;
    const g = ok(
      await as(p, 'POST', '/v1/grants', {
        tenant: a.id,
        collections: '*',
        access,
        reason: 'greybox matrix: customer ticket',
        ticket: 'GB-0',
        ...(minutes ? { durationMinutes: minutes } : {}),
      }),
      201,
      `${name}'s grant`,
    ).json<{ id: string; state: string }>();
    assert.equal(g.state, 'approved', `${name}'s grant approved at once`);
    await stepUp(p);
    ok(await as(p, 'POST', `/v1/grants/${g.id}/activate`), 200, `${name}'s grant activated`);
    p.grant = g.id;
    return g.id;
  };
  await grantFor('staff+expired', 'read', 1);
  const expiresAt = Date.now() + 61_000;
  await grantFor('staff+read', 'read');
  await grantFor('staff+rw', 'read-write');
  // A pending grant on tenant B (its policy: the customer approves) and one on A (to read).
  const bGrant = ok(
    await as(people.staff as Person, 'POST', '/v1/grants', {
      tenant: b.id,
      collections: '*',
      access: 'read',
      reason: 'greybox matrix: other tenant',
      ticket: 'GB-B',
    }),
    201,
    'a grant on B',
  ).json<{ id: string }>().id;
  const tokens = new Map<string, string>();
  for (const scope of OPERATOR_SCOPES) tokens.set(scope, await operatorToken(s, scope));

  const side = (t: { id: string }, o: Omit<TenantObjects, 'tenant' | 'collection'>): TenantObjects => ({
    tenant: t.id,
    collection: SEEDED_COLLECTION,
    ...o,
  });
  const fixtures: Fixtures = {
    a: side(a, {
      record: a.recordIds[0] as string,
      apiKeyId: aSpareKey,
      grant: (people['staff+read'] as Person).grant as string,
      member: await member(a.id, 'member@alpha.test'),
      victims: {
        'tenant-admin': await member(a.id, 'victim-1@alpha.test'),
        operator: await member(a.id, 'victim-2@alpha.test'),
      },
      canary: aCanary,
    }),
    b: side(b, {
      record: bRecord,
      apiKeyId: bSpareKey,
      grant: bGrant,
      member: await member(b.id, 'member@beta.test'),
      victims: { 'tenant-admin': await member(b.id, 'victim-1@beta.test') },
      canary: bCanary,
    }),
    closable,
    loginEmail: (people['login-probe'] as Person).account.email,
    loginPassword: TEST_PASSWORD,
    ghost: {
      record: `rec_${hex(16)}`,
      grant: `grt_${hex(12)}`,
      person: `psn_${hex(12)}`,
      apiKey: `ak_${hex(12)}`,
      session: `ses_${hex(12)}`,
      factor: `fac_${hex(12)}`,
      alert: `alr_${hex(12)}`,
      backup: `20260101T000000Z-${hex(4)}`,
      token: `op_${hex(12)}`,
      restore: `rst_${hex(8)}`,
      handle: randomBytes(32).toString('base64url'),
      enrolment: randomBytes(32).toString('base64url'),
    },
    unique: () => `gb-${hex(6)}`,
  };

  // The short grant must have run out before the matrix relies on it.
  const wait = expiresAt - Date.now();
  if (wait > 0) await sleep(wait);

  const cookieHeaders = (p: Person, method: string): Record<string, string> => ({
    cookie: `${SESSION_COOKIE}=${p.session.cookie}`,
    ...(method !== 'GET' ? { 'x-csrf-token': p.session.csrf } : {}),
    ...(p.grant ? { 'tresor-grant': p.grant } : {}),
  });
  const keys = { admin: a.apiKey, write: writeKey, read: readKey, b: b.apiKey };

  return {
    fixtures,
    staleSince,
    people,
    c,
    keys,
    secrets: () => [...c.secrets, ...admin.secrets, ...tokens.values(), ...Object.values(keys)],
    contextOf(caller) {
      const p = people[caller];
      return {
        caller,
        sessionId: p?.session.id ?? fixtures.ghost.session,
        totp: async () => (p ? c.nextCode(p.account.secret) : '123456'),
        codeFor: (secret) => c.nextCode(secret),
        call: async (method, path, body) => {
          if (!p) return { status: 401, text: '' };
          const res = await as(p, method, path, body);
          return { status: res.status, text: res.text };
        },
      };
    },
    async renew(caller, answer) {
      const p = people[caller];
      if (!p) return;
      const setCookie = ([] as string[]).concat(
        (answer.headers['set-cookie'] as string | string[] | undefined) ?? [],
      );
      if (
        answer.status === 200 &&
        setCookie.some((v) => /^__Host-tresor_session=[A-Za-z0-9_-]{43};/.test(v))
      ) {
        p.session = c.sessionOf({
          status: 200,
          headers: { 'set-cookie': setCookie },
          text: answer.text,
          json: <T>() => JSON.parse(answer.text) as T,
        });
        p.freshAt = Date.now();
        return;
      }
      if ((await as(p, 'GET', '/v1/auth/session')).status === 401) {
        p.session = await c.login(p.account);
        p.freshAt = Date.now();
      }
    },
    async headersOf(caller, method) {
      if (caller === 'anonymous') return {};
      if (caller.startsWith('key:')) {
        const k = keys[caller.slice(4) as 'admin' | 'write' | 'read'];
        return { authorization: `Bearer ${k}` };
      }
      if (caller.startsWith('token:')) return { authorization: `Bearer ${tokens.get(caller.slice(6))}` };
      const p = people[caller];
      assert.ok(p, caller);
      if (caller !== 'operator(stale)' && Date.now() - p.freshAt > STEP_UP_AFTER_MS) await stepUp(p);
      return cookieHeaders(p, method);
    },
  };
}
