/**
 * The stack the scanners attack: the compiled build laid out as production runs it
 * (test/helpers/deployment.ts: dist/ on plain node, runtime packages only), keyd on its Unix socket
 * and `tresor server` on 127.0.0.1 at a fixed port of the security run's range, with the
 * production rate limits (the defaults, not the raised limits of the e2e tests), a real certificate
 * from the dev CA and HSTS (every answer carries it: src/http/security-headers.ts).
 *
 * It is seeded through the API as an application would be: a tenant (its first key has admin
 * access), a collection with a few records; the fuzzer and the scanners must leave those unchanged.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DEFAULT_RATE_LIMIT } from '../../src/config/server-config.ts';
import { type OperatorAdmin, operatorAdmin, operatorToken } from '../helpers/console.ts';
import { compiledDeployment } from '../helpers/deployment.ts';
import { type HttpResponse, startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

/** The security run's ports: 18700–18799. The API of the attacked stack listens on the first. */
export const STACK_PORT = 18700;

export const SEEDED_COLLECTION = 'customers';
export const SEEDED_SCHEMA = {
  fields: {
    email: { type: 'string', classification: 'personal', required: true, searchable: true },
    note: { type: 'string', classification: 'confidential' },
    visits: { type: 'number', classification: 'internal' },
  },
  retentionDays: 365,
};

export interface SeededTenant {
  id: string;
  /** The tenant's first API key (admin access). A secret: never printed. */
  apiKey: string;
  recordIds: string[];
}

export interface SecurityStack {
  stack: TresorStack;
  /** https://127.0.0.1:<port> */
  url: string;
  port: number;
  tenant: SeededTenant;
  admin: OperatorAdmin;
  /** The seeded data as the API shows it now: collections, schema and every record. */
  snapshot(): Promise<string>;
}

function ok(res: HttpResponse, status: number | number[], what: string): HttpResponse {
  const want = Array.isArray(status) ? status : [status];
  assert.ok(want.includes(res.status), `${what}: ${res.status} ${res.text.slice(0, 300)}`);
  return res;
}

/** `env`: more TRESOR_* settings (a second listener, timeouts); the production rate limits stay. */
export async function startSecurityStack(
  port = STACK_PORT,
  env: Record<string, string> = {},
): Promise<SecurityStack> {
  const deployment = await compiledDeployment();
  const stack = await startTresorStack({
    bin: deployment.bin,
    logLevel: 'warn',
    env: {
      ...env,
      TRESOR_PORT: String(port),
      TRESOR_RATE_LIMIT_WINDOW_MS: String(DEFAULT_RATE_LIMIT.windowMs),
      TRESOR_RATE_LIMIT_PER_ADDRESS: String(DEFAULT_RATE_LIMIT.perAddress),
      TRESOR_RATE_LIMIT_PER_KEY: String(DEFAULT_RATE_LIMIT.perKey),
    },
  });
  try {
    const admin = await operatorAdmin(stack);
    const token = await operatorToken(stack, 'tenants:create');
    const created = ok(
      await stack.request('POST', '/v1/tenants', { token, body: { name: 'Scanned Inc' } }),
      201,
      'create the seeded tenant',
    ).json<{ id: string; apiKey: string }>();
    const apiKey = created.apiKey;
    ok(
      await stack.request('PUT', `/v1/collections/${SEEDED_COLLECTION}`, {
        token: apiKey,
        body: SEEDED_SCHEMA,
      }),
      [200, 201],
      'declare the seeded collection',
    );
    const recordIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const data = {
        email: `person${i}-${randomBytes(4).toString('hex')}@example.test`,
        note: `seeded note ${i}`,
        visits: i,
      };
      const rec = ok(
        await stack.request('POST', `/v1/collections/${SEEDED_COLLECTION}/records`, {
          token: apiKey,
          body: data,
        }),
        201,
        'create a seeded record',
      ).json<{ id: string }>();
      recordIds.push(rec.id);
    }
    const tenant: SeededTenant = { id: created.id, apiKey, recordIds };
    return {
      stack,
      url: stack.url,
      port,
      tenant,
      admin,
      async snapshot() {
        const get = async (path: string) =>
          ok(await stack.request('GET', path, { token: apiKey }), 200, `GET ${path}`).text;
        // The seeded collection's entry only: the scanners may make scratch collections beside it.
        const { collections } = JSON.parse(await get('/v1/collections')) as {
          collections: { name: string }[];
        };
        const parts = [JSON.stringify(collections.filter((c) => c.name === SEEDED_COLLECTION))];
        parts.push(await get(`/v1/collections/${SEEDED_COLLECTION}/records?limit=100`));
        for (const id of recordIds)
          parts.push(await get(`/v1/collections/${SEEDED_COLLECTION}/records/${id}`));
        return parts.join('\n');
      },
    };
  } catch (err) {
    await stack.stop().catch(() => undefined);
    throw err;
  }
}
