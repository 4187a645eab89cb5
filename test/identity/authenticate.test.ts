/**
 * The bearer authenticator: API keys and operator tokens by their prefix, one refusal for the rest.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApiKeyService } from '../../src/identity/api-keys.ts';
import { type Authenticator, createAuthenticator } from '../../src/identity/authenticate.ts';
import { createOperatorTokenService } from '../../src/identity/operator-tokens.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { insertPerson, insertTenant, sessionOfPerson } from '../helpers/control-store.ts';

const TENANT = 'ten_aaaaaaaaaaaaaaaaaaaaaaaa';

describe('bearer authentication', () => {
  let dir: string;
  let control: Store<ControlDB>;
  let authenticate: Authenticator;
  let admin: { id: string; token: string; personId: string };
  let apiKey: { id: string; token: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-authn-'));
    control = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
    await insertTenant(control, TENANT, { at: '2030-01-01T00:00:00.000Z', name: 'Acme' });
    const personId = await insertPerson(control);
    const made = await createOperatorTokenService({ control, now: () => new Date() }).create(
      sessionOfPerson(personId, new Date()),
      { scope: 'tenants:read', name: 'test' },
    );
    admin = { id: made.id, token: made.token, personId };
    apiKey = await createApiKeyService({ control }).issue(
      { tenant: TENANT, collections: ['people'], access: ['read'] },
      { actor: { kind: 'operator-admin', id: personId } },
    );
    authenticate = createAuthenticator({ control, logger: { warn: () => {} } });
  });

  after(async () => {
    await authenticate.flush();
    await control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('turns an operator token into its scoped principal for its owner, which names no tenant', async () => {
    const principal = await authenticate(admin.token);
    assert.deepEqual(principal, {
      kind: 'operator-token',
      tokenId: admin.id,
      personId: admin.personId,
      scope: 'tenants:read',
    });
    assert.ok(!('tenant' in principal), 'an operator principal reaches no tenant records');
  });

  it('turns an API key into its tenant-scoped principal', async () => {
    const principal = await authenticate(apiKey.token);
    assert.equal(principal.kind, 'api-key');
    assert.ok(principal.kind === 'api-key');
    assert.equal(principal.tenant, TENANT);
    assert.equal(principal.keyId, apiKey.id);
  });

  it('refuses anything else with the one UNAUTHENTICATED error', async () => {
    const secret = apiKey.token.slice(-43);
    const tokens = [
      '',
      ' ',
      'Bearer x',
      'tresor_',
      `tresor_xx_${'0'.repeat(24)}_${secret}`,
      `tresor_op_${apiKey.id.slice(3)}_${secret}`, // an API key's id presented as an operator token
      `tresor_ak_${admin.token.slice(10)}`, // an operator token presented as an API key
      `${apiKey.token} `,
      'x'.repeat(10_000),
      undefined as unknown as string,
    ];
    const errors = await Promise.all(
      tokens.map((t) =>
        authenticate(t).then(
          () => assert.fail(`accepted ${String(t).slice(0, 40)}`),
          (e: { code: string; message: string; status: number }) => ({
            code: e.code,
            message: e.message,
            status: e.status,
          }),
        ),
      ),
    );
    for (const e of errors) {
      assert.deepEqual(e, {
        code: 'TRESOR_ERR_UNAUTHENTICATED',
        message: 'invalid, expired or revoked credentials',
        status: 401,
      });
    }
  });
});
