/**
 * `tresor token create | list | rotate | revoke` against a real server (the operator-tokens
 * contract of issue 14): a signed-in operator admin with a fresh second factor creates a token of
 * one scope, shown once or written 0600; the token reaches its scope's routes only; list shows no
 * secret; rotate gives a new token and the old one stops at once; revoke ends one; a token cannot
 * manage tokens; a stale session needs --code.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { exited, leaksNone } from './cli-run.ts';
import { type SignedInAdmin, signedInAdmin } from './signed-in-admin.ts';

interface TokenView {
  id: string;
  scope: string;
  name: string;
  owner: string;
  expiresAt: string;
  revokedAt?: string | null;
}

describe('tresor token against a real server', () => {
  let s: TresorStack;
  let dir: string;
  let admin: SignedInAdmin;
  let tokenFile: string;
  let created: TokenView;

  before(async () => {
    s = await startTresorStack({ firstAdmin: false });
    dir = mkdtempSync(join(tmpdir(), 'tresor-token-'));
    admin = await signedInAdmin(s, dir);
    tokenFile = join(dir, 'provisioning-token');
  });
  after(async () => {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('create writes the token 0600 with --out-file; it reaches its scope only', async () => {
    const run = exited(
      await admin.run([
        'token',
        'create',
        '--scope',
        'tenants:create',
        '--name',
        'provisioning',
        '--expires-in-days',
        '30',
        '--out-file',
        tokenFile,
        '--json',
      ]),
      0,
    );
    created = JSON.parse(run.stdout) as TokenView;
    assert.equal(created.scope, 'tenants:create');
    assert.equal(created.name, 'provisioning');
    assert.equal(created.owner, admin.personId);
    assert.equal('token' in created, false);
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    const token = readFileSync(tokenFile, 'utf8').trim();
    assert.match(token, /^tresor_op_[0-9a-f]{24}_\S+$/);
    leaksNone(run, [token, ...admin.secrets]);
    const tenant = exited(
      await admin.run(['tenant', 'create', '--name', 'By token', '--token-file', tokenFile, '--json']),
      0,
    );
    admin.secrets.push((JSON.parse(tenant.stdout) as { apiKey: string }).apiKey);
    const list = exited(await admin.run(['tenant', 'list', '--token-file', tokenFile]), 1);
    assert.match(list.stderr, /^tresor: TRESOR_ERR_FORBIDDEN: /m);
    const manage = exited(await admin.run(['token', 'list', '--token-file', tokenFile]), 1);
    assert.match(manage.stderr, /^tresor: TRESOR_ERR_FORBIDDEN: /m);
    leaksNone(manage, [token]);
  });

  it('list shows the tokens without secrets, as a table and as JSON', async () => {
    const table = exited(await admin.run(['token', 'list']), 0);
    assert.match(table.stdout, /^ID\s+NAME\s+SCOPE\s+OWNER\s+CREATED\s+EXPIRES\s+REVOKED\s+LAST USED$/m);
    assert.match(
      table.stdout,
      new RegExp(`^${created.id}\\s+provisioning\\s+tenants:create\\s+${admin.personId}\\s`, 'm'),
    );
    const json = JSON.parse(exited(await admin.run(['token', 'list', '--json']), 0).stdout) as {
      tokens: TokenView[];
    };
    assert.equal(json.tokens.length, 1);
    assert.equal(JSON.stringify(json).includes(readFileSync(tokenFile, 'utf8').trim()), false);
  });

  it('rotate prints a new token once; the old one stops working at once', async () => {
    const old = readFileSync(tokenFile, 'utf8').trim();
    const run = exited(await admin.run(['token', 'rotate', created.id]), 0);
    const fresh = /^token \(shown once\): (\S+)$/m.exec(run.stdout)?.[1];
    assert.ok(fresh, run.stdout);
    assert.notEqual(fresh, old);
    leaksNone(run, [old]);
    const refused = exited(
      await admin.run(['tenant', 'create', '--name', 'Old token', '--token-file', tokenFile]),
      1,
    );
    assert.match(refused.stderr, /^tresor: TRESOR_ERR_UNAUTHENTICATED: /m);
    const listed = JSON.parse(exited(await admin.run(['token', 'list', '--json']), 0).stdout) as {
      tokens: TokenView[];
    };
    assert.ok(listed.tokens.find((t) => t.id === created.id)?.revokedAt, 'the old one is revoked');
  });

  it('revoke ends a token (exit 0), an unknown id is refused (exit 1)', async () => {
    const made = JSON.parse(
      exited(await admin.run(['token', 'create', '--scope', 'jobs:read', '--name', 'status', '--json']), 0)
        .stdout,
    ) as TokenView & { token: string };
    admin.secrets.push(made.token);
    exited(await admin.run(['token', 'revoke', made.id]), 0);
    exited(await admin.run(['token', 'revoke', made.id]), 0); // idempotent
    const unknown = exited(await admin.run(['token', 'revoke', 'op_000000000000000000000000']), 1);
    assert.match(unknown.stderr, /^tresor: TRESOR_ERR_NOT_FOUND: /m);
    const status = exited(
      await admin.run(['status', '--url', s.url, '--ca-file', s.caFile], { TRESOR_TOKEN: made.token }),
      1,
    );
    assert.match(status.stderr, /answered 401/);
  });

  it('a stale session needs --code to create a token (step-up), and gets it with one', async () => {
    const db = new Database(join(s.dataDir, 'control.sqlite'));
    db.pragma('busy_timeout = 5000');
    db.prepare('UPDATE sessions SET fresh_2fa_at = ? WHERE person = ?').run(
      new Date(Date.now() - 10 * 60_000).toISOString(),
      admin.personId,
    );
    db.close();
    const create = ['token', 'create', '--scope', 'tenants:read', '--name', 'reader', '--json'];
    const stale = exited(await admin.run(create), 1);
    assert.match(stale.stderr, /^tresor: TRESOR_ERR_SECOND_FACTOR_REQUIRED: /m);
    const done = exited(await admin.run([...create, '--code', await admin.nextCode()]), 0);
    admin.secrets.push((JSON.parse(done.stdout) as { token: string }).token);
    const profile = JSON.parse(readFileSync(admin.files.profile, 'utf8')) as { cookie: string; csrf: string };
    admin.secrets.push(profile.cookie, profile.csrf);
  });

  it('usage: a bad --expires-in-days is exit 2', async () => {
    const run = exited(
      await admin.run([
        'token',
        'create',
        '--scope',
        'jobs:read',
        '--name',
        'x',
        '--expires-in-days',
        'soon',
      ]),
      2,
    );
    assert.match(run.stderr, /--expires-in-days/);
  });
});
