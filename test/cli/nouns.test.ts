/**
 * The CLI against a real stack (keyd and `tresor server` processes), as an operator uses it: the
 * first operator admin made with `tresor init`, enrolled with `tresor enrol` and real TOTP codes,
 * signed in with `tresor login` (profile file 0600); then `tresor tenant`, `tresor person` and
 * `tresor apikey` with their --json, their secrets shown once or written 0600, their exit codes
 * (refused 1, usage 2, unreachable 3), a step-up retried with --code, and `tresor logout`. No run
 * prints a secret except the one it exists to hand over.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { exited, leaksNone, tresor } from './cli-run.ts';
import { type SignedInAdmin, signedInAdmin } from './signed-in-admin.ts';

const SESSION_COOKIE = '__Host-tresor_session';

interface Tenant {
  id: string;
  name: string;
  state: string;
}

describe('tresor tenant, person, apikey, login and logout against a real server', () => {
  let s: TresorStack;
  let dir: string;
  let admin: SignedInAdmin;
  let tenant: Tenant & { apiKeyId: string };
  let tenantKey: string;
  const products: string[] = []; // secrets a command printed on purpose (not checked as leaks)

  before(async () => {
    s = await startTresorStack({ firstAdmin: false });
    dir = mkdtempSync(join(tmpdir(), 'tresor-cli-'));
    admin = await signedInAdmin(s, dir);
  });
  after(async () => {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('enrols and signs in from the terminal: secrets in 0600 files, the session in a 0600 profile', () => {
    for (const f of [
      admin.files.totpSecret,
      admin.files.recoveryCodes,
      admin.files.link,
      admin.files.profile,
    ])
      assert.equal(statSync(f).mode & 0o777, 0o600, f);
    assert.equal(readFileSync(admin.files.recoveryCodes, 'utf8').trim().split('\n').length, 10);
    const profile = JSON.parse(readFileSync(admin.files.profile, 'utf8')) as Record<string, string>;
    assert.equal(profile.url, s.url);
    assert.equal(profile.caFile, s.caFile);
    assert.equal(profile.personId, admin.personId);
    assert.ok(Date.parse(profile.expiresAt ?? '') > Date.now());
    for (const r of admin.runs) leaksNone(r, admin.secrets);
  });

  it('refuses a spent enrolment link (exit 1) and a login with a wrong password (exit 1)', async () => {
    const again = exited(
      await admin.run([
        'enrol',
        '--link-file',
        admin.files.link,
        '--password-file',
        admin.files.password,
        '--totp-secret-file',
        join(dir, 'unused'),
      ]),
      1,
    );
    assert.match(again.stderr, /^tresor: TRESOR_ERR_[A-Z_]+: /m);
    const wrong = join(dir, 'wrong-password');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(wrong, 'not the password\n');
    const login = exited(
      await admin.run(
        [
          'login',
          '--email',
          admin.email,
          '--password-file',
          wrong,
          '--code',
          '000000',
          '--profile',
          join(dir, 'p2'),
        ],
        {},
      ),
      1,
    );
    assert.match(login.stderr, /^tresor: TRESOR_ERR_UNAUTHENTICATED: /m);
    leaksNone(login, [...admin.secrets, 'not the password']);
  });

  it('tenant create prints the first API key once, or writes it 0600 with --out-file', async () => {
    const shown = exited(await admin.run(['tenant', 'create', '--name', 'Shown Ltd', '--json']), 0);
    const body = JSON.parse(shown.stdout) as Tenant & { apiKey: string };
    assert.equal(body.state, 'active');
    assert.match(body.apiKey, /^\S{20,}$/);
    products.push(body.apiKey);
    const keyFile = join(dir, 'acme-api-key');
    const written = exited(
      await admin.run(['tenant', 'create', '--name', 'Acme Ltd', '--out-file', keyFile, '--json']),
      0,
    );
    tenant = JSON.parse(written.stdout) as Tenant & { apiKeyId: string };
    assert.equal('apiKey' in tenant, false);
    tenantKey = readFileSync(keyFile, 'utf8').trim();
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    leaksNone(written, [tenantKey, ...admin.secrets]);
    const text = exited(await admin.run(['tenant', 'create', '--name', 'Text Ltd']), 0);
    assert.match(text.stdout, /^created tenant ten_\S+ \(Text Ltd\), active/m);
    assert.match(text.stdout, /^API key \(shown once\): \S+$/m);
  });

  it('tenant list shows them as a table and as JSON', async () => {
    const table = exited(await admin.run(['tenant', 'list']), 0);
    assert.match(table.stdout, /^ID\s+NAME\s+STATE\s+CONTRACT START\s+CONTRACT END\s+CREATED$/m);
    assert.match(table.stdout, new RegExp(`^${tenant.id}\\s+Acme Ltd\\s+active\\s`, 'm'));
    const json = JSON.parse(exited(await admin.run(['tenant', 'list', '--json']), 0).stdout) as {
      tenants: Tenant[];
    };
    assert.equal(json.tenants.length, 3);
    const active = JSON.parse(
      exited(await admin.run(['tenant', 'list', '--state', 'closed', '--json']), 0).stdout,
    ) as { tenants: Tenant[] };
    assert.equal(active.tenants.length, 0);
  });

  it('apikey create, list and revoke with the tenant admin key from TRESOR_TOKEN or --token-file', async () => {
    const created = exited(
      await admin.run(['apikey', 'create', '--access', 'read', '--label', 'reports', '--json'], {
        TRESOR_TOKEN: tenantKey,
      }),
      0,
    );
    const key = JSON.parse(created.stdout) as { id: string; token: string; access: string[]; tenant: string };
    assert.deepEqual(key.access, ['read']);
    assert.equal(key.tenant, tenant.id);
    products.push(key.token);
    leaksNone(created, [tenantKey, ...admin.secrets]);
    const keyFile = join(dir, 'acme-api-key');
    const listed = exited(await admin.run(['apikey', 'list', '--token-file', keyFile]), 0);
    assert.match(listed.stdout, /^ID\s+ACCESS\s+COLLECTIONS\s+LABEL/m);
    assert.match(listed.stdout, new RegExp(`^${key.id}\\s+read\\s+\\*\\s+reports\\s`, 'm'));
    leaksNone(listed, [tenantKey, key.token]);
    const revoked = exited(
      await admin.run(['apikey', 'revoke', key.id, '--token-file', keyFile, '--json']),
      0,
    );
    assert.ok((JSON.parse(revoked.stdout) as { revokedAt: string | null }).revokedAt);
    // An operator session is not a tenant key: refused by the server, exit 1.
    const refused = exited(await admin.run(['apikey', 'list']), 1);
    assert.match(refused.stderr, /^tresor: TRESOR_ERR_FORBIDDEN: /m);
  });

  it('person invite prints the enrolment link once (or --out-file), list shows the people, disable ends one', async () => {
    const invited = exited(
      await admin.run([
        'person',
        'invite',
        '--email',
        'officer@cli.test',
        '--role',
        'security-officer',
        '--json',
      ]),
      0,
    );
    const body = JSON.parse(invited.stdout) as {
      person: { id: string; role: string };
      enrolmentLink: string;
    };
    assert.equal(body.person.role, 'security-officer');
    assert.match(body.enrolmentLink, new RegExp(`^${s.url}/signin#enrol=[A-Za-z0-9_-]{43}$`));
    products.push(body.enrolmentLink);
    const linkFile = join(dir, 'member-link');
    const member = exited(
      await admin.run([
        'person',
        'invite',
        '--email',
        'member@cli.test',
        '--role',
        'tenant-admin',
        '--tenant',
        tenant.id,
        '--out-file',
        linkFile,
      ]),
      0,
    );
    assert.equal(statSync(linkFile).mode & 0o777, 0o600);
    leaksNone(member, [readFileSync(linkFile, 'utf8').trim().split('#enrol=')[1] ?? 'x']);
    const table = exited(await admin.run(['person', 'list']), 0);
    assert.match(table.stdout, /^ID\s+EMAIL\s+ROLE\s+TENANT\s+ENROLLED\s+DISABLED$/m);
    assert.match(
      table.stdout,
      new RegExp(`^${body.person.id}\\s+officer@cli\\.test\\s+security-officer\\s+-\\s+-\\s+-$`, 'm'),
    );
    const disabled = exited(await admin.run(['person', 'disable', body.person.id, '--json']), 0);
    assert.deepEqual(JSON.parse(disabled.stdout), { id: body.person.id, disabled: true });
    const list = JSON.parse(exited(await admin.run(['person', 'list', '--json']), 0).stdout) as {
      people: { id: string; disabledAt: string | null }[];
    };
    assert.ok(list.people.find((p) => p.id === body.person.id)?.disabledAt);
    const usage = exited(
      await admin.run(['person', 'invite', '--email', 'x@cli.test', '--role', 'tenant-admin']),
      2,
    );
    assert.match(usage.stderr, /needs --tenant/);
  });

  it('a session whose second factor is stale is refused without --code, and re-proves it with --code', async () => {
    // Five minutes of waiting, stood in for by ageing the session's second factor in the store.
    const db = new Database(join(s.dataDir, 'control.sqlite'));
    db.pragma('busy_timeout = 5000');
    db.prepare('UPDATE sessions SET fresh_2fa_at = ? WHERE person = ?').run(
      new Date(Date.now() - 10 * 60_000).toISOString(),
      admin.personId,
    );
    db.close();
    const invite = ['person', 'invite', '--email', 'agent@cli.test', '--role', 'support-agent', '--json'];
    const stale = exited(await admin.run(invite), 1);
    assert.match(stale.stderr, /^tresor: TRESOR_ERR_SECOND_FACTOR_REQUIRED: .*--code/m);
    const before = readFileSync(admin.files.profile, 'utf8');
    const retried = exited(await admin.run([...invite, '--code', await admin.nextCode()]), 0);
    products.push((JSON.parse(retried.stdout) as { enrolmentLink: string }).enrolmentLink);
    const after = JSON.parse(readFileSync(admin.files.profile, 'utf8')) as { cookie: string; csrf: string };
    assert.notEqual(
      after.cookie,
      (JSON.parse(before) as { cookie: string }).cookie,
      'a new session cookie saved',
    );
    assert.equal(statSync(admin.files.profile).mode & 0o777, 0o600);
    admin.secrets.push(after.cookie, after.csrf);
    const badCode = exited(await admin.run([...invite, '--code', '12345']), 2);
    assert.match(badCode.stderr, /--code must be 6 digits/);
  });

  it('tresor step-up passes the second factor again for the saved session', async () => {
    const db = new Database(join(s.dataDir, 'control.sqlite'));
    db.pragma('busy_timeout = 5000');
    db.prepare('UPDATE sessions SET fresh_2fa_at = ? WHERE person = ?').run(
      new Date(Date.now() - 10 * 60_000).toISOString(),
      admin.personId,
    );
    db.close();
    const stepped = exited(await admin.run(['step-up', '--code', await admin.nextCode(), '--json']), 0);
    assert.deepEqual(JSON.parse(stepped.stdout), { personId: admin.personId, fresh: true });
    const profile = JSON.parse(readFileSync(admin.files.profile, 'utf8')) as { cookie: string; csrf: string };
    admin.secrets.push(profile.cookie, profile.csrf);
    // Fresh again: a step-up route answers without --code.
    const invited = exited(
      await admin.run(['person', 'invite', '--email', 'fresh@cli.test', '--role', 'contractor', '--json']),
      0,
    );
    products.push((JSON.parse(invited.stdout) as { enrolmentLink: string }).enrolmentLink);
  });

  it('tenant close and cancel-close: a new first API key, written 0600', async () => {
    const closing = exited(
      await admin.run(['tenant', 'close', tenant.id, '--reason', 'contract ended', '--json']),
      0,
    );
    assert.equal((JSON.parse(closing.stdout) as { state: string }).state, 'closing');
    const unknown = exited(
      await admin.run(['tenant', 'close', 'ten_000000000000000000000000', '--reason', 'no such tenant']),
      1,
    );
    assert.match(unknown.stderr, /^tresor: TRESOR_ERR_NOT_FOUND: /m);
    const keyFile = join(dir, 'acme-api-key-2');
    const cancelled = exited(
      await admin.run(['tenant', 'cancel-close', tenant.id, '--out-file', keyFile]),
      0,
    );
    assert.match(cancelled.stdout, new RegExp(`^tenant ${tenant.id} is active again`, 'm'));
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    tenantKey = readFileSync(keyFile, 'utf8').trim(); // the first key ended with the close
    leaksNone(cancelled, [tenantKey]);
  });

  it('tresor password changes the own password with the current one, renews the saved session, and ends the others', async () => {
    const NEW_PASSWORD = 'saffron kettle 4 drizzle';
    const newFile = join(dir, 'admin-new-password');
    const wrongFile = join(dir, 'admin-wrong-password');
    writeFileSync(newFile, `${NEW_PASSWORD}\n`, { mode: 0o600 });
    writeFileSync(wrongFile, 'not the password at all\n', { mode: 0o600 });
    admin.secrets.push(NEW_PASSWORD, 'not the password at all');
    const before = JSON.parse(readFileSync(admin.files.profile, 'utf8')) as { cookie: string };
    // A second session of the same person (another device), by the CLI's login into another profile.
    const otherProfile = join(dir, 'other-device.json');
    exited(
      await admin.run(
        [
          'login',
          '--email',
          admin.email,
          '--password-file',
          admin.files.password,
          '--code',
          await admin.nextCode(),
        ],
        { TRESOR_PROFILE: otherProfile },
      ),
      0,
    );
    const wrong = exited(
      await admin.run([
        'password',
        '--current-password-file',
        wrongFile,
        '--new-password-file',
        newFile,
        '--code',
        await admin.nextCode(),
      ]),
      1,
    );
    assert.match(wrong.stderr, /^tresor: TRESOR_ERR_PASSWORD_INCORRECT: /m);
    exited(await admin.run(['tenant', 'list', '--json'], { TRESOR_PROFILE: otherProfile }), 0);

    const changed = exited(
      await admin.run([
        'password',
        '--current-password-file',
        admin.files.password,
        '--new-password-file',
        newFile,
        '--code',
        await admin.nextCode(),
        '--json',
      ]),
      0,
    );
    assert.deepEqual(JSON.parse(changed.stdout), {
      personId: admin.personId,
      passwordChanged: true,
      profile: admin.files.profile,
    });
    const after = JSON.parse(readFileSync(admin.files.profile, 'utf8')) as { cookie: string; csrf: string };
    admin.secrets.push(after.cookie, after.csrf);
    assert.notEqual(after.cookie, before.cookie, 'the saved session is a new one');
    assert.equal(statSync(admin.files.profile).mode & 0o777, 0o600);
    exited(await admin.run(['tenant', 'list', '--json']), 0);
    const ended = exited(await admin.run(['tenant', 'list'], { TRESOR_PROFILE: otherProfile }), 1);
    assert.match(ended.stderr, /TRESOR_ERR_UNAUTHENTICATED/);
    // The old password no longer signs in (refused whatever the code); the new one does.
    exited(
      await admin.run(
        ['login', '--email', admin.email, '--password-file', admin.files.password, '--code', '123456'],
        { TRESOR_PROFILE: otherProfile },
      ),
      1,
    );
    writeFileSync(admin.files.password, `${NEW_PASSWORD}\n`, { mode: 0o600 });
    exited(
      await admin.run(
        [
          'login',
          '--email',
          admin.email,
          '--password-file',
          admin.files.password,
          '--code',
          await admin.nextCode(),
        ],
        { TRESOR_PROFILE: otherProfile },
      ),
      0,
    );
  });

  it('usage (exit 2) and an unreachable server (exit 3) say so without a secret', async () => {
    const none = exited(
      await tresor(['tenant', 'list'], {
        env: { TRESOR_PROFILE: join(dir, 'no-profile.json'), TRESOR_URL: s.url },
      }),
      2,
    );
    assert.match(none.stderr, /no credential/);
    const plain = exited(await admin.run(['tenant', 'list', '--url', s.url.replace('https:', 'http:')]), 2);
    assert.match(plain.stderr, /https URL/);
    const gone = exited(await admin.run(['tenant', 'list', '--url', 'https://127.0.0.1:1']), 3);
    assert.match(gone.stderr, /^tresor: cannot reach https:\/\/127\.0\.0\.1:1: ECONNREFUSED$/m);
    const untrusted = exited(
      await admin.run(['tenant', 'list', '--ca-file', join(dir, 'no-such-ca.pem')]),
      2,
    );
    assert.match(untrusted.stderr, /cannot read the CA file: ENOENT/);
    const forbidden = exited(await admin.run(['tenant', 'list'], { TRESOR_TOKEN: tenantKey }), 1);
    assert.match(forbidden.stderr, /^tresor: TRESOR_ERR_FORBIDDEN: /m);
    leaksNone(forbidden, [tenantKey]);
  });

  it('logout ends the session on the server and removes the profile', async () => {
    const { cookie } = JSON.parse(readFileSync(admin.files.profile, 'utf8')) as { cookie: string };
    exited(await admin.run(['logout']), 0);
    assert.throws(() => statSync(admin.files.profile), /ENOENT/);
    const res = await s.request('GET', '/v1/auth/session', {
      headers: { cookie: `${SESSION_COOKIE}=${cookie}` },
    });
    assert.equal(res.status, 401);
    exited(await admin.run(['tenant', 'list']), 2);
  });

  it('no run printed a secret it was not made to hand over', () => {
    for (const r of admin.runs)
      leaksNone(
        r,
        admin.secrets.filter((x) => !products.includes(x)),
      );
  });
});
